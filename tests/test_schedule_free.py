"""fusedlr.SGDScheduleFree / AdamWScheduleFree against the schedulefree package (the oracle):
fresh random grads over 200+ steps, odd sizes, two groups, warmup, weight decay, several r and
weight_lr_power, params without a grad on some steps, train()/eval() switches mid-run, state_dict
resume (ours -> ours, package -> ours, ours -> package), and a fusedlr schedule in place of the
warmup (the package with group['lr'] set by hand each step)."""

import copy
import random

import pytest
import torch

import fusedlr
from fusedlr import schedules as S

schedulefree = pytest.importorskip(
    "schedulefree", reason="the schedulefree package (pip install schedulefree) is the oracle")

SIZES = (1, 7, 4097, 65537)
STEPS = 200
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}  # relative to the largest |param|

SGD_CONFIGS = [
    dict(lr=0.3, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0),
    dict(lr=0.1, momentum=0.8, weight_decay=1e-2, warmup_steps=17, r=1.0, weight_lr_power=2.0),
    dict(lr=0.05, momentum=0.95, weight_decay=5e-3, warmup_steps=250, r=2.5,
         weight_lr_power=0.0),
    dict(lr=0.2, momentum=0.5, weight_decay=0.0, warmup_steps=9, r=0.5, weight_lr_power=1.0),
]
ADAM_CONFIGS = [
    dict(lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
         weight_lr_power=2.0),
    dict(lr=0.01, betas=(0.95, 0.99), eps=1e-6, weight_decay=0.05, warmup_steps=23, r=1.0,
         weight_lr_power=2.0),
    dict(lr=0.003, betas=(0.6, 0.95), eps=1e-3, weight_decay=1e-2, warmup_steps=300, r=2.0,
         weight_lr_power=0.5),
    dict(lr=0.02, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=5, r=0.25,
         weight_lr_power=0.0),
]
PAIRS = [(fusedlr.SGDScheduleFree, schedulefree.SGDScheduleFree, c) for c in SGD_CONFIGS] + [
    (fusedlr.AdamWScheduleFree, schedulefree.AdamWScheduleFree, c) for c in ADAM_CONFIGS]


def _ids(pair):
    return f"{pair[0].__name__}-{sorted(pair[2].items())}"


def _groups(params, cfg):
    """Two groups; the second with its own lr (and weight decay) to exercise per-group rows."""
    second = {"params": params[2:], "lr": cfg["lr"] * 0.5,
              "weight_decay": cfg["weight_decay"] * 2}
    return [{"params": params[:2]}, second]


def _fresh_params(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = list(SIZES)
    random.Random(seed).shuffle(sizes)
    return [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype) for n in sizes] + [
        torch.randn(3, 5, generator=gen, dtype=torch.float64).to(dtype)]


def _rel_err(ours, theirs):
    scale = max(t.abs().max().item() for t in theirs)
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True)) / scale


