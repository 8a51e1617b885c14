"""Which child of a torch scheduler tree makes torch part from the closed form, and why.

Called at the first step where the replay of torch and the fusedlr spec disagree
(``_torch_check.compare``). The causes are the ways torch's recursive composition differs from
a closed form (README.md, section "Coming from torch.optim", has a table with an example of
each):

- inside a ChainedScheduler, a child that computes its lr from its own base lr (LambdaLR,
  CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR; CosineAnnealingLR past T_max) or a
  SequentialLR (it resets the lr when built and restarts children from their base lr) discards
  what the other children applied; fusedlr multiplies the children's factors;
- SequentialLR starts a child at its milestone from that child's own ``base_lrs`` (which a
  OneCycleLR constructor may have made differ from ``initial_lr``), and a MultiplicativeLR from
  the lr the previous child left, times ``lr_lambda(0)``;
- a composite nested as the first child of a SequentialLR takes one step more (torch re-runs its
  initial step) and one nested later cannot be started at all (torch raises);
- CyclicLR / OneCycleLR write momentum into the group when built, and after their phase torch
  keeps the last momentum they wrote.
"""

from __future__ import annotations

from bisect import bisect_right

from torch.optim import lr_scheduler as tls

# torch classes whose step computes the lr from their own base lr (or absolutely) instead of
# multiplying the current lr.
_FROM_BASE = (tls.LambdaLR, tls.CosineAnnealingWarmRestarts, tls.CyclicLR, tls.OneCycleLR)
_ABSOLUTE = (tls.CyclicLR, tls.OneCycleLR)
_COMPOSITE = (tls.SequentialLR, tls.ChainedScheduler)
_FIX = "fusedlr multiplies the children's factors."


def blame(root, t: int, g: int, what: str) -> tuple[str, str]:
    """(the child responsible, why) for a divergence at schedule time ``t`` in group ``g``."""
    if what == "momentum":
        return _blame_momentum(root, t)
    return _walk(root, t, "", t, g)


def _sub(path: str, i: int) -> str:
    return f"{path}.schedulers[{i}]".lstrip(".")


def _name(node, path: str) -> str:
    from .convert import where

    return f"{type(node).__name__} {where(path)}"


def _milestones(node) -> list[int]:
    return [int(m) for m in node._milestones]


def _initial_lr(node, g: int):
    groups = node.optimizer.param_groups
    return groups[g].get("initial_lr") if g < len(groups) else None


def _own_base(node, g: int):
    """The leaf's torch base lr when it differs from the group's initial_lr, else None."""
    if isinstance(node, _ABSOLUTE) or isinstance(node, _COMPOSITE):
        return None
    base = getattr(node, "base_lrs", None)
    if base is None or g >= len(base):
        return None
    initial = _initial_lr(node, g)
    return float(base[g]) if initial is not None and float(base[g]) != float(initial) else None


def _walk(node, local: int, path: str, t: int, g: int) -> tuple[str, str]:
    """Descends to what is active at absolute time ``t`` (``local`` in ``node``'s time)."""
    if isinstance(node, tls.SequentialLR):
        ms = _milestones(node)
        i = bisect_right(ms, local)
        start = ms[i - 1] if i else 0
        child, cpath = node._schedulers[i], _sub(path, i)
        if isinstance(child, _COMPOSITE):
            return _nested(child, cpath, i, node, path)
        if i and (local == start or _restarted_differently(child, g)):
            return _started(child, cpath, t - local + start, g, now=local == start)
        return _walk(child, local - start, cpath, t, g)
    if isinstance(node, tls.ChainedScheduler):
        return _chain(node, local, path, t, g)
    base = _own_base(node, g)
    if base is not None:
        return _name(node, path), (
            f"has its own base lr in torch (base_lrs[{g}] = {base!r}), not the group's "
            f"initial_lr ({_initial_lr(node, g)!r}) that fusedlr's schedule multiplies "
            "(a OneCycleLR constructor overwrites initial_lr; schedulers built before it keep "
            "the old value)."
        )
    return _name(node, path), (
        "continues differently from its closed form in torch: its state was changed outside "
        "its own step() (step(epoch), a hand-edited lr, or another scheduler writing into the "
        "param group)."
    )


def _restarted_differently(child, g: int) -> bool:
    if isinstance(child, tls.MultiplicativeLR):
        return True  # it continues from the lr the previous child left
    return _own_base(child, g) is not None


def _started(child, path: str, when: int, g: int, *, now: bool) -> tuple[str, str]:
    verb = "starts" if now else "was started"
    if isinstance(child, tls.MultiplicativeLR):
        return _name(child, path), (
            f"{verb} at step {when}: torch's SequentialLR starts it from the lr the previous "
            "child left, times lr_lambda(0); fusedlr starts it from the group's base lr."
        )
    base = _own_base(child, g)
    if base is not None:
        return _name(child, path), (
            f"{verb} at step {when}: torch's SequentialLR starts it from its own base_lrs "
            f"({base!r}), fusedlr from the group's base lr (initial_lr "
            f"{_initial_lr(child, g)!r}; a OneCycleLR constructor overwrites initial_lr, and a "
            "scheduler built before it keeps the old value)."
        )
    return _name(child, path), (
        f"{verb} at step {when}, and torch's SequentialLR starts it from a different lr than "
        "fusedlr's (the group's base lr)."
    )


