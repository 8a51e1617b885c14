"""HF transformers' schedules: ``fusedlr.schedules.from_hf`` and the HF-named classes against
``transformers.get_scheduler`` itself (its LambdaLR on a torch optimizer with several param
groups), at every step up to 1.5 x num_training_steps, with fresh random arguments."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch

import fusedlr
from fusedlr import schedules as fs
from fusedlr.schedules import from_hf
from fusedlr.schedules.hf import _NO_CLOSED_FORM, HF_KWARGS

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install '.[integrations]')")
from transformers import SchedulerType, get_scheduler  # noqa: E402

REL = 1e-12
GROUP_LRS = (0.1, 0.037, 0.3)


def _rng():
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed}")  # shown on failure
    return random.Random(seed)


def hf_lrs(name, lr_init, w, n, steps, kwargs):
    """Per step, per group, the lr of get_scheduler's scheduler (HF reads optimizer.defaults)."""
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in GROUP_LRS]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS,
                                                                      strict=True)], lr=lr_init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = get_scheduler(name, opt, w, n, scheduler_specific_kwargs=kwargs)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def assert_matches_hf(name, w, n, kwargs, lr_init=0.1):
    spec = from_hf(name, w, n, lr_init=lr_init, **kwargs)
    steps = int(1.5 * max(n or 0, w + 40)) + 2
    want = hf_lrs(name, lr_init, w, n, steps, kwargs)
    for g, lr in enumerate(GROUP_LRS):
        got = spec.values(steps, lr).tolist()
        for t in range(steps):
            assert got[t] == pytest.approx(want[t][g], rel=REL, abs=1e-300), (spec, t, g)
    return spec


