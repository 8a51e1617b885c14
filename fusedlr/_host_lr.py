"""The lr on the host without a device read: a host mirror of the schedule counter.

The device counter advances on every ``step()``; the optimizer also counts its steps in a
Python int. The lr of any step is a closed form of that count, evaluated here by the same C++
(``eval_schedule_`` on CPU copies of the program and group rows) that the kernels run, so
``get_host_lr()`` is exact and costs no sync: what loggers (HF Trainer, Lightning) should
read every step.

The mirror is unknowable, and ``get_host_lr`` says so instead of guessing, when a device-side
decision moved the lr or the counter:

- a ``fusedlr.ReduceLROnPlateau`` is attached (its reductions are decided on the device);
- ``skip_schedule_on_inf=True`` and a step received ``found_inf`` (an AMP overflow may have
  held the counter);
- steps ran under ``torch.compile`` or were captured in a CUDA graph (replays advance the device
  counter without Python running).

``sync_host_counter()`` reads the device counter once and makes the mirror exact again (the
plateau case excepted). Writing ``schedule_counter`` by hand bypasses the mirror: call it after.
"""

from __future__ import annotations

import warnings

import torch

from fusedlr import ops
from fusedlr.diagnostics import HostLRUnknownError, HostLRWarning

PLATEAU = "plateau"
SKIP_ON_INF = "skip_on_inf"
COMPILED = "compiled"
GRAPH = "cuda_graph"

_REASONS = {
    PLATEAU: "a fusedlr.ReduceLROnPlateau is attached: its lr reductions are decided on the "
             "device",
    SKIP_ON_INF: "skip_schedule_on_inf=True and a step received found_inf: whether the AMP "
                 "overflow held the schedule counter is decided on the device",
    COMPILED: "steps ran under torch.compile, where the host step count is not kept; call "
              "sync_host_counter() after them",
    GRAPH: "a step was captured in a CUDA graph: replays advance the device counter without "
           "the host; call sync_host_counter() after replaying",
}
_WHICH = ("last", "next")
_BLOCK = 32  # counters evaluated per host evaluation
_FALLBACKS = ("raise", "device")


class _MirrorState:
    """The mirror's fields, in an object of their own: under torch.compile, dynamo replays
    attribute writes on a plain object but drops them on the optimizer itself (torch 2.14)."""

    __slots__ = ("count", "blockers", "warned", "compiled", "block_key", "block_start", "block")

    def __init__(self) -> None:
        self.count = 0  # step() calls seen by Python
        self.blockers: set[str] = set()  # why the mirror is unknowable (keys of _REASONS)
        self.warned = False  # the fallback="device" warning was given
        self.compiled = False  # a step ran under torch.compile (a plain bool: set when traced)
        self.block_key = None  # HostLRMirror._host_block's cache: what it was evaluated from,
        self.block_start = 0  # the first counter,
        self.block: list = []  # and its rows


