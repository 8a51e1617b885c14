"""fusedlr's schedule-free optimizers against fusedlr.reference.ScheduleFree, the paper's x / z
recursion (an oracle independent of the package's in-place y update), and that oracle against
the schedulefree package where it is installed."""

import random

import pytest
import torch

import fusedlr
from fusedlr import reference
from fusedlr import schedules as S

SIZES = (1, 7, 4097, 65537)
STEPS = 200

CASES = [
    (fusedlr.SGDScheduleFree, dict(lr=0.1, momentum=0.9, weight_decay=1e-2, warmup_steps=20,
                                   r=1.0, weight_lr_power=2.0), None),
    (fusedlr.SGDScheduleFree, dict(lr=0.2, momentum=0.7, weight_decay=0.0, warmup_steps=0,
                                   r=0.0, weight_lr_power=1.0), S.CosineAnnealingLR(80, 1e-3)),
    (fusedlr.AdamWScheduleFree, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
                                     warmup_steps=30, r=2.0, weight_lr_power=2.0), None),
    (fusedlr.AdamWScheduleFree, dict(lr=0.005, betas=(0.6, 0.95), eps=1e-6, weight_decay=1e-2,
                                     warmup_steps=0, r=0.5, weight_lr_power=0.0),
     S.LinearLR(0.01, 1.0, 50)),
]


def _reference(params, cfg, schedule):
    kw = dict(cfg)
    if "betas" in kw:
        kw["beta"], kw["beta2"] = kw.pop("betas")
    else:
        kw["beta"] = kw.pop("momentum")
    return reference.ScheduleFree(params, schedule=schedule, **kw)


def _run(make_a, make_b, seed, switch_at=(50, 51, 140)):
    gen = torch.Generator().manual_seed(seed)
    a = [torch.randn(n, generator=gen, dtype=torch.float64) for n in SIZES]
    b = [p.clone() for p in a]
    opt_a, opt_b = make_a(a), make_b(b)
    opt_a.train()
    opt_b.train()
    for k in range(STEPS):
        for p, q in zip(a, b, strict=True):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        if k in switch_at:
            opt_a.eval()
            opt_b.eval()
            opt_a.train()
            opt_b.train()
    opt_a.eval()
    opt_b.eval()
    scale = max(q.abs().max().item() for q in b)
    return max((p - q).abs().max().item() for p, q in zip(a, b, strict=True)) / scale


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[2]!r}")
def test_matches_paper_reference(case):
    cls, cfg, schedule = case
    seed = random.randrange(2**31)
    err = _run(lambda ps: cls(ps, schedule=schedule, **cfg),
               lambda ps: _reference(ps, cfg, schedule), seed)
    # the x / z recursion rounds differently from the fused in-place y update
    assert err < 1e-11, f"seed {seed}"


@pytest.mark.parametrize("case", [c for c in CASES if c[2] is None],
                         ids=lambda c: c[0].__name__)
def test_reference_matches_the_package(case):
    schedulefree = pytest.importorskip("schedulefree", reason="the schedulefree package (pip "
                                       "install schedulefree) checks the reference here")
    cls, cfg, _ = case
    pkg = getattr(schedulefree, cls.__name__)
    seed = random.randrange(2**31)
    err = _run(lambda ps: pkg(ps, foreach=False, **cfg),
               lambda ps: _reference(ps, cfg, None), seed)
    assert err < 1e-11, f"seed {seed}"
