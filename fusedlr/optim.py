"""Fused SGD / Adam / AdamW whose learning rate schedule is evaluated on the device.

Drop-in replacements for ``torch.optim.SGD/Adam/AdamW`` plus a ``schedule``: the
k-th call of ``step()`` (k from 0) uses, for each param group,
``lr = group['lr'] * schedule(k // steps_per_epoch)`` (absolute schedules such as
CyclicLR ignore ``group['lr']``). The counter lives on the device and each step is
one op call per (device, dtype) bucket: no host sync, nothing per step on the host
but gathering the grads.

Eager steps take a C++ path once the state exists (the second step on): per device,
one call into ``fusedlr._C`` evaluates the schedule, reads every param's ``.grad`` in
C++, runs each bucket's update op through the C++ dispatcher and advances the
counter, so the Python cost of a step does not grow with the number of tensors.
Steps traced by ``torch.compile``, steps where some param has no grad, master weights
and DTensors use the same ops through ``torch.ops`` with Python lists. The step hooks
of ``torch.optim.Optimizer`` run as usual; the ``Optimizer.step#...`` profiler range is
opened only while a profiler is running (``fusedlr/_step_hooks.py``).

``group['lr']`` is the base lr; the schedule never writes it. A group with
``schedule=None`` uses ``group['lr']`` as it stands at each step, so manual lr
changes and ``torch.optim.lr_scheduler`` classes work as with torch's optimizers.
``fusedlr.ReduceLROnPlateau`` multiplies a group's lr by a device-side factor.

AMP: ``torch.amp.GradScaler`` works as with torch's fused optimizers
(``_step_supports_amp_scaling``): ``scaler.step(opt)`` hands ``grad_scale`` and
``found_inf`` to ``step()``, the kernel unscales the grads and, when ``found_inf`` is
set, leaves params and state untouched (Adam's bias-correction step and SGD's
momentum-buffer initialisation wait for the next applied update). The schedule
counter still advances on every ``step()``, as torch's scheduler does when the loop
calls ``scheduler.step()`` every iteration; pass ``skip_schedule_on_inf=True`` to make
skipped steps not count (decided on the device, no sync).

CUDA graphs: a step reads and writes only tensors allocated in advance and updated
in place (the counter, group rows, lr factors, evaluated lrs and the per-param
state), ``load_state_dict`` included. The per-param state is created by the first
``step()`` that sees a grad, so run a warm-up step (on a side stream, as
``torch.cuda.graph`` requires anyway) before capturing. Changing the param groups'
layout or the schedule's program size after capture invalidates the graph.

torch.compile: ``torch.compile(opt.step, fullgraph=True)`` (or a whole training step,
with ``torch._dynamo.config.trace_autograd_ops = True`` for ``loss.backward()`` and
``zero_grad`` left outside) traces to one graph; the lr is a device tensor, so a
changing schedule causes no recompilation. Warm up one eager step first, or expect one
recompile when the first step creates the state.
"""

from __future__ import annotations

import itertools
import operator
from collections import defaultdict

import torch

from fusedlr import _C, ops
from fusedlr._arch_check import check_cuda_kernels
from fusedlr._clip import GradClip, check_clip_args
from fusedlr._device_state import (
    AMSGRAD,
    BASE_LR,
    DAMPENING,
    DECOUPLED,
    EPS,
    GROUP_FIELDS,
    GROUP_LR_SCALE,
    MAXIMIZE,
    MOMENTUM,
    NESTEROV,
    SCHEDULE_ROOT,
    STEPS_PER_EPOCH,
    WEIGHT_DECAY,
    DeviceState,
    resized_scale,
)
from fusedlr._host_lr import HostLRMirror
from fusedlr._state_io import load_optimizer_state, optimizer_state_dict
from fusedlr._step_hooks import hooked_step
from fusedlr._validate import (
    check_group,
    check_param,
    check_torch_flags,
    check_unique,
    group_params,
)
from fusedlr.diagnostics import check_double_schedule
from fusedlr.schedules import ProgramBuilder

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _state_dtype(param: torch.Tensor) -> torch.dtype:
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def _local(t):
    """The local shard of a DTensor (a view: in-place writes reach the DTensor), else t."""
    to_local = getattr(t, "to_local", None)
    return t if to_local is None else to_local()


