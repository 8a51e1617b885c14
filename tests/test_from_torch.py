"""torch -> fusedlr: ``fusedlr.from_torch`` / ``fusedlr.schedules.from_torch`` against torch.

The oracle is torch itself. Each trajectory test builds two identical torch runs (float64
params of odd sizes, three param groups with different lrs, fresh random data), steps both to
the middle of the schedule, converts one into a fused optimizer and continues both: before every
step the lr and momentum of every group must agree to 1e-12 relative and after it the params
to ~1e-12 relative. Trees whose torch behaviour the closed form does not follow must be refused
(or warned about), naming the child and the step; a random sweep of nested trees checks that
every tree is either converted exactly or refused, never silently different.
"""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as tls

import fusedlr
from fusedlr import schedules as S
from fusedlr.schedules._torch_check import replay

SIZES = (1, 7, 33)
GROUP_LRS = (0.1, 0.05, 0.3)
TORCH_OPT = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}


def _setup(seed: int, opt_name: str, okw: dict, group_lrs=GROUP_LRS):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
              for n in SIZES[:len(group_lrs)]]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, group_lrs, strict=True)]
    return params, TORCH_OPT[opt_name](groups, **okw)


def _grads(params, k: int, shift: list[float]):
    """A gradient that depends on the step and (weakly, so rounding differences between torch's
    and fusedlr's arithmetic are not amplified by the dynamics) on the params."""
    for i, p in enumerate(params):
        x = p.detach()
        p.grad = (0.5 + shift[i]) * (1.0 + 0.3 * math.sin(0.7 * k + i)) + 0.002 * x \
            + 0.01 * torch.sin(x)


def _momentum(group):
    return group["momentum"] if "momentum" in group else group["betas"][0]


def _close(a: float, b: float, tol: float = 1e-12, scale: float = 1.0) -> bool:
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-14 * scale


def _torch_step(opt, sched, params, k, shift, sched_every=1):
    _grads(params, k, shift)
    opt.step()
    if sched is not None and (k + 1) % sched_every == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched.step()


