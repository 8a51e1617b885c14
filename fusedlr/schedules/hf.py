"""``from_hf``: the fusedlr schedule of an HF transformers scheduler name (``SchedulerType``,
``TrainingArguments.lr_scheduler_type``), as ``transformers.get_scheduler`` builds it.

The schedule's lr equals ``get_scheduler(name, optimizer, num_warmup_steps,
num_training_steps, scheduler_specific_kwargs=kwargs)``'s at every step, past
``num_training_steps`` too (each HF lambda is defined there and the closed form is the same
function: linear and cosine-with-restarts give 0, polynomial ``lr_end / lr_init``, cosine keeps
oscillating, warmup-stable-decay holds ``min_lr_ratio``).
"""

from __future__ import annotations

from ._base import Schedule
from .composite import RelativeWarmup
from .hf_like import (
    CosineWarmupWithMinLR,
    CosineWithHardRestarts,
    CosineWithWarmup,
    LinearWithWarmup,
    PolynomialWithWarmup,
)
from .modern import InverseSqrt, WarmupStableDecay

#: HF names with a closed form, and HF's defaults of their scheduler_specific_kwargs.
HF_KWARGS = {
    "linear": {},
    "cosine": {"num_cycles": 0.5},
    "cosine_with_restarts": {"num_cycles": 1},
    "polynomial": {"lr_end": 1e-7, "power": 1.0},
    "constant": None,  # HF passes no kwargs (ignores them)
    "constant_with_warmup": None,
    "inverse_sqrt": {"timescale": None},
    "cosine_with_min_lr": {"num_cycles": 0.5, "min_lr": None, "min_lr_rate": None},
    "cosine_warmup_with_min_lr": {"num_cycles": 0.5, "min_lr": None, "min_lr_rate": None,
                                  "warmup_lr_rate": None},
    "warmup_stable_decay": {"num_decay_steps": None, "num_stable_steps": None,
                            "warmup_type": "linear", "decay_type": "cosine", "min_lr_ratio": 0.0,
                            "num_cycles": 0.5},
}
_NO_CLOSED_FORM = {
    "reduce_lr_on_plateau": "it reacts to a metric: use fusedlr.ReduceLROnPlateau(optimizer, "
                            "...), which keeps its state on the device",
    "greedy": "it adapts the lr to a metric (GreedyLR): there is no closed form to run on the "
              "device",
}


def from_hf(name, num_warmup_steps: int | None = None, num_training_steps: int | None = None,
            *, lr_init: float | None = None, **kwargs) -> Schedule:
    """The schedule of HF ``get_scheduler(name, ...)`` as a fusedlr spec.

    ``name`` is an HF ``SchedulerType`` or its string; ``kwargs`` are HF's
    ``scheduler_specific_kwargs``. ``lr_init`` is the optimizer's default lr
    (``optimizer.defaults['lr']``), which HF reads for ``polynomial`` (its ``lr_end`` is
    absolute) and for a ``min_lr`` given to ``cosine_with_min_lr`` /
    ``cosine_warmup_with_min_lr``; those need it.

    >>> from_hf("cosine", 2, 10)
    CosineWithWarmup(warmup_steps=2, total_steps=10, num_cycles=0.5, min_lr_rate=0.0)
    """
    key = getattr(name, "value", name)
    if not isinstance(key, str):
        raise TypeError(f"from_hf: name must be an HF scheduler name (a str), got {name!r}")
    if key in _NO_CLOSED_FORM:
        raise ValueError(f"from_hf: {key!r} has no closed form: {_NO_CLOSED_FORM[key]}")
    if key not in HF_KWARGS:
        known = ", ".join(repr(k) for k in HF_KWARGS)
        raise ValueError(f"from_hf: unknown HF scheduler name {key!r}; known: {known}")
    if key == "constant":
        return RelativeWarmup(None, 0)
    if num_warmup_steps is None:
        raise ValueError(f"from_hf: {key!r} requires num_warmup_steps (as HF's get_scheduler)")
    if key == "constant_with_warmup":
        return RelativeWarmup(None, num_warmup_steps)
    kw = _kwargs(key, kwargs)
    if key == "inverse_sqrt":
        return InverseSqrt(num_warmup_steps, kw["timescale"])
    if key == "warmup_stable_decay":
        return _wsd(num_warmup_steps, num_training_steps, kw)
    if num_training_steps is None:
        raise ValueError(f"from_hf: {key!r} requires num_training_steps (as HF's get_scheduler)")
    w, n = num_warmup_steps, num_training_steps
    if key == "linear":
        return LinearWithWarmup(w, n)
    if key == "cosine":
        return CosineWithWarmup(w, n, kw["num_cycles"])
    if key == "cosine_with_restarts":
        return CosineWithHardRestarts(w, n, kw["num_cycles"])
    if key == "polynomial":
        return PolynomialWithWarmup(w, n, _need_lr_init(key, lr_init, "lr_end is absolute"),
                                    kw["lr_end"], kw["power"])
    rate = _min_lr_rate(key, kw, lr_init)
    if key == "cosine_with_min_lr":
        return CosineWithWarmup(w, n, kw["num_cycles"], rate)
    return CosineWarmupWithMinLR(w, n, kw["num_cycles"], rate, kw["warmup_lr_rate"])


def _kwargs(key: str, kwargs: dict) -> dict:
    defaults = HF_KWARGS[key]
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(
            f"from_hf: {key!r} got unexpected keyword arguments {unknown}; HF's accepts "
            f"{sorted(defaults) or 'none'}"
        )
    return {**defaults, **kwargs}


def _need_lr_init(key: str, lr_init, why: str) -> float:
    if lr_init is None:
        raise ValueError(
            f"from_hf: {key!r} needs lr_init, the optimizer's default lr (HF reads "
            f"optimizer.defaults['lr']: {why})"
        )
    return lr_init


def _min_lr_rate(key: str, kw: dict, lr_init) -> float:
    if kw["min_lr"] is not None and kw["min_lr_rate"] is not None:
        raise ValueError(f"from_hf: {key!r}: only one of min_lr or min_lr_rate should be set")
    if kw["min_lr"] is not None:
        lr = _need_lr_init(key, lr_init, "min_lr_rate = min_lr / lr_init")
        if not lr > 0:
            raise ValueError(f"from_hf: {key!r}: lr_init must be > 0, got {lr_init}")
        return kw["min_lr"] / lr
    if kw["min_lr_rate"] is None:
        raise ValueError(f"from_hf: {key!r}: one of min_lr or min_lr_rate must be set (as HF)")
    return kw["min_lr_rate"]


def _wsd(w, n, kw) -> WarmupStableDecay:
    d, s = kw["num_decay_steps"], kw["num_stable_steps"]
    if d is None:
        raise TypeError("from_hf: 'warmup_stable_decay' requires num_decay_steps (as HF)")
    if n is None and s is None:
        raise ValueError("from_hf: 'warmup_stable_decay' requires num_training_steps or "
                         "num_stable_steps (as HF)")
    if s is None:  # HF uses num_stable_steps when both are given
        s = n - w - d
        if s < 0:
            raise ValueError(
                f"from_hf: 'warmup_stable_decay': num_training_steps ({n}) is below "
                f"num_warmup_steps + num_decay_steps ({w + d}), so the stable phase would be "
                "negative"
            )
    return WarmupStableDecay(w, s, d, kw["min_lr_ratio"], kw["warmup_type"], kw["decay_type"],
                             kw["num_cycles"])