class _Run:
    """Our optimizer and the package's on identical params, stepped with identical grads."""

    def __init__(self, ours_cls, theirs_cls, cfg, dtype, seed, **ours_kw):
        self.dtype = dtype
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.a = _fresh_params(dtype, seed)
        self.b = [p.clone() for p in self.a]
        self.ours = ours_cls(_groups(self.a, cfg), **cfg, **ours_kw)
        self.theirs = theirs_cls(_groups(self.b, cfg), foreach=False, **cfg)
        self.k = 0

    def step(self, skip_some=True):
        for i, (p, q) in enumerate(zip(self.a, self.b, strict=True)):
            if skip_some and (self.k + i) % 7 == 3:  # no grad on some steps
                p.grad = q.grad = None
                continue
            g = torch.randn(p.shape, generator=self.gen, dtype=torch.float64).to(self.dtype)
            p.grad = g.clone()
            q.grad = g.clone()  # the package writes into its grads
        self.ours.step()
        self.theirs.step()
        self.k += 1

    def mode(self, train: bool):
        for opt in (self.ours, self.theirs):
            opt.train() if train else opt.eval()

    def error(self, state=True):
        err = _rel_err(self.a, self.b)
        for p, q in zip(self.a, self.b, strict=True) if state else ():
            if "z" in self.theirs.state[q]:
                for key, st in self.theirs.state[q].items():
                    ours = self.ours.state[p][key]
                    err = max(err, _rel_err([ours], [st]) if st.abs().max() > 0 else 0.0)
        return err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_matches_schedulefree_package(pair, dtype):
    ours_cls, theirs_cls, cfg = pair
    seed = random.randrange(2**31)
    run = _Run(ours_cls, theirs_cls, cfg, dtype, seed)
    run.mode(True)
    for k in range(STEPS):
        run.step()
        if k in (40, 41, 130):  # evaluation mid-run, back to training
            run.mode(False)
            assert run.error() < TOL[dtype], f"seed {seed}, eval after step {k}"
            run.mode(True)
    assert run.error() < TOL[dtype], f"seed {seed}, train mode"
    run.mode(False)
    assert run.error() < TOL[dtype], f"seed {seed}, eval mode"
    # the scalars the package keeps in its groups
    ours_sd = run.ours.state_dict()
    for g_ours, g_theirs in zip(ours_sd["param_groups"], run.theirs.param_groups, strict=True):
        assert g_ours["k"] == g_theirs["k"] == STEPS
        for key in ("lr_max", "weight_sum", "scheduled_lr"):
            assert g_ours[key] == pytest.approx(g_theirs[key], rel=1e-14, abs=0), key


@pytest.mark.parametrize("direction", ["ours->ours", "package->ours", "ours->package"])
@pytest.mark.parametrize("pair", [PAIRS[1], PAIRS[5]], ids=_ids)
def test_state_dict_resume(pair, direction):
    """A run is checkpointed (in eval mode, as the package asks) at step 90 and continued by a
    fresh optimizer of the other kind; it must end where the uninterrupted package run ends."""
    ours_cls, theirs_cls, cfg = pair
    dtype = torch.float64
    seed = random.randrange(2**31)
    run = _Run(ours_cls, theirs_cls, cfg, dtype, seed)
    run.mode(True)
    for _ in range(90):
        run.step()
    run.mode(False)
    # the uninterrupted reference continues from the same point below
    src = run.ours if direction.startswith("ours") else run.theirs
    sd = copy.deepcopy(src.state_dict())
    params = [p.detach().clone() for p in (run.a if direction.startswith("ours") else run.b)]
    if direction.endswith("->ours"):
        fresh = ours_cls(_groups(params, cfg), **cfg)
    else:
        fresh = theirs_cls(_groups(params, cfg), foreach=False, **cfg)
    fresh.load_state_dict(sd)
    fresh.train()
    run.theirs.train()
    gen = torch.Generator().manual_seed(seed + 2)
    for _ in range(120):
        for p, q in zip(params, run.b, strict=True):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.grad = g.clone()
            q.grad = g.clone()
        fresh.step()
        run.theirs.step()
    fresh.eval()
    run.theirs.eval()
    assert _rel_err(params, run.b) < TOL[dtype], f"seed {seed}"


def test_state_dict_keys_match_the_package():
    a = [torch.randn(4)]
    ours = fusedlr.AdamWScheduleFree(a, lr=0.01)
    theirs = schedulefree.AdamWScheduleFree([a[0].clone()], lr=0.01)
    for opt in (ours, theirs):
        opt.train()
        opt.param_groups[0]["params"][0].grad = torch.ones(4)
        opt.step()
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    assert set(sd_t["param_groups"][0]) <= set(sd_o["param_groups"][0])
    assert set(sd_o["state"][0]) == set(sd_t["state"][0]) == {"z", "exp_avg_sq"}


