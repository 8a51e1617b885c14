"""Gradient clipping and non-finite skipping inside the step (``max_grad_norm=``,
``skip_nonfinite=``), on the device, with no host sync.

torch's recipe is ``clip_grad_norm_(params, max_norm)`` then ``opt.step()``: the norm pass
reads every grad, the clip pass reads and writes every grad again, then the step reads them.
Here the norm pass is the only extra one::

    norm    = ||(||g_1||_p, ..., ||g_n||_p)||_p      over every grad of the optimizer (every
                                                     group, bucket, device; DTensor shards
                                                     all-reduced over their shard dims)
    norm   /= S                                      with a grad scaler of scale S (the norm of
                                                     the unscaled grads, as unscale_ + clip)
    coef    = min(1, max_norm / (norm + 1e-6))       (torch.nn.utils.clip_grad_norm_)

and the update kernels apply it: the ops' ``grad_scale`` becomes ``S / coef`` with a grad
scaler (grads divided by it and written back unscaled and clipped, as torch's fused optimizers
unscale in place) or ``-1 / coef`` without one (a negative ``grad_scale``: grads divided by
its magnitude and not written back). With ``skip_nonfinite``, a non-finite norm (a NaN or Inf
grad) joins the grad scaler's ``found_inf``: the step leaves params and state untouched,
``skip_schedule_on_inf`` applies to it, and ``skipped_steps`` counts it on the device.

Every per-step value lives in a buffer allocated once per layout, so a step allocates nothing
and is capturable in a CUDA graph. Each grad's norm: on the CPU fusedlr's ``grad_norms_``
(csrc/cpu/grad_norm_cpu.cpp: all grads in one parallel pass at the memory bandwidth, float
accumulators per 16K-element chunk, double across chunks); elsewhere torch's ``_foreach_norm``
into views of one buffer, in the grads' dtype as torch's clip_grad_norm_. The total and the
coefficient are computed in float64, and the kernels read the folded ``grad_scale`` in float64
on the CPU and on CUDA (a float32 scale, a GradScaler's own, is read as float32), so float64
params see the exact coefficient everywhere.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.distributed as dist

from fusedlr import ops


class _DeviceBuffers:
    """Per-device buffers: the norm of each bucket's grads, and the device's total."""

    def __init__(self, device: torch.device, n_calls: int):
        self.parts = torch.zeros(n_calls, dtype=torch.float64, device=device)
        self.total = torch.zeros((), dtype=torch.float64, device=device)


class GradClip:
    """The ``max_grad_norm`` / ``skip_nonfinite`` state of one optimizer (see the module)."""

    def __init__(self, max_norm: float | None, norm_type: float, skip_nonfinite: bool):
        self.max_norm = max_norm
        self.norm_type = float(norm_type)
        self.skip_nonfinite = skip_nonfinite
        self._layout = ()  # the calls the buffers were made for (held: compared by identity)
        self._single = False  # the layout is one bucket of float64 norms (see _ensure)
        self._devices: dict[torch.device, _DeviceBuffers] = {}
        self.norm = None  # float64 [] on the first device: the last step's total grad norm
        self.skipped = None  # float64 [] on the first device: steps skipped (a non-finite norm)
        self._nonfinite = self._scale = self._found = None

    def init_buffers(self, device: torch.device) -> None:
        """The per-step scalars on `device` (the optimizer's first); ``norm`` exists from
        construction on, so a caller may hold it before the first step (HF Trainer logs it)."""
        if self.norm is not None and self.norm.device == device:
            return
        self.norm = torch.zeros((), dtype=torch.float64, device=device)
        self.skipped = torch.zeros((), dtype=torch.float64, device=device)
        self._nonfinite = torch.zeros((), dtype=torch.float64, device=device)
        # the ops' grad_scale, float64: the CPU and CUDA kernels read it as is (float64 params
        # keep the exact coefficient; the float32 and 16-bit kernels round it to float32 per
        # tensor, on the CPU and, since the float64 scale reaches them, on CUDA alike)
        self._scale = torch.zeros(1, dtype=torch.float64, device=device)
        self._found = torch.zeros(1, dtype=torch.float32, device=device)

    # -- buffers -----------------------------------------------------------------------------
    def _ensure(self, work) -> None:
        calls = tuple(call for _, call, _ in work)
        if len(calls) == len(self._layout) and all(map(operator.is_, calls, self._layout)):
            return
        counts: dict[torch.device, int] = {}
        for bucket, call, grads in work:
            counts[bucket.device] = counts.get(bucket.device, 0) + 1
            if getattr(call, "norm_views", None) is None:
                # CPU: fusedlr's grad_norms_ (float64 out). Elsewhere torch's _foreach_norm, in
                # the grads' dtype as torch's clip_grad_norm_ (a dtype= makes it convert each
                # grad first). The last element: the bucket's part of the total.
                dt = torch.float64 if bucket.device.type == "cpu" else bucket.dtype
                call.norm_buf = torch.zeros(len(grads) + 1, dtype=dt, device=bucket.device)
                call.norm_views = list(call.norm_buf[:-1].unbind(0))
        self._devices = {dev: _DeviceBuffers(dev, n) for dev, n in counts.items()}
        self.init_buffers(next(iter(counts)))  # (prepare passes no empty work)
        self._layout = calls
        # One bucket of float64 per-grad norms (the CPU; no DTensor) on the norm's device: the
        # total is the norm of its per-grad norms, written straight to `norm` (as
        # clip_grad_norm_: one norm over the per-grad norms), without the per-device parts
        bucket, call, _ = work[0]
        self._single = (len(work) == 1 and not call.dtensor and bucket.device == self.norm.device
                        and call.norm_buf.dtype == torch.float64)

    # -- the step ----------------------------------------------------------------------------
    def prepare(self, work, grad_scale, found_inf, natives=None):
        """(grad_scale, found_inf) for the update ops of this step, on the first device (the
        caller moves them to each bucket's device): the clip coefficient folded into the
        scale, a non-finite norm into found_inf. ``work``: [(bucket, call, grads)]; with
        ``natives`` (one C++ EagerBucket per entry, grads gathered) the grads are read there
        and ``grads`` may be the call's params (only their count is used)."""
        if not work:  # no param has a grad: the norm is 0 (clip_grad_norm_ of no grads)
            self.norm.zero_()
            return grad_scale, found_inf
        self._ensure(work)
        p = self.norm_type
        slot = dict.fromkeys(self._devices, 0)
        for k, (bucket, call, grads) in enumerate(work):
            dev = bucket.device
            if natives is not None:
                natives[k].grad_norms(p, call.norm_buf[:-1], call.norm_views)
            elif dev.type == "cpu":
                ops.grad_norms_(grads, p, call.norm_buf[:-1])
            else:
                torch.ops.aten._foreach_norm.Scalar_out(grads, p, None, out=call.norm_views)
            if self._single:
                continue
            torch.linalg.vector_norm(call.norm_buf[:-1], p, out=call.norm_buf[-1])
            bufs = self._devices[dev]
            part = bufs.parts[slot[dev]]
            slot[dev] += 1
            part.copy_(call.norm_buf[-1])
            if call.dtensor:
                _all_reduce_shards(part, bucket.params, p)
        if self._single:
            torch.linalg.vector_norm(work[0][1].norm_buf[:-1], p, out=self.norm)
        else:
            self._total(p)
        scale = None if grad_scale is None else grad_scale.to(self.norm.device)
        if scale is not None:
            self.norm.div_(scale.reshape(()))  # the norm of the unscaled grads
        found = found_inf
        if self.skip_nonfinite:
            # norm - norm is 0 for a finite norm and NaN for an infinite or NaN one; ne_ makes
            # it 0.0 / 1.0 in place (no temporary)
            torch.sub(self.norm, self.norm, out=self._nonfinite)
            self._nonfinite.ne_(0.0)
            self.skipped.add_(self._nonfinite)
            self._found.copy_(self._nonfinite)
            if found_inf is not None:
                self._found.add_(found_inf.to(self._found.device).reshape(1)).clamp_(max=1.0)
            found = self._found
        if self.max_norm is None:
            return grad_scale, found
        # coef = min(1, max_norm / (norm + 1e-6)); the ops divide the grads by grad_scale, so
        # it is 1 / coef = max(1, (norm + 1e-6) / max_norm): negated without a grad scaler (no
        # write-back), times S with one. (A NaN norm stays NaN, an infinite one gives coef 0.)
        out = self._scale[0]
        torch.add(self.norm, 1e-6, out=out)
        if scale is None:
            out.div_(-self.max_norm).clamp_(max=-1.0)
        else:
            out.div_(self.max_norm).clamp_(min=1.0).mul_(scale.reshape(()))
        return self._scale, found

    def _total(self, p: float) -> None:
        """`norm` from the per-device parts (several buckets, devices or DTensor shards)."""
        totals = []
        for dev, bufs in self._devices.items():
            torch.linalg.vector_norm(bufs.parts, p, out=bufs.total)
            totals.append(bufs.total if dev == self.norm.device
                          else bufs.total.to(self.norm.device, non_blocking=True))
        if len(totals) == 1:
            self.norm.copy_(totals[0])
        else:
            torch.linalg.vector_norm(torch.stack(totals), p, out=self.norm)


def _all_reduce_shards(part: torch.Tensor, params, p: float) -> None:
    """The norm of DTensor shards -> the norm over the whole tensors: all-reduced over every
    mesh dim the params are sharded on (replicated dims hold copies, so they are not summed)."""
    dt = next((q for q in params if hasattr(q, "device_mesh")), None)
    if dt is None or not dist.is_available() or not dist.is_initialized():
        return
    mesh = dt.device_mesh
    dims = [d for d, pl in enumerate(dt.placements) if pl.is_shard()]
    if math.isinf(p):
        for d in dims:
            dist.all_reduce(part, op=dist.ReduceOp.MAX, group=mesh.get_group(d))
        return
    part.pow_(p)
    for d in dims:
        dist.all_reduce(part, op=dist.ReduceOp.SUM, group=mesh.get_group(d))
    part.pow_(1.0 / p)


def check_clip_args(max_grad_norm, norm_type, skip_nonfinite) -> None:
    """Errors naming the argument and its allowed range, before the optimizer exists."""
    if max_grad_norm is not None:
        if isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, (int, float)) or \
                not math.isfinite(max_grad_norm) or max_grad_norm <= 0:
            raise ValueError(
                f"max_grad_norm must be None or a finite number > 0, got {max_grad_norm!r}")
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or \
            math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"norm_type must be a number > 0 or inf, got {norm_type!r}")
    if not isinstance(skip_nonfinite, bool):
        raise TypeError(f"skip_nonfinite must be a bool, got {skip_nonfinite!r}")
