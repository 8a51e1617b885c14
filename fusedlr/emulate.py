"""CPU emulation of the CUDA update kernels (tests only; imported by nothing else).

``emulate_sgd_update_`` / ``emulate_adam_update_`` take the arguments of
``fusedlr.ops.sgd_update_`` / ``adam_update_`` on CPU tensors plus a launch shape,
build the launch plan the CUDA launcher builds (``csrc/include/multi_tensor.h``) and
run the kernels' block bodies over every (block, thread) on the CPU. ``launch_plan_stats``
describes the plan of tensors with given element counts without allocating them.
"""

from __future__ import annotations

import torch

from fusedlr import ops  # noqa: F401  (loads the extension; registers the base ops' fakes)

_ops = torch.ops.fusedlr

CHUNK_SIZE = 65536  # csrc/include/multi_tensor.h kChunkSize
BLOCK_THREADS = 512  # kBlockThreads
MAX_BLOCKS = 320  # kMaxBlocks
SGD_MAX_TENSORS = 48  # DepthTraits<3>::kMaxTensors
ADAM_MAX_TENSORS = 36  # DepthTraits<5>::kMaxTensors
SCHEDULE_FREE_MAX_TENSORS = 40  # DepthTraits<4>::kMaxTensors (schedule_free_block.h)
STEP_TENSORS = 256  # kStepTensors
# The 32 KB kernel-argument layout (CUDA 12.1+, compute capability 7.0+; schedule-free: classic)
LARGE_MAX_BLOCKS = 1280  # kLargeMaxBlocks
LARGE_SGD_MAX_TENSORS = 512  # LargeDepthTraits<3>::kMaxTensors
LARGE_ADAM_MAX_TENSORS = 384  # LargeDepthTraits<5>::kMaxTensors
LARGE_STEP_TENSORS = 2304  # kLargeStepTensors


def emulate_sgd_update_(params, grads, momentum_buffers, steps, meta, hparams, group_lr,
                        grad_scale=None, found_inf=None, *, max_tensors_per_launch=0,
                        threads_per_block=BLOCK_THREADS, max_blocks_per_launch=0) -> None:
    """``sgd_update_`` through the CUDA kernel body; 0 means the kernel's capacity."""
    _ops.emulate_sgd_update_(params, grads, momentum_buffers, steps, meta, hparams, group_lr,
                             grad_scale, found_inf, max_tensors_per_launch, threads_per_block,
                             max_blocks_per_launch)


def emulate_adam_update_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta,
                         hparams, group_lr, grad_scale=None, found_inf=None, *,
                         max_tensors_per_launch=0, threads_per_block=BLOCK_THREADS,
                         max_blocks_per_launch=0) -> None:
    """``adam_update_`` through the CUDA kernel body; 0 means the kernel's capacity."""
    _ops.emulate_adam_update_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                              meta, hparams, group_lr, grad_scale, found_inf,
                              max_tensors_per_launch, threads_per_block, max_blocks_per_launch)


def emulate_schedule_free_(params, grads, zs, exp_avg_sqs, groups, hparams, state, operation, *,
                           max_tensors_per_launch=0, threads_per_block=BLOCK_THREADS,
                           max_blocks_per_launch=0) -> None:
    """``schedule_free_update_`` (operation 0) or ``schedule_free_swap_`` (1: train, 2: eval; grads
    and exp_avg_sqs empty) through the CUDA kernel body; 0 means the kernel's capacity."""
    _ops.emulate_schedule_free_(params, grads, zs, exp_avg_sqs, groups, hparams, state, operation,
                                max_tensors_per_launch, threads_per_block, max_blocks_per_launch)


def emulate_schedule_free_prepare_(program, hparams, state, threads_per_block=64) -> None:
    """``schedule_free_prepare_`` through the CUDA kernel body (one thread per group)."""
    _ops.emulate_schedule_free_prepare_(program, hparams, state, threads_per_block)


def launch_plan_stats(numels, elem_size, max_tensors_per_launch=0,
                      max_blocks_per_launch=0, large_args=False) -> dict:
    """The Adam launch plan of tensors with these element counts (nothing is allocated), in the
    classic 4 KB kernel-argument layout or, with ``large_args``, the 32 KB one (CUDA 12.1+ on
    compute capability 7.0+): update ``launches``, ``blocks``, ``max_chunk`` and
    ``max_element`` indices, ``step_launches`` (the step-increment pass) and
    ``launches_per_step``, every kernel of one steady-state Adam step of one bucket: the
    schedule evaluation, the update and step launches, and the schedule counter's add."""
    launches, blocks, max_chunk, max_elem, step_launches = _ops.launch_plan_stats(
        list(numels), elem_size, max_tensors_per_launch, max_blocks_per_launch, large_args)
    return {"launches": launches, "blocks": blocks, "max_chunk": max_chunk,
            "max_element": max_elem, "step_launches": step_launches,
            "launches_per_step": 1 + launches + step_launches + 1}


def kernel_args_large(device) -> bool:
    """Whether the CUDA update launches on ``device`` use the 32 KB kernel-argument layout
    (False for a CPU device, whose kernels have no launch plan)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    from fusedlr import _C

    index = device.index if device.index is not None else torch.cuda.current_device()
    return _C.cuda_kernel_arg_bytes(index) > 4096


@torch.library.register_fake("fusedlr::emulate_sgd_update_")
def _emulate_sgd_update_fake(params, grads, momentum_buffers, steps, meta, hparams, group_lr,
                             grad_scale, found_inf, max_tensors_per_launch, threads_per_block,
                             max_blocks_per_launch=0):
    return None


@torch.library.register_fake("fusedlr::emulate_adam_update_")
def _emulate_adam_update_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta,
                              hparams, group_lr, grad_scale, found_inf, max_tensors_per_launch,
                              threads_per_block, max_blocks_per_launch=0):
    return None


@torch.library.register_fake("fusedlr::emulate_schedule_free_")
def _emulate_schedule_free_fake(params, grads, zs, exp_avg_sqs, groups, hparams, state, operation,
                                max_tensors_per_launch, threads_per_block,
                                max_blocks_per_launch=0):
    return None


@torch.library.register_fake("fusedlr::emulate_schedule_free_prepare_")
def _emulate_schedule_free_prepare_fake(program, hparams, state, threads_per_block):
    return None