@pytest.mark.parametrize("ours_cls,theirs_cls,cfg", [PAIRS[1], PAIRS[6]])
def test_schedule_replaces_warmup(ours_cls, theirs_cls, cfg):
    """schedule=spec sets the lr of step k as for fusedlr.SGD (spec evaluated at the group's
    lr): the package with group['lr'] set to that value before each step."""
    cfg = dict(cfg, warmup_steps=0)
    spec = S.SequentialLR([S.LinearLR(0.05, 1.0, 30), S.CosineAnnealingLR(150, 1e-3)], [30])
    seed = random.randrange(2**31)
    run = _Run(ours_cls, theirs_cls, cfg, torch.float64, seed, schedule=spec)
    # (CosineAnnealingLR's eta_min is absolute: the schedule is evaluated at each base lr)
    lrs = [spec.values(STEPS, base_lr=g["lr"]).tolist() for g in run.theirs.param_groups]
    run.mode(True)
    for k in range(STEPS):
        for g, values in zip(run.theirs.param_groups, lrs, strict=True):
            g["lr"] = values[k]
        run.step()
    run.mode(False)
    assert run.error() < TOL[torch.float64], f"seed {seed}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_tracks_float32(dtype):
    """16-bit params (z and exp_avg_sq in the param dtype, as the package keeps them): the fused
    kernel computes each element in float32 and rounds once, so after 20 steps it stays within
    a few 16-bit ulps of the package run in float32 from the same rounded start, at least as
    close as the package's own 16-bit run (which rounds after every op)."""
    cfg = ADAM_CONFIGS[1]
    run = _Run(fusedlr.AdamWScheduleFree, schedulefree.AdamWScheduleFree, cfg, dtype,
               random.randrange(2**31))
    ref = [p.float() for p in run.a]
    ref_opt = schedulefree.AdamWScheduleFree(_groups(ref, cfg), foreach=False, **cfg)
    run.mode(True)
    ref_opt.train()
    for _ in range(20):
        for p, q, r in zip(run.a, run.b, ref, strict=True):
            g = torch.randn(p.shape, generator=run.gen).to(dtype)
            p.grad, q.grad, r.grad = g.clone(), g.clone(), g.float()
        run.ours.step()
        run.theirs.step()
        ref_opt.step()
    run.mode(False)
    ref_opt.eval()
    ours = _rel_err([p.float() for p in run.a], ref)
    theirs = _rel_err([p.float() for p in run.b], ref)
    ulp = torch.finfo(dtype).eps
    assert ours < 4 * ulp
    assert ours <= theirs * 1.25 + ulp / 4


def test_step_needs_train_mode():
    p = torch.randn(3)
    p.grad = torch.ones(3)
    opt = fusedlr.SGDScheduleFree([p])
    before = p.clone()
    with pytest.raises(RuntimeError, match="not in train mode"):
        opt.step()
    assert torch.equal(p, before) and len(opt.state) == 0


def test_train_eval_are_idempotent_and_inverse():
    p = torch.randn(4097, dtype=torch.float64)
    opt = fusedlr.AdamWScheduleFree([p], lr=0.01)
    opt.train()
    for _ in range(5):
        p.grad = torch.randn_like(p)
        opt.step()
    y = p.clone()
    opt.eval()
    x = p.clone()
    opt.eval()  # already in eval mode: unchanged
    assert torch.equal(p, x)
    opt.train()
    opt.train()
    torch.testing.assert_close(p, y, rtol=1e-13, atol=1e-13)
    # x = (y - (1 - beta) z) / beta, from the definition y = (1 - beta) z + beta x
    z = opt.state[p]["z"]
    torch.testing.assert_close(x, (y - 0.1 * z) / 0.9, rtol=1e-12, atol=1e-12)


