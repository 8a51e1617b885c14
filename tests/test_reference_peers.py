"""The oracle's issue-13 formulas (``fusedlr.reference``) against the frameworks themselves,
with stand-in specs (a class named after the schedule, attributes = its arguments) so no fusedlr
code is involved: SWALR and unsorted MultiStepLR against torch, the HF warmup schedules against
transformers' lambdas, the optax ones against optax (each skipped when the peer is missing)."""

from __future__ import annotations

import importlib.util
import pathlib
import random
import warnings
from functools import partial

import pytest
import torch

try:
    from fusedlr import reference as ref
except ImportError:  # package needs the built extension; the oracle itself needs only torch
    _path = pathlib.Path(__file__).resolve().parents[1] / "fusedlr" / "reference.py"
    _module_spec = importlib.util.spec_from_file_location("fusedlr_reference", _path)
    ref = importlib.util.module_from_spec(_module_spec)
    _module_spec.loader.exec_module(ref)

BASES = (0.1, 0.05, 0.3)


def spec(name, **kwargs):
    obj = type(name, (), {})()
    obj.__dict__.update(kwargs)
    return obj


def _rng():
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed}")
    return random.Random(seed)


def close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b)) or a == b


def torch_lrs(make, n):
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in BASES]
    opt = torch.optim.SGD([{"params": [p], "lr": b} for p, b in zip(params, BASES, strict=True)])
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n):
            out.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.step()
    return out


def test_swalr_reference_is_torch_bit_for_bit():
    from torch.optim.swa_utils import SWALR

    rng = _rng()
    for epochs in (0, 1, 2, rng.randrange(3, 60)):
        for strategy in ("cos", "linear"):
            swa = [rng.uniform(0.0, 0.5) for _ in BASES]
            want = torch_lrs(lambda o, s=swa, e=epochs, a=strategy: SWALR(o, s, e, a),
                             epochs + 15)
            sp = spec("SWALR", swa_lr=tuple(swa), anneal_epochs=epochs, anneal_strategy=strategy)
            for t, row in enumerate(want):
                for g, lr in enumerate(row):
                    assert ref.schedule_lr(sp, t, BASES[g], g) == lr, (epochs, strategy, t, g)


def test_multistep_reference_unsorted_like_torch():
    rng = _rng()
    ms = [rng.randrange(0, 20) for _ in range(6)]
    want = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, ms, 0.5), 25)
    sp = spec("MultiStepLR", milestones=tuple(ms), gamma=0.5)
    for t, row in enumerate(want):
        assert all(close(ref.schedule_lr(sp, t, b, g), lr)
                   for g, (b, lr) in enumerate(zip(BASES, row, strict=True))), t


def _hf_cases(hf, rng):
    """(stand-in spec, HF lambda with its arguments bound) for each HF warmup schedule."""
    w = rng.randrange(0, 30)
    n = w + rng.randrange(1, 200)
    nc, r = rng.uniform(0, 3), rng.uniform(0, 1)
    lr_init, lr_end, power = 0.2, rng.uniform(0, 0.19), rng.uniform(0, 3)
    w0 = rng.choice([None, rng.uniform(0, 1)])
    steps = dict(num_warmup_steps=w, num_training_steps=n)
    ours = dict(warmup_steps=w, total_steps=n)
    return [
        (spec("LinearWithWarmup", **ours),
         partial(hf._get_linear_schedule_with_warmup_lr_lambda, **steps)),
        (spec("CosineWithWarmup", **ours, num_cycles=nc, min_lr_rate=r),
         partial(hf._get_cosine_schedule_with_warmup_lr_lambda, **steps, num_cycles=nc,
                 min_lr_rate=r)),
        (spec("CosineWithHardRestarts", **ours, num_cycles=nc),
         partial(hf._get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda, **steps,
                 num_cycles=nc)),
        (spec("PolynomialWithWarmup", **ours, lr_init=lr_init, lr_end=lr_end, power=power),
         partial(hf._get_polynomial_decay_schedule_with_warmup_lr_lambda, **steps,
                 lr_end=lr_end, power=power, lr_init=lr_init)),
        (spec("CosineWarmupWithMinLR", **ours, num_cycles=nc, min_lr_rate=r, warmup_lr_rate=w0),
         partial(hf._get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda, **steps,
                 num_cycles=nc, min_lr_rate=r, warmup_lr_rate=w0)),
    ]


def test_hf_references_are_transformers_lambdas():
    pytest.importorskip("transformers", reason="transformers is not installed")
    from transformers import optimization as hf

    rng = _rng()
    for _ in range(5):
        for sp, lam in _hf_cases(hf, rng):
            for t in range(int(1.5 * sp.total_steps) + 2):
                assert close(ref.schedule_lr(sp, t, 0.3), 0.3 * lam(t)), (type(sp).__name__, t)


def test_optax_references_are_optax():
    optax = pytest.importorskip("optax", reason="optax is not installed")
    jax = pytest.importorskip("jax", reason="jax is not installed")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def values(fn, n):
        return [float(fn(jnp.asarray(t, dtype=jnp.int64))) for t in range(n)]

    rng = _rng()
    scales = {rng.randrange(0, 60): rng.uniform(0, 2) for _ in range(4)}
    steps, ps, pf = rng.randrange(1, 80), rng.uniform(0, 1), rng.uniform(0, 1)
    pairs = [
        (spec("PiecewiseInterpolate", interpolate_type="cosine", boundaries_and_scales=scales,
              init_value=None),
         optax.piecewise_interpolate_schedule("cosine", 0.3, scales)),
        (spec("LinearOneCycle", transition_steps=steps, peak_value=0.7, pct_start=ps,
              pct_final=pf, div_factor=7.0, final_div_factor=50.0),
         optax.linear_onecycle_schedule(steps, 0.7, ps, pf, 7.0, 50.0)),
        (spec("ExponentialDecay", decay_steps=3, decay_rate=0.8, staircase=True,
              transition_begin=5, end_value=0.05),
         optax.exponential_decay(0.3, 3, 0.8, 5, True, 0.05)),
        (spec("JoinSchedules", schedules=(spec("StepLR", step_size=3, gamma=0.5),
                                          spec("ExponentialLR", gamma=0.9),
                                          spec("StepLR", step_size=2, gamma=0.7)),
              boundaries=(20, 0)),
         optax.join_schedules([optax.exponential_decay(0.3, 3, 0.5, staircase=True),
                               optax.exponential_decay(0.3, 1, 0.9),
                               optax.exponential_decay(0.3, 2, 0.7, staircase=True)], [20, 0])),
    ]
    for sp, fn in pairs:
        want = values(fn, 100)
        for t in range(100):
            assert close(ref.schedule_lr(sp, t, 0.3), want[t]), (type(sp).__name__, t)
