"""The step wrapper of fusedlr's optimizers: torch's hooks, and a profiler range only when
a profiler is running.

``torch.optim.Optimizer`` wraps every subclass's ``step`` in ``profile_hook_step``,
which opens a ``record_function`` range on every call (about 20 us on this project's
CPU, a third of a small model's whole fusedlr step) to run the optimizer step hooks.
``hooked_step`` does the same work, in the same order (global then instance pre-hooks,
the step, ``_optimizer_step_code``, instance then global post-hooks), but opens the
``Optimizer.step#<class>.step`` range only while the autograd profiler (which
``torch.profiler.profile`` drives) is enabled, and always under ``torch.compile``, where
it costs nothing at run time. The wrapped function is marked ``hooked`` so that
``Optimizer._patch_step_function`` leaves it alone.
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch.optim import optimizer as _torch_optimizer


def _pre_hooks(opt):
    return itertools.chain(_torch_optimizer._global_optimizer_pre_hooks.values(),
                           opt._optimizer_step_pre_hooks.values())


def _post_hooks(opt):
    return itertools.chain(opt._optimizer_step_post_hooks.values(),
                           _torch_optimizer._global_optimizer_post_hooks.values())


def _hooked_call(func, opt, args, kwargs):
    if not (_torch_optimizer._global_optimizer_pre_hooks or opt._optimizer_step_pre_hooks
            or opt._optimizer_step_post_hooks or _torch_optimizer._global_optimizer_post_hooks):
        out = func(opt, *args, **kwargs)  # no hooks: skip building the chains
        opt._optimizer_step_code()
        return out
    for pre_hook in _pre_hooks(opt):
        result = pre_hook(opt, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"{func} must return None or a tuple of (new_args, new_kwargs), but got "
                    f"{result}."
                )
    out = func(opt, *args, **kwargs)
    opt._optimizer_step_code()
    for post_hook in _post_hooks(opt):
        post_hook(opt, args, kwargs)
    return out


def hooked_step(func):
    """Wraps an optimizer's ``step`` as ``Optimizer.profile_hook_step`` does (see above)."""

    @functools.wraps(func)
    def wrapper(opt, *args, **kwargs):
        if torch.compiler.is_compiling() or torch._C._autograd._profiler_enabled():
            name = f"Optimizer.step#{type(opt).__name__}.step"
            with torch.autograd.profiler.record_function(name):
                return _hooked_call(func, opt, args, kwargs)
        return _hooked_call(func, opt, args, kwargs)

    wrapper.hooked = True
    return wrapper