BAD = [
    (dict(lr=-1.0), "lr must be a finite number in \\[0.0, inf\\)"),
    (dict(lr=float("nan")), "lr must be"),
    (dict(lr=torch.tensor(0.1)), "lr must be a Python number"),
    (dict(weight_decay=-0.1), "weight_decay must be a finite number in \\[0.0"),
    (dict(warmup_steps=-1), "warmup_steps must be an int >= 0"),
    (dict(warmup_steps=2.5), "warmup_steps must be an int >= 0"),
    (dict(r=-1.0), "r must be a finite number in \\[0.0"),
    (dict(weight_lr_power=float("inf")), "weight_lr_power must be a finite number"),
    (dict(steps_per_epoch=0), "steps_per_epoch must be an int >= 1"),
    (dict(schedule=lambda t: 1.0), "schedule must be a fusedlr.schedules spec"),
    (dict(schedule=S.CosineAnnealingLR(10), warmup_steps=3), "warmup_steps must be 0 with a"),
    (dict(schedule=S.OneCycleLR(0.1, total_steps=10)), "sets momentum"),
]


@pytest.mark.parametrize("kw,match", BAD + [(dict(momentum=1.0), "momentum must be a finite "
                                                 "number in \\(0.0, 1.0\\)"),
                                                (dict(momentum=0.0), "momentum must be")],
                         ids=str)
def test_bad_sgd_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fusedlr.SGDScheduleFree([torch.randn(3)], **kw)


@pytest.mark.parametrize("kw,match", BAD + [
    (dict(betas=(0.0, 0.9)), "betas\\[0\\] must be a finite number in \\(0.0, 1.0\\)"),
    (dict(betas=(0.9, 1.0)), "betas\\[1\\] must be a finite number in \\[0.0, 1.0\\)"),
    (dict(betas=(0.9,)), "betas must be a pair"),
    (dict(eps=-1e-8), "eps must be a finite number in \\[0.0"),
], ids=str)
def test_bad_adamw_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fusedlr.AdamWScheduleFree([torch.randn(3)], **kw)


def test_bad_group_change_is_refused_before_any_write():
    p = torch.randn(7)
    opt = fusedlr.SGDScheduleFree([p], lr=0.1)
    opt.train()
    p.grad = torch.randn(7)
    opt.step()
    before = (p.clone(), opt.state[p]["z"].clone(), opt.device_scalars().clone())
    opt.param_groups[0]["momentum"] = 1.5
    with pytest.raises(ValueError, match="param group 0: momentum must be a finite number in"):
        opt.step()
    assert torch.equal(p, before[0]) and torch.equal(opt.state[p]["z"], before[1])
    assert torch.equal(opt.device_scalars(), before[2])


def test_non_contiguous_param_is_refused():
    with pytest.raises(ValueError, match="param 0 of param group 0: .* contiguous"):
        fusedlr.AdamWScheduleFree([torch.randn(4, 3).t()])


def test_bad_grad_is_refused_before_any_write():
    """The op checks every tensor before it advances the scalars or writes a param."""
    p, q = torch.randn(4, 3), torch.randn(5)
    opt = fusedlr.AdamWScheduleFree([p, q], lr=0.01)
    opt.train()
    p.grad, q.grad = torch.randn(4, 3), torch.randn(5)
    opt.step()
    before = [t.clone() for t in (p, q, opt.state[p]["z"], opt.state[q]["exp_avg_sq"],
                                  opt.device_scalars())]
    p.grad = torch.randn(3, 4).t()  # same shape, not contiguous
    with pytest.raises(RuntimeError, match="grads\\[0\\] must be a dense contiguous"):
        opt.step()
    after = (p, q, opt.state[p]["z"], opt.state[q]["exp_avg_sq"], opt.device_scalars())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("pair", [PAIRS[1], PAIRS[5]], ids=_ids)