def _zeros_for(p: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Zeros shaped (and, for a DTensor, sharded) like p, in p's memory layout when p is dense
    (channels_last, a transpose: the kernels then step p, its grad and this state in place as
    flat memory), else contiguous (p is then stepped through a contiguous copy)."""
    return torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)


class _Call:
    """Cached op arguments for one subset (those with grads) of a bucket's params."""

    __slots__ = ("params", "lists", "steps", "meta", "sources", "grads32", "dtensor", "eager",
                 "native", "norm_buf", "norm_views", "one_pass")

    def __init__(self, params, lists, steps, meta):
        self.params = params
        self.lists = lists
        self.steps = steps
        self.meta = meta
        self.sources = None  # master_weights: the low-precision params that params (fp32) mirror
        self.grads32 = None  # master_weights: fp32 grad buffers, allocated once
        self.dtensor = False  # DTensor params: grads are passed as their local shards
        self.eager = False  # the eager step may use the C++ EagerBucket (all params, plain)
        self.native = None  # that _C.EagerBucket, built by the first eager step
        self.norm_buf = None  # max_grad_norm: the norm of each grad (fusedlr/_clip.py)
        self.norm_views = None  # its elements, the out= of _foreach_norm
        self.one_pass = False  # master_weights: the one-pass op (sources and params in one call)


class _Bucket:
    """All params of one (device, dtype), in group order."""

    def __init__(self, device, dtype):
        self.device = device
        self.dtype = dtype
        self.params: list[torch.Tensor] = []
        self.groups: list[int] = []
        self.calls: dict[object, _Call] = {}


class _FusedOptimizer(HostLRMirror, torch.optim.Optimizer):
    _step_supports_amp_scaling = True
    _algorithm = ""  # "sgd" or "adam"

    def __init__(self, params, defaults, *, schedule, steps_per_epoch, skip_schedule_on_inf,
                 master_weights=False, max_grad_norm=None, norm_type=2.0, skip_nonfinite=False):
        defaults = dict(defaults, schedule=schedule, steps_per_epoch=steps_per_epoch)
        check_group(type(self).__name__, defaults, self._algorithm, name="defaults")
        if not isinstance(skip_schedule_on_inf, bool):
            raise TypeError(f"skip_schedule_on_inf must be a bool, got {skip_schedule_on_inf!r}")
        if not isinstance(master_weights, bool):
            raise TypeError(f"master_weights must be a bool, got {master_weights!r}")
        check_clip_args(max_grad_norm, norm_type, skip_nonfinite)
        self.skip_schedule_on_inf = skip_schedule_on_inf
        self.master_weights = master_weights
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.norm_type = float(norm_type)
        self.skip_nonfinite = skip_nonfinite
        self._clip = (GradClip(self.max_grad_norm, self.norm_type, skip_nonfinite)
                      if max_grad_norm is not None or skip_nonfinite else None)
        self._grad32: dict = {}  # master_weights: param -> fp32 grad buffer
        self._ready = False
        self._devices: dict[torch.device, DeviceState] = {}
        self._double_schedule_warned = False
        self._host_lr_scale = torch.ones(0, dtype=torch.float64)
        self._init_host_mirror()
        super().__init__(params, defaults)
        self._relayout()
        if self._clip is not None:  # last_grad_norm exists before the first step
            first = self._buckets[0].device if self._buckets else torch.device("cpu")
            self._clip.init_buffers(first)
        self._ready = True

    # -- clipping -------------------------------------------------------------------------------
    @property
    def last_grad_norm(self):
        """With ``max_grad_norm`` or ``skip_nonfinite``: the total norm of the last step's grads
        (of the unscaled grads under a grad scaler), a float64 device tensor updated in place by
        every step (read it when logging: reading it is a sync); else None."""
        return None if self._clip is None else self._clip.norm

    @property
    def skipped_steps(self):
        """With ``skip_nonfinite``: the steps skipped for a non-finite grad norm (with a grad
        scaler: its overflow steps), a float64 device tensor (a whole number) updated in place;
        else None."""
        return None if self._clip is None or not self.skip_nonfinite else self._clip.skipped

    # -- groups ---------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        params = group_params(param_group)
        merged = {**self.defaults, **param_group}
        index = len(self.param_groups)
        check_group(type(self).__name__, merged, self._algorithm, name=f"param group {index}")
        for i, p in enumerate(params):
            check_param(p, i, index)
        check_unique(params, index)
        check_cuda_kernels(params, index)
        super().add_param_group({**param_group, "params": params})
        if self._ready:
            try:
                self._relayout()
            except Exception:  # e.g. the schedule program exceeds the budget: undo the add
                self.param_groups.pop()
                self._relayout()
                raise

    def _group_row(self, group: dict, root: int) -> tuple:
        if self._algorithm == "sgd":
            mom, damp, eps, amsgrad = group["momentum"], group["dampening"], 0.0, False
            nesterov = group["nesterov"]
        else:
            mom, damp = group["betas"]
            eps, amsgrad, nesterov = group["eps"], group["amsgrad"], False
        row = [0.0] * GROUP_FIELDS
        row[BASE_LR] = float(group["lr"])
        row[WEIGHT_DECAY] = float(group["weight_decay"])
        row[MOMENTUM] = float(mom)
        row[DAMPENING] = float(damp)
        row[EPS] = float(eps)
        row[NESTEROV] = float(bool(nesterov))
        row[MAXIMIZE] = float(bool(group["maximize"]))
        row[AMSGRAD] = float(bool(amsgrad))
        row[DECOUPLED] = float(self._decoupled)
        row[STEPS_PER_EPOCH] = float(group["steps_per_epoch"])
        row[SCHEDULE_ROOT] = float(root)
        # timm's convention: the scheduler applies lr_scale. With a schedule fusedlr is the
        # scheduler; with schedule=None whoever sets group['lr'] (a timm scheduler) applies it.
        scheduled = group["schedule"] is not None
        row[GROUP_LR_SCALE] = float(group.get("lr_scale", 1.0)) if scheduled else 1.0
        return tuple(row)

    _decoupled = False
    # master_weights: the one-pass op where it applies (False: always the three-pass path, kept
    # as the reference of tests/test_master_one_pass.py and benchmarks/bench_master.py)
    _master_one_pass = True

    def _group_needs(self, group: dict) -> bool:
        """Whether the group's params need the optional state (momentum buffer / max_exp_avg_sq)."""
        if self._algorithm == "sgd":
            sched = group["schedule"]
            return group["momentum"] != 0 or (sched is not None and sched.cycles_momentum())
        return bool(group["amsgrad"])

    # -- layout: buckets, rows and device state -------------------------------------------------
    def _relayout(self) -> None:
        """Rebuilds buckets, the schedule program and the device tensors after a group change."""
        builder = ProgramBuilder()
        roots = [builder.add(g["schedule"], i) for i, g in enumerate(self.param_groups)]
        program = builder.tensor()
        self._host_program = program
        self._schedules = [g["schedule"] for g in self.param_groups]
        self._initial_lr_at_layout = ["initial_lr" in g for g in self.param_groups]
        self._roots = roots
        self._rows = [self._group_row(g, r) for g, r in zip(self.param_groups, roots, strict=True)]
        self._host_rows = torch.tensor(self._rows, dtype=torch.float64).reshape(-1, GROUP_FIELDS)
        self._needs = [self._group_needs(g) for g in self.param_groups]

        buckets: dict[tuple, _Bucket] = {}
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                key = (p.device, p.dtype)
                if key not in buckets:
                    buckets[key] = _Bucket(p.device, p.dtype)
                buckets[key].params.append(p)
                buckets[key].groups.append(gi)
        self._buckets = list(buckets.values())
        self._multi_bucket = len(self._buckets) > 1
        self._has_cuda = any(b.device.type == "cuda" for b in self._buckets)
        # the plateau factors' host copy (get_host_lr), kept for the old groups
        self._host_lr_scale = resized_scale(self._host_lr_scale, len(self.param_groups))

        devices = {b.device for b in self._buckets} or {torch.device("cpu")}
        for dev in devices:
            if dev in self._devices:
                self._devices[dev].resize(self._host_rows, program)
            else:
                state = DeviceState(dev, self._host_rows, program)
                if self._devices:  # a new device joins: start at the same count
                    state.counter.copy_(next(iter(self._devices.values())).counter)
                self._devices[dev] = state
        for dev in [d for d in self._devices if d not in devices]:
            del self._devices[dev]

    def _sync_groups(self) -> None:
        """Uploads changed group hyperparameters; relayouts when schedules or state needs change."""
        groups = self.param_groups
        if len(groups) != len(self._rows):
            self._relayout()
            return
        changed = False
        watch = not self._double_schedule_warned
        for i, group in enumerate(groups):
            if group["schedule"] is not self._schedules[i]:
                check_group(type(self).__name__, group, self._algorithm, name=f"param group {i}")
                self._relayout()
                return
            try:
                row = self._group_row(group, self._roots[i])
            except (TypeError, ValueError):  # a value float() refuses: say which
                check_group(type(self).__name__, group, self._algorithm, name=f"param group {i}")
                raise
            if row == self._rows[i]:
                if watch and "initial_lr" in group and self._schedules[i] is not None:
                    watch = not self._watch_double_schedule(i, group)
            else:
                check_group(type(self).__name__, group, self._algorithm, name=f"param group {i}")
                if watch and self._schedules[i] is not None:
                    watch = not self._watch_double_schedule(i, group)
                if self._group_needs(group) != self._needs[i]:
                    self._relayout()
                    return
                self._rows[i] = row
                self._host_rows[i] = torch.tensor(row, dtype=torch.float64)
                changed = True
        if changed:
            for ds in self._devices.values():
                ds.upload_rows(self._host_rows)

    def _watch_double_schedule(self, i: int, group: dict) -> bool:
        """Warns once per optimizer if another scheduler touched scheduled group i."""
        self._double_schedule_warned = check_double_schedule(self, i, group,
                                                             self._rows[i][BASE_LR])
        return self._double_schedule_warned

    # -- state ----------------------------------------------------------------------------------
    def _init_state(self, p: torch.Tensor, needs: bool) -> dict:
        state = self.state[p]
        dt = _state_dtype(p)
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        if self._algorithm == "sgd":
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = _zeros_for(p, dt) if needs else None
                if needs:
                    state["step"].zero_()  # counts momentum updates: the next one initialises
        else:
            if "exp_avg" not in state:
                state["exp_avg"] = _zeros_for(p, dt)
                state["exp_avg_sq"] = _zeros_for(p, dt)
            if needs and state.get("max_exp_avg_sq") is None:
                state["max_exp_avg_sq"] = _zeros_for(p, dt)
        if self.master_weights and p.dtype in _LOW_PRECISION and "master" not in state:
            state["master"] = p.detach().to(torch.float32, memory_format=torch.preserve_format,
                                            copy=True)
        return state

    def _build_call(self, bucket: _Bucket, idxs) -> _Call:
        params, steps, slotted, per_tensor, meta = [], [], [], defaultdict(list), []
        master = self.master_weights and bucket.dtype in _LOW_PRECISION
        for i in idxs:
            p, gi = bucket.params[i], bucket.groups[i]
            state = self._init_state(p, self._needs[gi])
            params.append(_local(state["master"] if master else p))
            steps.append(state["step"])
            key = "momentum_buffer" if self._algorithm == "sgd" else "max_exp_avg_sq"
            extra = state.get(key) if self._needs[gi] else None
            meta.append((gi, len(slotted) if extra is not None else -1))
            if extra is not None:
                slotted.append(_local(extra))
            if self._algorithm == "adam":
                per_tensor["exp_avg"].append(_local(state["exp_avg"]))
                per_tensor["exp_avg_sq"].append(_local(state["exp_avg_sq"]))
        meta_t = torch.tensor(meta, dtype=torch.int64).reshape(-1, 2)
        if self._algorithm == "sgd":
            lists = (slotted,)
        else:
            lists = (per_tensor["exp_avg"], per_tensor["exp_avg_sq"], slotted)
        call = _Call(params, lists, steps, meta_t)
        call.dtensor = any(hasattr(bucket.params[i], "to_local") for i in idxs)
        if master:
            call.sources = [_local(bucket.params[i]) for i in idxs]
            # One pass (CPU or CUDA, contiguous 16-bit params and masters): the op reads the
            # 16-bit grads and writes the masters and the rounded params. Else three: grads
            # copied to float32 buffers, the float32 update, the masters copied to the params.
            call.one_pass = (self._master_one_pass and bucket.device.type in ("cpu", "cuda")
                             and not call.dtensor
                             and all(p.is_contiguous() for p in call.sources)
                             and all(m.is_contiguous() for m in params))
            if not call.one_pass:
                for i, m in zip(idxs, params, strict=True):
                    if bucket.params[i] not in self._grad32:
                        self._grad32[bucket.params[i]] = torch.empty_like(m)
                call.grads32 = [self._grad32[bucket.params[i]] for i in idxs]
        # the C++ eager step: all params of the bucket, plain tensors, one op (no master copies)
        call.eager = ((not master or call.one_pass) and not call.dtensor
                      and len(idxs) == len(bucket.params))
        return call

    def _native(self, call: _Call):
        """The call's C++ eager step (csrc/eager_bucket.cpp), built on first use (never while
        torch.compile traces). It reads the grads in C++ and keeps a C++ reference to every
        tensor of the call, so the op's temporary references never cross the 1 <-> 2
        refcount boundary that decrefs a Python object with the GIL re-taken."""
        if call.native is None and call.eager:
            call.native = _C.EagerBucket(self._algorithm, call.params,
                                         [list(x) for x in call.lists], call.steps, call.meta,
                                         call.sources or [])
        return call.native

    def _call_for(self, bucket: _Bucket, grads: list) -> tuple[_Call, list]:
        if not any(map(operator.is_, grads, itertools.repeat(None))):
            key = None
        else:
            key = tuple(g is not None for g in grads)
            grads = [g for g in grads if g is not None]
        call = bucket.calls.get(key)
        if call is None:
            idxs = range(len(bucket.params)) if key is None else [i for i, h in enumerate(key) if h]
            _check_grads([bucket.params[i] for i in idxs], grads)  # before state is created
            call = self._build_call(bucket, idxs)
            bucket.calls[key] = call
        return call, grads

    # -- step -----------------------------------------------------------------------------------
    @hooked_step
    def step(self, closure=None):
        """Performs one optimization step (and advances the schedule counter), on the device."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._sync_groups()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        natives = None if torch.compiler.is_compiling() else self._gather_native()
        if natives is None:
            with torch.no_grad():
                found = self._step_lists(grad_scale, found_inf)
            self._host_note_step(found)
            return loss
        if self._clip is not None:  # the norm pass over the grads the C++ buckets gathered
            work = [(b, b.calls[None], b.calls[None].params) for b in self._buckets]
            try:
                with torch.no_grad():
                    grad_scale, found_inf = self._clip.prepare(
                        work, grad_scale, found_inf, natives=[n for _, n in natives])
            except BaseException:
                for _, native in natives:
                    native.drop()
                raise
        # The C++ eager step, one call per device: its ops run below autograd, so no
        # grad-mode switch is needed.
        for device, ds in self._devices.items():
            on_device = [native for dev, native in natives if dev == device]
            inf = _on(found_inf, device)
            _C.eager_device_step(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr,
                                 self._increment(ds, inf), on_device, _on(grad_scale, device),
                                 inf)
        self._host_note_step(found_inf)
        return loss

    def _step_lists(self, grad_scale, found_inf):
        """The general step: grads gathered in Python, lists passed to the torch.ops ops (the
        torch.compile path, master weights, DTensors, and params without grads)."""
        gathered = [[p.grad for p in bucket.params] for bucket in self._buckets]
        # Several buckets: all are checked before any gets new state or a write. A single bucket
        # is checked by its op before any write (and by _call_for before state is created).
        if self._multi_bucket:
            for bucket, grads in zip(self._buckets, gathered, strict=True):
                _check_grads(*_with_grad(bucket.params, grads))
        work = []
        for bucket, grads in zip(self._buckets, gathered, strict=True):
            call, grads = self._call_for(bucket, grads)
            if call.params:
                work.append((bucket, call, _prepare_grads(call, grads)))

        if self._clip is not None:  # the norm pass: clip coefficient and non-finite flag
            grad_scale, found_inf = self._clip.prepare(work, grad_scale, found_inf)
        for ds in self._devices.values():
            ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr)
        for bucket, call, grads in work:
            ds = self._devices[bucket.device]
            scale = _on(grad_scale, bucket.device)
            inf = _on(found_inf, bucket.device)
            if call.one_pass and self._algorithm == "sgd":
                ops.sgd_update_master_(call.params, grads, call.lists[0], call.steps,
                                       call.sources, call.meta, ds.hparams, ds.group_lr, scale,
                                       inf)
            elif call.one_pass:
                ops.adam_update_master_(call.params, grads, call.lists[0], call.lists[1],
                                        call.lists[2], call.steps, call.sources, call.meta,
                                        ds.hparams, ds.group_lr, scale, inf)
            elif self._algorithm == "sgd":
                ops.sgd_update_(call.params, grads, call.lists[0], call.steps, call.meta,
                                ds.hparams, ds.group_lr, scale, inf)
            else:
                ops.adam_update_(call.params, grads, call.lists[0], call.lists[1], call.lists[2],
                                 call.steps, call.meta, ds.hparams, ds.group_lr, scale, inf)
            if call.sources is not None and not call.one_pass:
                # master_weights, three passes: round the fp32 masters to nearest
                torch._foreach_copy_(call.sources, call.params)
        self._advance_counters(found_inf)
        return found_inf

    def _gather_native(self):
        """[(device, EagerBucket)] with every bucket's grads read, when each bucket has a cached
        C++ step and all its params have grads; else None (the general path). With several
        buckets, a grad that does not match its param raises here, before anything is written
        (a single bucket's op checks its grads before writing)."""
        natives = []
        for bucket in self._buckets:
            call = bucket.calls.get(None)
            native = self._native(call) if call is not None else None
            # (checked when clipping too: the norm pass reads the grads before the op checks)
            if native is None or not native.gather(self._multi_bucket or self._clip is not None):
                for _, gathered in natives:
                    gathered.drop()
                return None
            natives.append((bucket.device, native))
        return natives

    def _advance_counters(self, found_inf) -> None:
        for ds in self._devices.values():
            ds.counter.add_(self._increment(ds, _on(found_inf, ds.device)))

    def _increment(self, ds: DeviceState, found_inf) -> torch.Tensor:
        """What the schedule counter advances by: 1, or (found_inf == 0) when skipped steps
        must not count (computed on the device into a preallocated buffer)."""
        if found_inf is None or not self.skip_schedule_on_inf:
            return ds.one
        applied = ds.applied_like(found_inf)
        torch.eq(found_inf, 0, out=applied)
        return applied

    # -- schedule introspection -----------------------------------------------------------------
    def _group_device(self, group: dict) -> torch.device:
        params = group["params"]
        return params[0].device if params else next(iter(self._devices))

    def get_last_lr(self) -> list[torch.Tensor]:
        """Per group, the lr the next ``step()`` uses, as 0-dim float64 tensors on the group's
        device (torch's ``scheduler.get_last_lr()`` after as many steps). Reading them syncs."""
        return [row[0] for row in self._evaluate_groups()]

    def get_last_momentum(self) -> list[torch.Tensor]:
        """Per group, the momentum (SGD) / beta1 (Adam) the next ``step()`` uses."""
        return [row[1] for row in self._evaluate_groups()]

    def _evaluate_groups(self) -> list[torch.Tensor]:
        self._sync_groups()
        rows = {}
        for dev, ds in self._devices.items():
            out = torch.empty_like(ds.group_lr)
            ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, out)
            rows[dev] = out
        return [rows[self._group_device(g)][i] for i, g in enumerate(self.param_groups)]

    @property
    def schedule_counter(self) -> torch.Tensor:
        """The number of ``step()`` calls the schedule has counted (int64 tensor, device)."""
        return self._devices[next(iter(self._devices))].counter

    def set_schedule_counter(self, count: int) -> None:
        """Sets the schedule counter (the number of ``step()`` calls the schedule has counted)
        on every device, and its host mirror: e.g. to continue a torch run at its step."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        for ds in self._devices.values():
            ds.counter.fill_(count)
        self._host.count = count
        self._host_mirror_exact()

    # -- state_dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return optimizer_state_dict(self, super().state_dict())

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads into the existing tensors: per-param state tensors (and the device counter, lr
        factors) keep their identity, so a captured CUDA graph stays valid."""
        before = {
            p: {k: v for k, v in st.items() if isinstance(v, torch.Tensor)}
            for p, st in self.state.items()
        }
        load_optimizer_state(self, state_dict)
        for p, tensors in before.items():
            st = self.state[p]
            for k, old in tensors.items():
                new = st.get(k)
                if (new is not old and isinstance(new, torch.Tensor) and new.shape == old.shape
                        and new.dtype == old.dtype and new.device == old.device):
                    old.copy_(new)
                    st[k] = old
        for bucket in self._buckets:
            bucket.calls.clear()


def _on(t, device):
    if t is None or t.device == device:
        return t
    return t.to(device, non_blocking=True)


def _prepare_grads(call: _Call, grads: list) -> list:
    """The grads the op receives: local shards of DTensor grads; fp32 copies for master_weights."""
    if call.dtensor:
        grads = [_local(g) for g in grads]
    if call.sources is not None and not call.one_pass:
        _check_grads(call.sources, grads)  # before copy_, which would broadcast a wrong shape
        torch._foreach_copy_(call.grads32, grads)
        grads = call.grads32
    return grads


def _with_grad(params, grads):
    """(params, grads) of the params that have a grad."""
    pairs = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
    return [p for p, _ in pairs], [g for _, g in pairs]


def _check_grads(params, grads):
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if g.is_sparse:
            raise RuntimeError(f"params[{i}]: fusedlr does not support sparse gradients")
        if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
            raise RuntimeError(
                f"params[{i}]: grad is {g.dtype} {tuple(g.shape)} on {g.device} but the param is "
                f"{p.dtype} {tuple(p.shape)} on {p.device}"
            )


class SGD(_FusedOptimizer):
    """``torch.optim.SGD`` with an on-device ``schedule`` (see the module docstring)."""

    _algorithm = "sgd"

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False, schedule=None, steps_per_epoch=1,
                 skip_schedule_on_inf=False, master_weights=False, max_grad_norm=None,
                 norm_type=2.0, skip_nonfinite=False, foreach=None, fused=None,
                 differentiable=False):
        check_torch_flags(type(self).__name__, foreach=foreach, fused=fused,
                          differentiable=differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults, schedule=schedule, steps_per_epoch=steps_per_epoch,
                         skip_schedule_on_inf=skip_schedule_on_inf, master_weights=master_weights,
                         max_grad_norm=max_grad_norm, norm_type=norm_type,
                         skip_nonfinite=skip_nonfinite)