class HostLRMirror:
    """Mixin of the fused optimizers: the host step count and the lr evaluated from it."""

    def _init_host_mirror(self) -> None:
        self._host = _MirrorState()

    @property
    def host_step_count(self) -> int:
        """The host mirror of ``schedule_counter``: ``step()`` calls seen by Python."""
        return self._host.count

    @property
    def host_lr_unknown_reason(self) -> str | None:
        """Why ``get_host_lr`` cannot answer from the host, or None when it can."""
        host = self._host
        if not (host.blockers or host.compiled):
            return None
        keys = sorted(host.blockers | ({COMPILED} if host.compiled else set()))
        return "; ".join(_REASONS[k] for k in keys)

    def sync_host_counter(self) -> int:
        """Reads the device counter once (a sync) into the host mirror; returns it."""
        self._host.count = int(self.schedule_counter.item())
        self._host_mirror_exact()
        return self._host.count

    def _host_mirror_exact(self) -> None:
        """The host count was just set from the device's: only the plateau stays unknowable."""
        self._host.blockers &= {PLATEAU}
        self._host.compiled = False

    def get_host_lr(self, which: str = "last", *, fallback: str = "raise") -> list[float]:
        """Per group, the lr the kernel used at the most recent ``step()`` (``which="last"``;
        before the first step, the lr of step 0) or will use at the next (``"next"``), as
        Python floats computed on the host: no device read.

        When the host cannot know it (``host_lr_unknown_reason``), ``fallback="raise"``
        raises ``fusedlr.HostLRUnknownError``; ``fallback="device"`` reads the device (a sync)
        and warns once per optimizer with ``fusedlr.HostLRWarning``."""
        return [row[0] for row in self._host_rows_at(which, fallback)]

    def get_host_momentum(self, which: str = "last", *, fallback: str = "raise") -> list[float]:
        """Per group, SGD's momentum / Adam's beta1 of that step (see ``get_host_lr``)."""
        return [row[1] for row in self._host_rows_at(which, fallback)]

    def _host_rows_at(self, which: str, fallback: str) -> list[list[float]]:
        if which not in _WHICH:
            raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
        if fallback not in _FALLBACKS:
            raise ValueError(f"fallback must be one of {_FALLBACKS}, got {fallback!r}")
        if which == "next":
            self._sync_groups()  # a schedule=None group's lr may have been set since the step
        reason = self.host_lr_unknown_reason
        if reason is not None:
            if fallback == "raise":
                raise HostLRUnknownError(
                    f"{type(self).__name__}: the lr is not known on the host: {reason}. Pass "
                    "fallback='device' to read it from the device (a sync)"
                )
            if not self._host.warned:
                self._host.warned = True
                warnings.warn(
                    f"{type(self).__name__}: the lr is not known on the host ({reason}); "
                    "reading it from the device instead (a sync per call)",
                    HostLRWarning,
                    stacklevel=3,
                )
            return self._device_rows_at(which)
        count = max(self._host.count - 1 if which == "last" else self._host.count, 0)
        return self._host_block(count)[count - self._host.block_start]

    def _host_block(self, count: int) -> list:
        """(lr, momentum) rows of every group for _BLOCK counters from ``count``, evaluated by
        the kernels' C++ on host copies once per _BLOCK steps, while the program, the rows and
        the plateau factors are unchanged (tensor versions; a step that streamed a large model
        leaves the caches cold, and one evaluation then costs ~0.2 ms)."""
        program, rows, scale = self._host_program, self._host_rows, self._host_lr_scale
        key = (program, rows, scale, program._version, rows._version, scale._version)
        host = self._host
        old = host.block_key  # holds the tensors themselves: an id() could be reused
        if (old is None or old[0] is not program or old[1] is not rows or old[2] is not scale
                or old[3:] != key[3:] or not host.block_start <= count
                or count >= host.block_start + len(host.block)):
            out = torch.empty(len(self._rows), 2, dtype=torch.float64)
            counter = torch.empty(1, dtype=torch.int64)
            block = []
            for c in range(count, count + _BLOCK):
                counter.fill_(c)
                ops.eval_schedule_(program, rows, scale, counter, out)
                block.append(out.tolist())
            host.block_key, host.block_start, host.block = key, count, block
        return host.block

    def _device_rows_at(self, which: str) -> list[list[float]]:
        rows = []
        for dev, ds in self._devices.items():
            counter = ds.counter - 1 if which == "last" else ds.counter.clone()
            counter.clamp_(min=0)
            out = torch.empty_like(ds.group_lr)
            ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, counter, out)
            rows.append((dev, out.cpu()))
        by_device = dict(rows)
        return [by_device[self._group_device(g)][i].tolist()
                for i, g in enumerate(self.param_groups)]

    def _host_note_step(self, found_inf) -> None:
        """Called at the end of every successful ``step()``."""
        if torch.compiler.is_compiling():
            self._host.compiled = True
            return
        self._host.count += 1
        if found_inf is not None and self.skip_schedule_on_inf:
            self._host.blockers.add(SKIP_ON_INF)
        if self._has_cuda and torch.cuda.is_current_stream_capturing():
            self._host.blockers.add(GRAPH)