def _nested(child, path: str, i: int, parent, ppath: str) -> tuple[str, str]:
    where = _name(parent, ppath)
    if i:
        why = (f"is nested as child {i} of {where}: torch cannot start a nested scheduler at a "
               "milestone (LRScheduler.get_lr raises NotImplementedError).")
    elif isinstance(child, tls.ChainedScheduler):
        why = (f"is the first child of {where}: torch's SequentialLR undoes its children's "
               "first step and re-runs it as a step() of the chain, so recursive children "
               "(ExponentialLR, PolynomialLR, CosineAnnealingLR, MultiplicativeLR, ...) take "
               "one step more; fusedlr nests it exactly.")
    else:
        why = (f"is the first child of {where}: torch's SequentialLR does not undo the nested "
               "SequentialLR's own first step, so it runs one step ahead; fusedlr nests it "
               "exactly.")
    return _name(child, path), why


def _active(node, local: int, path: str, out: list) -> list:
    """(scheduler, path) of what a chain applies at ``local``: leaves through nested chains,
    SequentialLRs themselves plus their active child."""
    if isinstance(node, tls.ChainedScheduler):
        for j, c in enumerate(node._schedulers):
            _active(c, local, _sub(path, j), out)
    elif isinstance(node, tls.SequentialLR):
        out.append((node, path, local))
        ms = _milestones(node)
        i = bisect_right(ms, local)
        _active(node._schedulers[i], local - (ms[i - 1] if i else 0), _sub(path, i), out)
    else:
        out.append((node, path, local))
    return out


def _chain(node, local: int, path: str, t: int, g: int) -> tuple[str, str]:
    found = _active(node, local, path, [])
    leaves = [f for f in found if not isinstance(f[0], tls.SequentialLR)]
    chain = _name(node, path)
    if len(leaves) <= 1 and len(node._schedulers) == 1:
        return _walk(node._schedulers[0], local, _sub(path, 0), t, g)
    for leaf, lpath, _ in leaves:
        if isinstance(leaf, _FROM_BASE):
            return _name(leaf, lpath), (
                f"inside {chain} computes its lr from its own base lr at every step, "
                f"discarding what the other schedulers of the chain applied: torch chains "
                f"recursively, {_FIX}"
            )
    for seq, spath, slocal in found:
        if isinstance(seq, tls.SequentialLR):
            at = (f", starting a child at step {t}" if slocal in _milestones(seq) else "")
            return _name(seq, spath), (
                f"inside {chain}{at}: torch's SequentialLR resets the group's lr to initial_lr "
                "when it is built and starts each child from its own base lr, discarding what "
                f"the other schedulers of the chain applied; {_FIX}"
            )
    for leaf, lpath, _ in leaves:
        if isinstance(leaf, tls.CosineAnnealingLR):
            return _name(leaf, lpath), (
                f"inside {chain} is not a pure factor in torch (its recursion is affine when "
                "eta_min > 0, and past T_max it adds a step computed from its base lr); " + _FIX
            )
    for leaf, lpath, _ in leaves:
        if _own_base(leaf, g) is not None:
            return _walk(leaf, 0, lpath, t, g)
    return chain, f"composes its children recursively in torch; {_FIX}"


def _cycling(node, path: str, start: int, out: list) -> list:
    """Momentum-cycling leaves with their absolute start times, in tree order."""
    if isinstance(node, tls.SequentialLR):
        starts = [0] + _milestones(node)
        for i, c in enumerate(node._schedulers):
            _cycling(c, _sub(path, i), start + starts[i], out)
    elif isinstance(node, tls.ChainedScheduler):
        for i, c in enumerate(node._schedulers):
            _cycling(c, _sub(path, i), start, out)
    elif getattr(node, "cycle_momentum", False):
        out.append((start, node, path))
    return out


def _blame_momentum(root, t: int) -> tuple[str, str]:
    found = _cycling(root, "", 0, [])
    if not found:
        return "the param group", ("had its momentum changed outside the scheduler; fusedlr "
                                   "keeps one momentum per group.")
    before = [f for f in found if f[0] <= t]
    _, node, path = before[-1] if before else found[0]
    return _name(node, path), (
        "cycles the momentum: torch leaves the group's momentum at whatever a cycling scheduler "
        "last wrote (CyclicLR and OneCycleLR also write max_momentum in their constructors, "
        "before they are active), while fusedlr uses one momentum per group wherever no "
        "schedule cycles it."
    )
