"""fusedlr with timm: optimizer names that survive timm's parsing, layer decay on the device.

timm's optimizer factory (``timm.optim.create_optimizer_v2``) lowercases the name, splits it on
``'_'`` and looks up only the last part (a first part ``lookahead`` wraps the result in
``Lookahead``). A registration named ``fusedlr_adamw`` is therefore read as ``adamw`` and
silently returns ``torch.optim.AdamW``. This module registers names without ``'_'``:

- ``register(prefix="fusedlr")`` adds ``fusedlrsgd`` (Nesterov, as timm's ``sgd``),
  ``fusedlrmomentum`` (classical momentum, as timm's ``momentum``), ``fusedlradam`` and
  ``fusedlradamw`` to timm's registry. Then timm's own factory builds fusedlr optimizers, with
  timm's param groups (weight decay off for 1-d params, layer decay) and fusedlr's keywords
  passed through::

      register()
      opt = timm.optim.create_optimizer_v2(model, "fusedlradamw", lr=1e-3, weight_decay=0.05,
                                           layer_decay=0.75, schedule=S.WarmupCosine(500, 10000))

- ``create_optimizer(model, opt="adamw", ...)`` does the same in one call and also accepts the
  spellings ``"adamw"``, ``"fusedlradamw"`` and ``"fusedlr_adamw"`` (and a ``lookahead_``
  prefix); any other name raises ``ValueError`` listing the names it knows, never a torch
  optimizer.

Layer decay: timm's ``param_groups_layer_decay`` gives each group an ``lr_scale`` that only
timm's schedulers apply (they write ``lr * lr_scale`` into ``group['lr']``). fusedlr applies
``lr_scale`` itself, on the device, in a group that has a schedule: that group's lr is
``lr * lr_scale * schedule(t)`` with no timm scheduler. Don't attach a timm scheduler to a group
that has a fusedlr schedule (the two would multiply; fusedlr warns with
``fusedlr.DoubleScheduleWarning``).

Importing this module imports timm; ``import fusedlr`` does not.
"""

from __future__ import annotations

import dataclasses
import re

import fusedlr

try:
    import timm.optim
    from timm.optim import OptimInfo
    from timm.optim._optim_factory import default_registry  # timm has no public register()
except ImportError as exc:  # pragma: no cover - exercised only without timm
    raise ImportError("fusedlr.integrations.timm needs timm: pip install timm") from exc

__all__ = ["OPTIMIZERS", "create_optimizer", "register"]

# fusedlr's optimizers under timm's base names, with timm's flags and defaults for those names.
OPTIMIZERS = {
    "sgd": OptimInfo(name="sgd", opt_class=fusedlr.SGD, has_eps=False, has_momentum=True,
                     defaults={"nesterov": True},
                     description="fusedlr.SGD with Nesterov momentum, lr schedule on the device"),
    "momentum": OptimInfo(name="momentum", opt_class=fusedlr.SGD, has_eps=False,
                          has_momentum=True, defaults={"nesterov": False},
                          description="fusedlr.SGD with classical momentum, lr schedule on the "
                                      "device"),
    "adam": OptimInfo(name="adam", opt_class=fusedlr.Adam, has_betas=True,
                      description="fusedlr.Adam, lr schedule on the device"),
    "adamw": OptimInfo(name="adamw", opt_class=fusedlr.AdamW, has_betas=True,
                       description="fusedlr.AdamW, lr schedule on the device"),
}

_PREFIX_PATTERN = re.compile(r"[a-z0-9]+")
_LOOKAHEAD = "lookahead_"


def register(prefix: str = "fusedlr") -> list[str]:
    """Registers fusedlr's optimizers in timm's default registry as ``prefix + base`` for each
    base name in ``OPTIMIZERS`` (``fusedlradamw`` ...) and returns those names. Calling it again
    is harmless. ``prefix`` must be lowercase letters and digits: timm lowercases names and
    reads only the part after the last ``'_'``."""
    if not isinstance(prefix, str) or not _PREFIX_PATTERN.fullmatch(prefix):
        why = ""
        if isinstance(prefix, str) and "_" in prefix:
            why = (f"; timm splits optimizer names on '_' and looks up only the last part, so "
                   f"{prefix}adamw would be read as {prefix.rsplit('_', 1)[-1]}adamw")
        raise ValueError(
            f"prefix must be a non-empty string of lowercase letters and digits, got "
            f"{prefix!r}{why}"
        )
    known = set(timm.optim.list_optimizers())
    names = []
    for base, info in OPTIMIZERS.items():
        name = prefix + base
        if name not in known or timm.optim.get_optimizer_info(name).opt_class is not info.opt_class:
            default_registry.register(dataclasses.replace(info, name=name))
        names.append(name)
    return names


def create_optimizer(model_or_params, opt: str = "adamw", lr: float | None = None,
                     weight_decay: float = 0.0, momentum: float = 0.9, *, schedule=None,
                     steps_per_epoch: int = 1, **kwargs):
    """timm's ``create_optimizer_v2`` returning a fusedlr optimizer.

    ``opt`` is one of ``OPTIMIZERS``' names, alone or prefixed ``fusedlr`` / ``fusedlr_``
    (``"adamw"``, ``"fusedlradamw"`` and ``"fusedlr_adamw"`` are the same), optionally after
    ``lookahead_``. ``schedule`` and ``steps_per_epoch`` go to the fusedlr optimizer; every
    other keyword (``layer_decay``, ``filter_bias_and_bn``, ``param_group_fn``, ``betas``,
    ``eps``, ...) is timm's, with timm's meaning. With ``layer_decay``, each group's lr on the
    device is ``lr * lr_scale * schedule(t)``."""
    base, lookahead = _base_name(opt)
    name = register()[list(OPTIMIZERS).index(base)]
    return timm.optim.create_optimizer_v2(
        model_or_params, opt=(_LOOKAHEAD if lookahead else "") + name, lr=lr,
        weight_decay=weight_decay, momentum=momentum, schedule=schedule,
        steps_per_epoch=steps_per_epoch, **kwargs,
    )


def _base_name(opt) -> tuple[str, bool]:
    """('adamw', lookahead?) from 'adamw', 'fusedlradamw', 'fusedlr_adamw', 'lookahead_...'."""
    if not isinstance(opt, str):
        raise TypeError(f"opt must be a string naming an optimizer, got {type(opt).__name__}")
    name = opt.lower()
    lookahead = name.startswith(_LOOKAHEAD)
    if lookahead:
        name = name[len(_LOOKAHEAD):]
    for prefix in ("fusedlr_", "fusedlr"):
        if name.startswith(prefix) and name[len(prefix):] in OPTIMIZERS:
            name = name[len(prefix):]
            break
    if name not in OPTIMIZERS:
        known = ", ".join(repr(n) for n in OPTIMIZERS)
        raise ValueError(
            f"opt={opt!r}: fusedlr provides {known} (optionally prefixed 'fusedlr' or "
            f"'fusedlr_', and after 'lookahead_'); for other optimizers use "
            "timm.optim.create_optimizer_v2"
        )
    return name, lookahead