class Adam(_FusedOptimizer):
    """``torch.optim.Adam`` with an on-device ``schedule`` (see the module docstring)."""

    _algorithm = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, schedule=None, steps_per_epoch=1,
                 skip_schedule_on_inf=False, master_weights=False, max_grad_norm=None,
                 norm_type=2.0, skip_nonfinite=False, foreach=None, fused=None,
                 capturable=False, differentiable=False):
        check_torch_flags(type(self).__name__, foreach=foreach, fused=fused,
                          capturable=capturable, differentiable=differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults, schedule=schedule, steps_per_epoch=steps_per_epoch,
                         skip_schedule_on_inf=skip_schedule_on_inf, master_weights=master_weights,
                         max_grad_norm=max_grad_norm, norm_type=norm_type,
                         skip_nonfinite=skip_nonfinite)


class AdamW(Adam):
    """``torch.optim.AdamW`` (decoupled weight decay) with an on-device ``schedule``."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, schedule=None, steps_per_epoch=1,
                 skip_schedule_on_inf=False, master_weights=False, max_grad_norm=None,
                 norm_type=2.0, skip_nonfinite=False, foreach=None, fused=None,
                 capturable=False, differentiable=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, schedule=schedule,
                         steps_per_epoch=steps_per_epoch,
                         skip_schedule_on_inf=skip_schedule_on_inf, master_weights=master_weights,
                         max_grad_norm=max_grad_norm, norm_type=norm_type,
                         skip_nonfinite=skip_nonfinite,
                         foreach=foreach, fused=fused, capturable=capturable,
                         differentiable=differentiable)
