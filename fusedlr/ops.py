"""Typed wrappers over ``torch.ops.fusedlr.*`` and their fake kernels.

Importing this module loads the native extension (which registers the ops) and
registers fake (meta) implementations so that ``torch.compile`` and
``torch.library.opcheck`` see each op as one opaque in-place call.
"""

from __future__ import annotations

import torch

from fusedlr import _C  # noqa: F401  (registers torch.ops.fusedlr.*)

_ops = torch.ops.fusedlr


def eval_schedule_(program, hparams, lr_scale, counter, out) -> None:
    """out[g] = (lr, momentum) of every group at the schedule counter."""
    _ops.eval_schedule_(program, hparams, lr_scale, counter, out)


def sgd_update_(params, grads, momentum_buffers, steps, meta, hparams, group_lr,
                grad_scale=None, found_inf=None) -> None:
    _ops.sgd_update_(params, grads, momentum_buffers, steps, meta, hparams, group_lr,
                     grad_scale, found_inf)


def adam_update_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta, hparams,
                 group_lr, grad_scale=None, found_inf=None) -> None:
    _ops.adam_update_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta,
                      hparams, group_lr, grad_scale, found_inf)


def sgd_update_master_(masters, grads, momentum_buffers, steps, params, meta, hparams, group_lr,
                       grad_scale=None, found_inf=None) -> None:
    """master_weights in one pass (CPU, CUDA): the float32 masters stepped with the 16-bit
    params' grads, the rounded masters written to the params."""
    _ops.sgd_update_master_(masters, grads, momentum_buffers, steps, params, meta, hparams,
                            group_lr, grad_scale, found_inf)


def adam_update_master_(masters, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, params,
                        meta, hparams, group_lr, grad_scale=None, found_inf=None) -> None:
    """master_weights in one pass (CPU, CUDA), Adam / AdamW: see sgd_update_master_."""
    _ops.adam_update_master_(masters, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                             params, meta, hparams, group_lr, grad_scale, found_inf)


def schedule_free_prepare_(program, hparams, state) -> None:
    """Advances every group's schedule-free state row by one step (schedule_free.h)."""
    _ops.schedule_free_prepare_(program, hparams, state)


def schedule_free_update_(params, grads, zs, exp_avg_sqs, groups, program, hparams,
                          state) -> None:
    """One schedule-free step of one device: checks every argument, advances every group's
    state row (as schedule_free_prepare_), then the SGD (exp_avg_sqs empty) / AdamW update."""
    _ops.schedule_free_update_(params, grads, zs, exp_avg_sqs, groups, program, hparams, state)


def schedule_free_swap_(params, zs, groups, hparams, to_train: bool) -> None:
    """train() (to_train) or eval() switch of the params through z."""
    _ops.schedule_free_swap_(params, zs, groups, hparams, to_train)


def grad_norms_(grads, ord: float, out) -> None:
    """out[i] = ||grads[i]||_ord, out a float64 CPU tensor of len(grads) (the CPU norm pass of
    max_grad_norm; CPU tensors only)."""
    _ops.grad_norms_(grads, ord, out)


def schedule_values(program: torch.Tensor, root: int, base_lr: float, start: int, n: int):
    """Rows (lr, momentum) of the program at t = start .. start+n-1 (host evaluation)."""
    return _ops.schedule_values(program, root, base_lr, start, n)


@torch.library.register_fake("fusedlr::sgd_update_master_")
def _sgd_update_master_fake(masters, grads, momentum_buffers, steps, params, meta, hparams,
                            group_lr, grad_scale=None, found_inf=None):
    return None


@torch.library.register_fake("fusedlr::adam_update_master_")
def _adam_update_master_fake(masters, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                             params, meta, hparams, group_lr, grad_scale=None, found_inf=None):
    return None


@torch.library.register_fake("fusedlr::grad_norms_")
def _grad_norms_fake(grads, ord, out):
    return None


@torch.library.register_fake("fusedlr::eval_schedule_")
def _eval_schedule_fake(program, hparams, lr_scale, counter, out):
    return None


@torch.library.register_fake("fusedlr::sgd_update_")
def _sgd_update_fake(params, grads, momentum_buffers, steps, meta, hparams, group_lr,
                     grad_scale, found_inf):
    return None


@torch.library.register_fake("fusedlr::adam_update_")
def _adam_update_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta,
                      hparams, group_lr, grad_scale, found_inf):
    return None


@torch.library.register_fake("fusedlr::schedule_free_prepare_")
def _schedule_free_prepare_fake(program, hparams, state):
    return None


@torch.library.register_fake("fusedlr::schedule_free_update_")
def _schedule_free_update_fake(params, grads, zs, exp_avg_sqs, groups, program, hparams, state):
    return None


@torch.library.register_fake("fusedlr::schedule_free_swap_")
def _schedule_free_swap_fake(params, zs, groups, hparams, to_train):
    return None


@torch.library.register_fake("fusedlr::schedule_values")
def _schedule_values_fake(program, root, base_lr, start, n):
    return program.new_empty((n, 2))