def _random_case(rng, name):
    w = rng.randrange(0, 60)
    n = w + rng.randrange(-min(w, 5), 400)  # training may be shorter than the warmup, not < 0
    lr_init = rng.uniform(1e-4, 1.0)
    kw = {}
    if name in ("cosine", "cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        kw["num_cycles"] = rng.choice([0.5, rng.uniform(0.0, 3.0)])
    if name == "cosine_with_restarts":
        kw["num_cycles"] = rng.choice([1, rng.randrange(1, 6), rng.uniform(0.1, 4.0)])
    if name == "polynomial":
        if n == w:
            n += 1
        kw = dict(lr_end=rng.uniform(0.0, 0.99) * lr_init, power=rng.uniform(0.0, 3.0))
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        if rng.random() < 0.5:
            kw["min_lr"] = rng.uniform(0.0, 1.0) * lr_init
        else:
            kw["min_lr_rate"] = rng.uniform(0.0, 1.0)
    if name == "cosine_warmup_with_min_lr" and rng.random() < 0.5:
        kw["warmup_lr_rate"] = rng.uniform(0.0, 1.0)
    if name == "inverse_sqrt" and rng.random() < 0.7:
        kw["timescale"] = rng.randrange(1, 200)
    if name == "warmup_stable_decay":
        d = rng.randrange(0, 200)
        kw = dict(num_decay_steps=d, warmup_type=rng.choice(["linear", "cosine", "1-sqrt"]),
                  decay_type=rng.choice(["linear", "cosine", "1-sqrt"]),
                  min_lr_ratio=rng.uniform(0.0, 1.0), num_cycles=rng.uniform(0.0, 2.0))
        if rng.random() < 0.5:
            kw["num_stable_steps"] = rng.randrange(0, 100)
            n = None if rng.random() < 0.5 else n
        else:
            n = w + d + rng.randrange(0, 100)
    return w, n, kw, lr_init


CLOSED_FORM = sorted(HF_KWARGS)


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_from_hf_matches_get_scheduler_random(name):
    rng = _rng()
    for _ in range(4):
        w, n, kw, lr_init = _random_case(rng, name)
        assert_matches_hf(name, w, n, kw, lr_init)


@pytest.mark.parametrize("name,w,n,kw", [
    ("linear", 0, 1, {}),
    ("linear", 10, 5, {}),  # training shorter than the warmup
    ("linear", 7, 7, {}),
    ("cosine", 3, 3, {}),
    ("cosine", 0, 97, {"num_cycles": 2.25}),
    ("cosine_with_restarts", 5, 133, {"num_cycles": 7}),
    ("cosine_with_restarts", 1, 50, {"num_cycles": 0}),
    ("polynomial", 9, 4, {"lr_end": 1e-3, "power": 0.5}),
    ("polynomial", 0, 61, {}),
    ("constant", 13, 40, {}),
    ("constant_with_warmup", 13, 40, {}),
    ("constant_with_warmup", 0, 40, {}),
    ("inverse_sqrt", 0, None, {}),
    ("inverse_sqrt", 11, None, {"timescale": 3}),
    ("cosine_with_min_lr", 10, 90, {"min_lr": 1e-3}),
    ("cosine_with_min_lr", 10, 90, {"min_lr_rate": 0.25, "num_cycles": 1.5}),
    ("cosine_warmup_with_min_lr", 1, 90, {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", 12, 90, {"min_lr": 0.02, "warmup_lr_rate": 0.3}),
    ("warmup_stable_decay", 5, 60, {"num_decay_steps": 20}),
    ("warmup_stable_decay", 5, None, {"num_decay_steps": 1, "num_stable_steps": 0,
                                      "decay_type": "1-sqrt", "min_lr_ratio": 0.3}),
    ("warmup_stable_decay", 0, 60, {"num_decay_steps": 0, "num_stable_steps": 9}),
], ids=lambda v: str(v))
def test_from_hf_edge_cases(name, w, n, kw):
    assert_matches_hf(name, w, n, kw)


def test_every_hf_scheduler_type_is_handled():
    """A SchedulerType added by a later transformers must be given a closed form or a reason."""
    names = {t.value for t in SchedulerType}
    assert names <= set(HF_KWARGS) | set(_NO_CLOSED_FORM), names - set(HF_KWARGS)
    spec = from_hf(SchedulerType.COSINE, 4, 40)  # the enum works as its string
    assert spec == fs.CosineWithWarmup(4, 40)


def test_through_the_optimizer_like_hf():
    """fusedlr.AdamW(schedule=from_hf(...)) against torch AdamW + get_scheduler: the lrs of every
    group before each step, and the params after (float64)."""
    rng = _rng()
    kwargs = {"num_cycles": 0.7, "min_lr": 3e-4}
    torch.manual_seed(rng.randrange(2**31))
    init = [torch.randn(n, dtype=torch.float64) for n in (5, 1, 33)]
    t_params = [p.clone().requires_grad_() for p in init]
    f_params = [p.clone().requires_grad_() for p in init]
    t_opt = torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(t_params, GROUP_LRS,
                                                                          strict=True)], lr=0.01)
    spec = from_hf("cosine_with_min_lr", 5, 30, lr_init=0.01, **kwargs)
    f_opt = fusedlr.AdamW([{"params": [p], "lr": lr} for p, lr in zip(f_params, GROUP_LRS,
                                                                      strict=True)],
                          lr=0.01, schedule=spec)
    sched = get_scheduler("cosine_with_min_lr", t_opt, 5, 30, scheduler_specific_kwargs=kwargs)
    for _ in range(40):
        want = [g["lr"] for g in t_opt.param_groups]
        got = [float(x) for x in f_opt.get_last_lr()]
        assert got == pytest.approx(want, rel=REL)
        for a, b in zip(t_params, f_params, strict=True):
            g = torch.randn_like(a)
            a.grad, b.grad = g, g.clone()
        t_opt.step()
        f_opt.step()
        sched.step()
        for a, b in zip(t_params, f_params, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)


# -- by hand (HF's lambdas, worked out) --------------------------------------------------------


def at(spec, t, base_lr=1.0):
    return spec.values(1, base_lr, start=t).item()


def test_hf_classes_by_hand():
    lin = fs.LinearWithWarmup(10, 110)
    assert at(lin, 5) == 0.5  # 5 / 10
    assert at(lin, 60) == 0.5  # (110 - 60) / 100
    assert at(lin, 200) == 0.0  # max(0, ...)
    cos = fs.CosineWithWarmup(10, 110, num_cycles=1.0, min_lr_rate=0.2)
    # t = 35: progress 0.25, f = (1 + cos(2 pi 0.25)) / 2 = 0.5, 0.5 * 0.8 + 0.2
    assert at(cos, 35) == pytest.approx(0.6, rel=REL)
    assert at(cos, 60) == pytest.approx(0.2, rel=REL)  # progress 0.5: f = 0
    hard = fs.CosineWithHardRestarts(0, 100, num_cycles=4)
    assert at(hard, 25) == pytest.approx(1.0, rel=REL)  # (4 * 0.25) % 1 = 0: a restart
    assert at(hard, 100) == 0.0 and at(hard, 130) == 0.0
    poly = fs.PolynomialWithWarmup(0, 100, lr_init=0.1, lr_end=0.01, power=2.0)
    # t = 50: ((0.1 - 0.01) * 0.5 ** 2 + 0.01) / 0.1
    assert at(poly, 50) == pytest.approx(0.325, rel=REL)
    assert at(poly, 150) == pytest.approx(0.1, rel=REL)  # lr_end / lr_init
    warm = fs.CosineWarmupWithMinLR(4, 104, min_lr_rate=0.1)
    assert at(warm, 0) == 0.25  # (0 + 1) / 4: not 0 at the first step
    assert at(warm, 53) == pytest.approx(0.55, rel=REL)  # progress (53 - 4 + 1) / 100 = 0.5
    w0 = fs.CosineWarmupWithMinLR(5, 105, warmup_lr_rate=0.2)
    assert at(w0, 2) == pytest.approx(0.2 + 0.8 * 2 / 4, rel=REL)
    wsd = fs.WarmupStableDecay(0, 0, 100, num_cycles=1.0)
    assert at(wsd, 50) == pytest.approx(0.0, abs=1e-15)  # (1 + cos(2 pi 0.5)) / 2
    assert at(wsd, 25) == pytest.approx(0.5, rel=REL)


def test_past_num_training_steps_as_hf():
    """Documented: past N the HF lambdas go on (cosine rises again), and so does fusedlr."""
    spec = from_hf("cosine", 0, 10)
    assert at(spec, 10) == pytest.approx(0.0, abs=1e-15)
    assert at(spec, 15) == pytest.approx(0.5, rel=REL)  # cos(pi * 1.5) = 0
    assert at(from_hf("linear", 0, 10), 15) == 0.0
    assert at(from_hf("polynomial", 0, 10, lr_init=0.5, lr_end=0.05), 15) == pytest.approx(0.1)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,err,fragment", [
    (lambda: from_hf("cosine_annealing", 1, 10), ValueError, "unknown HF scheduler name"),
    (lambda: from_hf("reduce_lr_on_plateau"), ValueError, "fusedlr.ReduceLROnPlateau"),
    (lambda: from_hf("greedy"), ValueError, "no closed form"),
    (lambda: from_hf(3, 1, 10), TypeError, "name must be"),
    (lambda: from_hf("linear", None, 10), ValueError, "requires num_warmup_steps"),
    (lambda: from_hf("cosine", 1, None), ValueError, "requires num_training_steps"),
    (lambda: from_hf("polynomial", 1, 10), ValueError, "needs lr_init"),
    (lambda: from_hf("polynomial", 1, 10, lr_init=1e-8), ValueError, "lr_end"),
    (lambda: from_hf("cosine_with_min_lr", 1, 10, min_lr=1e-3), ValueError, "needs lr_init"),
    (lambda: from_hf("cosine_with_min_lr", 1, 10), ValueError, "one of min_lr or min_lr_rate"),
    (lambda: from_hf("cosine_warmup_with_min_lr", 1, 10, min_lr=1e-3, min_lr_rate=0.1,
                     lr_init=0.1), ValueError, "only one of"),
    (lambda: from_hf("cosine", 1, 10, num_cycle=2), TypeError, "unexpected keyword"),
    (lambda: from_hf("linear", 1, 10, power=2), TypeError, "unexpected keyword"),
    (lambda: from_hf("warmup_stable_decay", 1, 10), TypeError, "num_decay_steps"),
    (lambda: from_hf("warmup_stable_decay", 1, None, num_decay_steps=3), ValueError,
     "num_training_steps or num_stable_steps"),
    (lambda: from_hf("warmup_stable_decay", 5, 10, num_decay_steps=8), ValueError,
     "stable phase"),
    (lambda: from_hf("cosine", -1, 10), ValueError, "warmup_steps must be >= 0"),
    (lambda: from_hf("cosine_with_restarts", 1, 10, num_cycles=-1), ValueError, "num_cycles"),
    (lambda: from_hf("polynomial", 5, 5, lr_init=0.1), ValueError, "must differ"),
])
def test_from_hf_errors(call, err, fragment):
    with pytest.raises(err, match=fragment):
        call()


def test_hf_names_are_what_get_scheduler_accepts():
    for name in HF_KWARGS:
        assert SchedulerType(name).value == name
    assert math.isfinite(at(from_hf("constant"), 7))