def continue_both(make, opt_name, okw, mid, after, *, seed=None, sched_every=1, **conv_kw):
    """Runs two identical torch runs for ``mid`` steps, converts the second and continues both
    for ``after`` steps, asserting equal lr / momentum before each step and params after."""
    seed = random.getrandbits(31) if seed is None else seed
    shift = torch.rand(len(SIZES), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    runs = []
    for _ in range(2):
        params, opt = _setup(seed, opt_name, okw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's SequentialLR steps children when built
            runs.append((params, opt, make(opt) if make is not None else None))
    for k in range(mid):
        for params, opt, sched in runs:
            _torch_step(opt, sched, params, k, shift, sched_every)
    (t_params, t_opt, t_sched), (f_params, f_src, f_sched) = runs
    checks_replay = f_sched is not None and sched_every == 1
    shadow = replay(f_sched, after) if checks_replay else ([[]], [[]], None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DoubleScheduleWarning, no ConversionWarning
        fused = fusedlr.from_torch(f_src, f_sched, steps_per_epoch=sched_every,
                                   step_in_epoch=mid % sched_every, **conv_kw)
        assert [p for g in fused.param_groups for p in g["params"]] == f_params
        assert all("initial_lr" not in g for g in fused.param_groups)
        for k in range(mid, mid + after):
            t_lr = [g["lr"] for g in t_opt.param_groups]
            f_lr = [float(x) for x in fused.get_last_lr()]
            t_m = [_momentum(g) for g in t_opt.param_groups]
            f_m = [float(x) for x in fused.get_last_momentum()]
            if k - mid < len(shadow[0][0]):  # the converter's replay of torch is torch's run
                assert t_lr == [lrs[k - mid] for lrs in shadow[0]], (seed, k)
                assert t_m == [ms[k - mid] for ms in shadow[1]], (seed, k)
            scale = max(GROUP_LRS)
            assert all(_close(a, b, scale=scale) for a, b in zip(t_lr, f_lr, strict=True)), (
                seed, k, t_lr, f_lr)
            assert all(_close(a, b) for a, b in zip(t_m, f_m, strict=True)), (seed, k, t_m, f_m)
            _torch_step(t_opt, t_sched, t_params, k, shift, sched_every)
            _grads(f_params, k, shift)
            fused.step()
            for a, b in zip(t_params, f_params, strict=True):
                torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-13, msg=f"seed {seed}, k {k}")
    return fused


def _lam_a(t):
    return 1.0 / (1.0 + 0.02 * t)


def _lam_b(t):
    return 0.5 + 0.5 * math.cos(0.03 * t)


def _lam_c(t):
    return min(1.0, (t + 1) / 40) * max(0.0, 1.0 - t / 600)


def _mul(t):
    return 0.99 if t % 3 else 1.004


def _scale(x):
    return 1.0 / (1.0 + 0.2 * (x - 1))


SGD_M = ("SGD", dict(momentum=0.9, weight_decay=1e-3))
SGD_N = ("SGD", dict(momentum=0.8, nesterov=True))
ADAM = ("Adam", dict(amsgrad=True, weight_decay=0.01))
ADAMW = ("AdamW", dict(betas=(0.85, 0.99)))

# (id, torch scheduler factory, (optimizer, kwargs), mid, after, from_torch kwargs)
CASES = [
    ("StepLR", lambda o: tls.StepLR(o, 7, 0.8), SGD_M, 120, 200, {}),
    ("MultiStepLR", lambda o: tls.MultiStepLR(o, [30, 90, 150, 150, 200], 0.5), ADAM, 100, 200,
     {}),
    ("ConstantLR", lambda o: tls.ConstantLR(o, 0.25, 130), ADAMW, 100, 200, {}),
    ("LinearLR", lambda o: tls.LinearLR(o, 0.2, 0.9, 150), SGD_N, 100, 200, {}),
    ("ExponentialLR", lambda o: tls.ExponentialLR(o, 0.993), ADAM, 150, 200, {}),
    ("PolynomialLR", lambda o: tls.PolynomialLR(o, 180, 2.0), SGD_M, 100, 200, {}),
    ("CosineAnnealingLR", lambda o: tls.CosineAnnealingLR(o, 70, 0.001), SGD_M, 100, 250, {}),
    ("CosineAnnealingWarmRestarts", lambda o: tls.CosineAnnealingWarmRestarts(o, 20, 2, 0.002),
     ADAMW, 110, 250, {}),
    ("CyclicLR-triangular2-per-group",
     lambda o: tls.CyclicLR(o, [0.01, 0.02, 0.005], [0.2, 0.1, 0.4], 13, 29, "triangular2",
                            base_momentum=[0.8, 0.7, 0.85], max_momentum=[0.9, 0.95, 0.9]),
     SGD_M, 130, 200, {}),
    ("CyclicLR-exp_range-Adam", lambda o: tls.CyclicLR(o, 0.001, 0.01, 17, mode="exp_range",
                                                       gamma=0.995, base_momentum=0.8,
                                                       max_momentum=0.95), ADAM, 100, 200, {}),
    ("CyclicLR-scale_fn", lambda o: tls.CyclicLR(o, 0.01, 0.2, 11, scale_fn=_scale,
                                                 cycle_momentum=False), SGD_M, 100, 200,
     {"total_steps": 400}),
    ("OneCycleLR-three_phase-per-group",
     lambda o: tls.OneCycleLR(o, [0.3, 0.1, 0.5], total_steps=350, three_phase=True),
     ADAM, 120, 230, {}),
    ("OneCycleLR-linear-epochs", lambda o: tls.OneCycleLR(o, 0.4, epochs=10, steps_per_epoch=33,
                                                          anneal_strategy="linear",
                                                          pct_start=0.35), SGD_M, 150, 180, {}),
    ("LambdaLR-per-group", lambda o: tls.LambdaLR(o, [_lam_a, _lam_b, _lam_c]), SGD_M, 120, 250,
     {"total_steps": 600}),
    ("LambdaLR-HF", lambda o: tls.LambdaLR(o, _lam_c), ADAMW, 100, 250, {"total_steps": 600}),
    ("MultiplicativeLR", lambda o: tls.MultiplicativeLR(o, _mul), SGD_N, 100, 200,
     {"total_steps": 300}),
    ("SequentialLR", lambda o: tls.SequentialLR(o, [tls.LinearLR(o, 0.1, 1.0, 50),
                                                    tls.CosineAnnealingLR(o, 250, 1e-4)], [50]),
     SGD_M, 30, 250, {}),
    ("ChainedScheduler", lambda o: tls.ChainedScheduler([tls.StepLR(o, 25, 0.5),
                                                         tls.ExponentialLR(o, 0.995)]),
     ADAM, 100, 200, {}),
    ("Chained(Sequential, StepLR)",
     lambda o: tls.ChainedScheduler([
         tls.SequentialLR(o, [tls.LinearLR(o, 0.1, 1.0, 40), tls.ExponentialLR(o, 0.99)], [40]),
         tls.StepLR(o, 60, 0.5)]), SGD_M, 20, 250, {}),
    ("Chained(Sequential(MultiplicativeLR), Chained)",  # siblings built after the Sequential
     lambda o: tls.ChainedScheduler([
         tls.SequentialLR(o, [tls.MultiplicativeLR(o, _mul), tls.ExponentialLR(o, 0.995)], [90]),
         tls.ChainedScheduler([tls.ConstantLR(o, 0.5, 80), tls.StepLR(o, 100, 0.7)]),
     ]), ADAMW, 60, 250, {"total_steps": 400}),
    ("Sequential(LambdaLR, LambdaLR)", lambda o: tls.SequentialLR(
        o, [tls.LambdaLR(o, _lam_c), tls.LambdaLR(o, [_lam_a, _lam_b, _lam_a])], [70]),
     SGD_N, 50, 200, {"total_steps": 300}),
    ("Sequential(LinearLR, CyclicLR) mid-cycle",
     lambda o: tls.SequentialLR(o, [tls.LinearLR(o, 0.2, 1.0, 30),
                                    tls.CyclicLR(o, 0.01, 0.1, 9, 14)], [30]),
     SGD_M, 80, 200, {}),
]


@pytest.mark.parametrize("make,opt,mid,after,kw", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_every_scheduler_continues_like_torch(make, opt, mid, after, kw):
    continue_both(make, opt[0], opt[1], mid, after, **kw)


@pytest.mark.parametrize("opt", [SGD_N, ADAM, ADAMW], ids=lambda o: o[0])
def test_optimizer_without_scheduler_continues_like_torch(opt):
    fused = continue_both(None, opt[0], opt[1], 37, 120)
    assert all(g["schedule"] is None for g in fused.param_groups)
    assert [g["lr"] for g in fused.param_groups] == list(GROUP_LRS)


def test_epoch_based_loop_with_steps_per_epoch_converts_mid_epoch():
    make = lambda o: tls.SequentialLR(  # noqa: E731
        o, [tls.LinearLR(o, 0.3, 1.0, 4), tls.StepLR(o, 5, 0.5)], [4])
    fused = continue_both(make, "SGD", dict(momentum=0.9), 7 * 6 + 3, 150, sched_every=7)
    assert fused.param_groups[0]["steps_per_epoch"] == 7
    assert int(fused.schedule_counter) == 7 * 6 + 3 + 150


def test_schedule_conversion_result_describes_the_offset_and_the_groups():
    _, opt = _setup(1, "SGD", dict(momentum=0.9))
    sched = tls.LambdaLR(opt, [_lam_a, _lam_b, _lam_a])
    for _ in range(17):
        opt.step()
        sched.step()
    r = S.from_torch(sched, total_steps=100, steps_per_epoch=3, step_in_epoch=2)
    assert (r.step, r.counter, r.steps_per_epoch) == (17, 17 * 3 + 2, 3)
    assert r.base_lrs == GROUP_LRS and r.momenta == (0.9, 0.9, 0.9)
    assert r.schedules[0] == r.schedules[2] != r.schedules[1]
    assert r.checked_steps == 100 - 17 and r.mismatch is None
    with pytest.raises(ValueError, match="different schedules"):
        _ = r.schedule
    assert S.from_torch(tls.StepLR(opt, 3), check_steps=0).schedule == S.StepLR(3)


def test_one_cycle_near_its_end_converts_and_holds_where_torch_would_raise():
    _, opt = _setup(11, "SGD", dict(momentum=0.9))
    sched = tls.OneCycleLR(opt, 0.3, total_steps=50)
    _run(opt, sched, 41)
    r = S.from_torch(sched)  # torch raises past step 50: the check ends there, no mismatch
    assert r.mismatch is None and r.checked_steps == 50 - 41 + 1
    tail = r.schedule.values(20, start=45).tolist()
    assert tail[50 - 45 + 1:] == [tail[49 - 45]] * (20 - 6)


def test_no_scheduler_but_one_attached_warns_that_the_lr_stays_constant():
    _, opt = _setup(12, "Adam", {})
    sched = tls.ExponentialLR(opt, 0.9)
    _run(opt, sched, 3)
    with pytest.warns(S.ConversionWarning, match="scheduler=None"):
        fused = fusedlr.from_torch(opt)
    assert [g["lr"] for g in fused.param_groups] == [g["lr"] for g in opt.param_groups]
    assert fused.param_groups[0]["lr"] == pytest.approx(GROUP_LRS[0] * 0.9**3, rel=1e-15)


def test_conversion_reads_torch_and_never_writes_it():
    _, opt = _setup(2, "Adam", {})
    sched = tls.SequentialLR(opt, [tls.CyclicLR(opt, 0.01, 0.1, 5), tls.OneCycleLR(opt, 0.2, 90)],
                             [40])
    for _ in range(55):
        opt.step()
        sched.step()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    state = sched.state_dict()
    child = [s.state_dict() for s in sched._schedulers]
    S.from_torch(sched, strict=False)
    assert groups == [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    assert state["last_epoch"] == sched.last_epoch == 55
    assert child == [s.state_dict() for s in sched._schedulers]


# -- composites whose torch behaviour the closed form does not follow --------------------------
def _run(opt, sched, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.step()
            sched.step()


def test_chained_warm_restarts_after_step_decay_is_refused_naming_child_and_step():
    params, opt = _setup(3, "SGD", dict(momentum=0.9), group_lrs=(0.1,))
    sched = tls.ChainedScheduler([tls.StepLR(opt, 30, 0.5),
                                  tls.CosineAnnealingWarmRestarts(opt, 50)])
    _run(opt, sched, 12)
    with pytest.raises(S.ConversionError) as err:
        fusedlr.from_torch(opt, sched)
    msg = str(err.value)
    assert "CosineAnnealingWarmRestarts at schedulers[1]" in msg and "step 30" in msg
    assert "0.03454915" in msg and "0.01727457" in msg  # torch vs fusedlr at base lr 0.1

    with pytest.warns(S.ConversionWarning, match="step 30"):
        fused = fusedlr.from_torch(opt, sched, strict=False)
    lrs = fused.param_groups[0]["schedule"].values(31, 0.1)
    assert lrs[30].item() == pytest.approx(0.5 * 0.1 * (1 + math.cos(math.pi * 30 / 50)) / 2)
    assert int(fused.schedule_counter) == 12


def test_one_cycle_constructor_inside_sequential_is_refused_naming_child_and_step():
    # OneCycleLR's constructor overwrites group['initial_lr']; LinearLR, built before it, keeps
    # the old base lr, and torch's SequentialLR starts it from that at its milestone (step 40).
    _, opt = _setup(4, "SGD", dict(momentum=0.9), group_lrs=(0.1,))
    first, last = tls.ConstantLR(opt, 0.5, 10), tls.LinearLR(opt, 0.5, 1.0, 10)
    sched = tls.SequentialLR(opt, [first, tls.OneCycleLR(opt, 1.0, total_steps=30), last],
                             [10, 40])
    _run(opt, sched, 5)
    with pytest.raises(S.ConversionError) as err:
        S.from_torch(sched)
    msg = str(err.value)
    assert "LinearLR at schedulers[2]" in msg and "step 40" in msg and "base_lrs" in msg
    with pytest.warns(S.ConversionWarning, match="LinearLR at schedulers"):
        r = S.from_torch(sched, strict=False)
    assert r.mismatch is not None and r.base_lrs == (1.0 / 25,)


def test_cyclic_momentum_left_behind_inside_sequential_is_refused_naming_child_and_step():
    # CyclicLR writes max_momentum (0.95) into the group when built; after its phase torch keeps
    # the momentum it last wrote, so phases 0 and 2 hold different momenta.
    _, opt = _setup(5, "SGD", dict(momentum=0.9))
    sched = tls.SequentialLR(opt, [tls.LinearLR(opt, 0.5, 1.0, 10),
                                   tls.CyclicLR(opt, 0.01, 0.1, 5, max_momentum=0.95),
                                   tls.ExponentialLR(opt, 0.97)], [10, 23])
    _run(opt, sched, 4)
    with pytest.raises(S.ConversionError) as err:
        fusedlr.from_torch(opt, sched)
    msg = str(err.value)
    assert "CyclicLR at schedulers[1]" in msg and "step 23" in msg and "momentum" in msg
    _run(opt, sched, 10)  # inside the cycle: the group momentum to keep is the one left at 23
    fused = continue_both(lambda o: tls.SequentialLR(
        o, [tls.LinearLR(o, 0.5, 1.0, 10), tls.CyclicLR(o, 0.01, 0.1, 5, max_momentum=0.95),
            tls.ExponentialLR(o, 0.97)], [10, 23]), "SGD", dict(momentum=0.9), 14, 60)
    assert fused.param_groups[0]["momentum"] != 0.9


# The deviations table of README.md ("Coming from torch.optim"): (id, tree, step where torch and
# fusedlr part, the child the message must name).
DEVIATIONS = [
    ("chain: child from its base lr", lambda o: tls.ChainedScheduler(
        [tls.StepLR(o, 30, 0.5), tls.CosineAnnealingWarmRestarts(o, 50)]),
     30, "CosineAnnealingWarmRestarts at schedulers[1]"),
    ("chain: CosineAnnealingLR past T_max", lambda o: tls.ChainedScheduler(
        [tls.ExponentialLR(o, 0.9), tls.CosineAnnealingLR(o, 10)]),
     11, "CosineAnnealingLR at schedulers[1]"),
    ("chain: SequentialLR milestone", lambda o: tls.ChainedScheduler(
        [tls.ExponentialLR(o, 0.9),
         tls.SequentialLR(o, [tls.StepLR(o, 100), tls.ExponentialLR(o, 0.5)], [5])]),
     5, "SequentialLR at schedulers[1]"),
    ("chain: SequentialLR built after a sibling", lambda o: tls.ChainedScheduler(
        [tls.LinearLR(o, 0.5, 1.0, 10),
         tls.SequentialLR(o, [tls.StepLR(o, 100), tls.ExponentialLR(o, 0.5)], [50])]),
     0, "SequentialLR at schedulers[1]"),
    ("sequential: MultiplicativeLR child", lambda o: tls.SequentialLR(
        o, [tls.ConstantLR(o, 0.5, 100), tls.MultiplicativeLR(o, lambda t: 0.95)], [10]),
     10, "MultiplicativeLR at schedulers[1]"),
    ("sequential: chain as first child", lambda o: tls.SequentialLR(
        o, [tls.ChainedScheduler([tls.ExponentialLR(o, 0.9), tls.StepLR(o, 5)]),
            tls.ConstantLR(o, 0.5, 3)], [20]),
     0, "ChainedScheduler at schedulers[0]"),
    ("sequential: sequential as first child", lambda o: tls.SequentialLR(
        o, [tls.SequentialLR(o, [tls.ConstantLR(o, 0.5, 3), tls.ExponentialLR(o, 0.9)], [3]),
            tls.StepLR(o, 2)], [10]),
     2, "SequentialLR at schedulers[0]"),
    ("sequential: composite as later child", lambda o: tls.SequentialLR(
        o, [tls.StepLR(o, 3), tls.ChainedScheduler([tls.ExponentialLR(o, 0.9), tls.StepLR(o, 5)])],
        [5]),
     5, "ChainedScheduler at schedulers[1]"),
]


@pytest.mark.parametrize("make,step,child", [d[1:] for d in DEVIATIONS],
                         ids=[d[0] for d in DEVIATIONS])
def test_documented_deviations_are_refused_naming_child_and_step(make, step, child):
    _, opt = _setup(9, "SGD", dict(momentum=0.9), group_lrs=(0.1,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
    with pytest.raises(S.ConversionError) as err:
        S.from_torch(sched, total_steps=200)
    assert f"at step {step} " in str(err.value) and child in str(err.value), str(err.value)


def test_a_scheduler_listed_twice_is_refused():
    _, opt = _setup(10, "SGD", {})
    step = tls.StepLR(opt, 3)
    with pytest.raises(S.ConversionError, match=r"same StepLR.*schedulers\[0\].*schedulers\[1\]"):
        S.from_torch(tls.ChainedScheduler([step, step]))


def test_lambda_without_total_steps_is_refused_naming_total_steps():
    _, opt = _setup(6, "SGD", {})
    for make in (lambda o: tls.LambdaLR(o, _lam_a), lambda o: tls.MultiplicativeLR(o, _mul),
                 lambda o: tls.SequentialLR(o, [tls.StepLR(o, 3), tls.LambdaLR(o, _lam_b)], [5]),
                 lambda o: tls.CyclicLR(o, 0.01, 0.1, scale_fn=_scale)):
        with pytest.raises(S.ConversionError, match="total_steps="):
            fusedlr.from_torch(opt, make(opt))
    with pytest.raises(S.ConversionError, match=r"total_steps \(3\) must exceed.*\(5\)"):
        sched = tls.LambdaLR(opt, _lam_a)
        _run(opt, sched, 5)
        S.from_torch(sched, total_steps=3)


def test_unsupported_schedulers_and_optimizers_are_refused_clearly():
    _, opt = _setup(7, "SGD", {})
    with pytest.raises(S.ConversionError, match=r"fusedlr\.ReduceLROnPlateau"):
        fusedlr.from_torch(opt, tls.ReduceLROnPlateau(opt))
    with pytest.raises(S.ConversionError, match="SWALR"):
        fusedlr.from_torch(opt, torch.optim.swa_utils.SWALR(opt, swa_lr=0.05))

    class Custom(tls.LRScheduler):
        def get_lr(self):
            return [g["lr"] for g in self.optimizer.param_groups]

    with pytest.raises(S.ConversionError, match="Custom.*no fusedlr equivalent.*LambdaLR"):
        S.from_torch(tls.SequentialLR(opt, [tls.StepLR(opt, 2), Custom(opt)], [3]))
    with pytest.raises(S.ConversionError, match="must be a torch.optim.lr_scheduler"):
        S.from_torch(object())
    rms = torch.optim.RMSprop([torch.zeros(3, requires_grad=True)])
    with pytest.raises(S.ConversionError, match="SGD, Adam or AdamW.*RMSprop"):
        fusedlr.from_torch(rms)
    other = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(S.ConversionError, match="another optimizer"):
        fusedlr.from_torch(opt, tls.StepLR(other, 3))
    diff = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, differentiable=True)
    with pytest.raises(S.ConversionError, match="differentiable=True"):
        fusedlr.from_torch(diff)


@pytest.mark.parametrize("kw,match", [
    (dict(total_steps=0), "total_steps must be >= 1"),
    (dict(steps_per_epoch=0), "steps_per_epoch must be >= 1"),
    (dict(steps_per_epoch=4, step_in_epoch=4), "step_in_epoch must be <= 3"),
    (dict(step_in_epoch=-1), "step_in_epoch must be >= 0"),
    (dict(check_steps=-2), "check_steps must be >= 0"),
    (dict(strict="yes"), "strict must be a bool"),
])
def test_bad_arguments_name_the_argument_and_range(kw, match):
    _, opt = _setup(8, "SGD", {})
    sched = tls.StepLR(opt, 3)
    with pytest.raises((TypeError, ValueError), match=match):
        fusedlr.from_torch(opt, sched, **kw)
    with pytest.raises((TypeError, ValueError), match=match):
        S.from_torch(sched, **kw)
    with pytest.raises((TypeError, ValueError), match=match):
        fusedlr.from_torch(opt, **kw)  # checked without a scheduler too
    assert sched.last_epoch == 0 and opt.param_groups[0]["lr"] == GROUP_LRS[0]


def test_adam_with_decoupled_weight_decay_becomes_adamw_and_tensor_lr_a_float():
    p = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.01), decoupled_weight_decay=True,
                           weight_decay=0.1)
    fused = fusedlr.from_torch(opt)
    assert type(fused) is fusedlr.AdamW and fused.param_groups[0]["lr"] == pytest.approx(0.01)


# -- random sweep ---------------------------------------------------------------------------------
def _random_leaf(rng: random.Random, o, cycling_ok: bool):
    kinds = ["step", "multistep", "constant", "linear", "exp", "poly", "cos", "warm", "lambda",
             "mult"] + (["cyclic", "onecycle"] if cycling_ok else [])
    k = rng.choice(kinds)
    u = rng.uniform
    if k == "step":
        return tls.StepLR(o, rng.randint(1, 40), u(0.3, 0.95))
    if k == "multistep":
        return tls.MultiStepLR(o, sorted(rng.randint(1, 300) for _ in range(3)), u(0.3, 0.9))
    if k == "constant":
        return tls.ConstantLR(o, u(0.1, 1.0), rng.randint(0, 100))
    if k == "linear":
        return tls.LinearLR(o, u(0.05, 1.0), u(0.0, 1.0), rng.randint(1, 150))
    if k == "exp":
        return tls.ExponentialLR(o, u(0.97, 0.999))
    if k == "poly":
        return tls.PolynomialLR(o, rng.randint(10, 300), u(0.5, 3.0))
    if k == "cos":
        return tls.CosineAnnealingLR(o, rng.randint(10, 200), rng.choice([0.0, 1e-4]))
    if k == "warm":
        return tls.CosineAnnealingWarmRestarts(o, rng.randint(5, 60), rng.randint(1, 3))
    if k == "lambda":
        a, b = u(0.001, 0.05), u(0.01, 0.1)
        return tls.LambdaLR(o, lambda t: 1.0 / (1.0 + a * t) * (0.7 + 0.3 * math.cos(b * t)))
    if k == "mult":
        c, m = u(0.97, 1.0), rng.randint(2, 7)
        return tls.MultiplicativeLR(o, lambda t: c if t % m else 1.0)
    if k == "cyclic":
        return tls.CyclicLR(o, u(0.001, 0.01), u(0.05, 0.2), rng.randint(3, 40),
                            rng.choice([None, rng.randint(3, 40)]),
                            rng.choice(["triangular", "triangular2", "exp_range"]), u(0.99, 1.0),
                            cycle_momentum=rng.random() < 0.7, base_momentum=0.8,
                            max_momentum=0.9)
    return tls.OneCycleLR(o, u(0.05, 0.5), total_steps=rng.randint(700, 900),
                          pct_start=u(0.1, 0.6), anneal_strategy=rng.choice(["cos", "linear"]),
                          three_phase=rng.random() < 0.5, cycle_momentum=rng.random() < 0.7)


def _random_tree(rng: random.Random, o, depth: int, cycling_ok: bool):
    if depth == 0 or rng.random() < 0.35:
        return _random_leaf(rng, o, cycling_ok)
    kids = [_random_tree(rng, o, depth - 1, cycling_ok) for _ in range(rng.randint(2, 3))]
    if rng.random() < 0.5:
        return tls.ChainedScheduler(kids)
    ms = sorted(rng.sample(range(5, 300), len(kids) - 1))
    return tls.SequentialLR(o, kids, ms)


def test_random_nested_trees_are_converted_exactly_or_refused():
    master = random.Random(random.getrandbits(32))
    outcomes = {"converted": 0, "refused": 0, "torch raises": 0}
    for _ in range(40):
        seed = master.getrandbits(31)
        rng = random.Random(seed)
        opt = rng.choice([SGD_M, ("SGD", {}), ADAM, ADAMW])
        cycling_ok = opt[0] != "SGD" or bool(opt[1])
        mid, after = rng.randint(0, 300), 250
        depth = rng.randint(1, 3)
        make = lambda o, s=seed, d=depth, c=cycling_ok: _random_tree(  # noqa: E731
            random.Random(s + 7), o, d, c)
        try:
            continue_both(make, opt[0], opt[1], mid, after, seed=seed,
                          total_steps=mid + after + 5)
            outcomes["converted"] += 1
        except S.ConversionError as e:
            assert "step" in str(e) or "raises" in str(e)
            outcomes["refused"] += 1
        except (ValueError, NotImplementedError, ZeroDivisionError, KeyError) as e:
            if "from_torch" in str(e):
                raise
            outcomes["torch raises"] += 1  # torch itself cannot run this tree
    assert outcomes["converted"] >= 8 and outcomes["refused"] >= 3, outcomes