def test_matches_the_package_foreach_path(pair):
    """The package's default (foreach=True) computes the same formulas with foreach ops."""
    ours_cls, theirs_cls, cfg = pair
    seed = random.randrange(2**31)
    run = _Run(ours_cls, theirs_cls, cfg, torch.float64, seed)
    run.theirs = theirs_cls(_groups(run.b, cfg), foreach=True, **cfg)
    run.mode(True)
    for _ in range(60):
        run.step(skip_some=False)
    run.mode(False)
    assert run.error() < TOL[torch.float64], f"seed {seed}"


@pytest.mark.parametrize("pair", [PAIRS[2], PAIRS[6]], ids=_ids)
def test_add_param_group_mid_run(pair):
    """A group added after 40 steps starts at k = 0 with its own scalars, as in the package."""
    ours_cls, theirs_cls, cfg = pair
    seed = random.randrange(2**31)
    run = _Run(ours_cls, theirs_cls, cfg, torch.float64, seed)
    run.mode(True)
    for k in range(100):
        if k == 40:
            new = torch.randn(33, dtype=torch.float64)
            for opt, p in ((run.ours, new), (run.theirs, new.clone())):
                opt.add_param_group({"params": [p], "lr": cfg["lr"] * 3, "train_mode": True})
            run.a.append(new)
            run.b.append(run.theirs.param_groups[-1]["params"][0])
        run.step()
    run.mode(False)
    assert run.error() < TOL[torch.float64], f"seed {seed}"
    assert run.ours.state_dict()["param_groups"][-1]["k"] == run.theirs.param_groups[-1]["k"] == 60


def test_schedule_with_steps_per_epoch():
    """schedule=spec with steps_per_epoch=n evaluates the spec at k // n."""
    cfg = dict(ADAM_CONFIGS[1], warmup_steps=0)
    spec = S.StepLR(4, 0.5)
    seed = random.randrange(2**31)
    run = _Run(fusedlr.AdamWScheduleFree, schedulefree.AdamWScheduleFree, cfg, torch.float64,
               seed, schedule=spec, steps_per_epoch=3)
    lrs = [spec.values(STEPS, base_lr=g["lr"]).tolist() for g in run.theirs.param_groups]
    run.mode(True)
    for k in range(STEPS):
        for g, values in zip(run.theirs.param_groups, lrs, strict=True):
            g["lr"] = values[k // 3]
        run.step()
    run.mode(False)
    assert run.error() < TOL[torch.float64], f"seed {seed}"


def test_bad_loaded_state_is_refused_before_anything_loads():
    p = torch.randn(5)
    opt = fusedlr.SGDScheduleFree([p], lr=0.1)
    opt.train()
    p.grad = torch.randn(5)
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["k"] = -3
    sd["state"][0]["z"] = torch.zeros(5)
    z_before, scalars = opt.state[p]["z"].clone(), opt.device_scalars().clone()
    with pytest.raises(ValueError, match="loaded param group 0: k must be an int >= 0"):
        opt.load_state_dict(sd)
    assert torch.equal(opt.state[p]["z"], z_before)
    assert torch.equal(opt.device_scalars(), scalars)


def test_grad_scaler_generic_path():
    """GradScaler unscales the grads (generic path) and skips an overflow step: the same
    params as unscaled steps that leave out the overflow step."""
    a = torch.randn(7, dtype=torch.float64)
    b = a.clone()
    scaled = fusedlr.AdamWScheduleFree([a], lr=0.01)
    plain = fusedlr.AdamWScheduleFree([b], lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1000)
    scaled.train()
    plain.train()
    for k in range(5):
        g = torch.randn(7, dtype=torch.float64)
        scaler.scale(torch.ones(()))  # creates the scale, as a real loop's first scale() does
        a.grad = g * scaler.get_scale()
        if k == 2:
            a.grad[0] = float("inf")
        scaler.step(scaled)
        scaler.update()
        if k != 2:
            b.grad = g
            plain.step()
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)
    assert scaled.device_scalars()[0, 0] == 4
