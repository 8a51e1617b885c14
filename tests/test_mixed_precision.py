"""bf16 / fp16 params: fp32 state and math, master weights, mixed-dtype groups, complex params."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fusedlr
from fusedlr import reference

LOW = [torch.bfloat16, torch.float16]
# torch.optim on the same dtype keeps its state in that dtype (fusedlr keeps fp32) and rounds it
# every step: after STEPS steps the params differ by up to this fraction of max|param|
# (measured on torch 2.11 and 2.14: 0.012 for bf16, 0.0024 for fp16, against TORCH_ORACLE).
TORCH_RTOL = {torch.bfloat16: 0.02, torch.float16: 0.003}
STEPS = 20
# Which torch implementation each optimizer is compared with. Adam / AdamW: the fused CPU kernels
# (fp32 math; the single-tensor ones keep exp_avg_sq in the param dtype, which overflows in fp16).
# SGD: the single-tensor one (foreach=False), since torch's fused CPU SGD is itself wrong for
# bf16 / fp16 before torch 2.14 (on 2.11 these cases end 1.6-1.7 x max|param| away from
# fusedlr and from the single-tensor SGD; right on 2.14). The single-tensor SGD is the same on
# every tested version.
TORCH_ORACLE = {"SGD": dict(foreach=False), "Adam": dict(fused=True), "AdamW": dict(fused=True)}

CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01), {}),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), {}),
    ("Adam", dict(lr=0.01, weight_decay=0.01), {}),
    ("Adam", dict(lr=0.01, amsgrad=True), {}),
    ("AdamW", dict(lr=0.01, weight_decay=0.1), {}),
]


def _grads(shapes, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g) for s in shapes] for _ in range(steps)]


def _run(cls, dtype, kwargs, grads, init, **extra):
    params = [x.to(dtype).clone().requires_grad_() for x in init]
    opt = cls(params, **kwargs, **extra)
    for gs in grads:
        for p, gr in zip(params, gs, strict=True):
            p.grad = gr.to(dtype)
        opt.step()
    return params, opt


SHAPES = [(1,), (7, 5), (4097,)]


def _init(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in SHAPES]


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name,kwargs,_", CASES)
def test_low_precision_matches_torch_same_dtype(name, kwargs, _, dtype):
    """Against torch.optim in the param dtype (state in the param dtype; TORCH_ORACLE)."""
    init, grads = _init(), _grads(SHAPES, STEPS)
    ours, opt = _run(getattr(fusedlr, name), dtype, kwargs, grads, init)
    theirs, _t = _run(getattr(torch.optim, name), dtype, kwargs, grads, init,
                      **TORCH_ORACLE[name])
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == dtype
        scale = b.float().abs().max().item()
        torch.testing.assert_close(a.float(), b.float(), atol=TORCH_RTOL[dtype] * scale, rtol=0)
    state = opt.state[ours[1]]
    assert all(v.dtype == torch.float32 for k, v in state.items() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fp16_adam_stays_finite_where_fp16_state_overflows(name):
    """torch's single-tensor Adam keeps exp_avg_sq in fp16: eps=1e-8 and small grad**2 underflow
    to 0 and the update becomes inf. fusedlr's fp32 state keeps the fp16 run close to fp32."""
    init, grads = _init(), _grads(SHAPES, STEPS)
    grads = [[g * 1e-4 for g in gs] for gs in grads]
    kwargs = dict(lr=0.01)
    ours, _o = _run(getattr(fusedlr, name), torch.float16, kwargs, grads, init)
    theirs, _t = _run(getattr(torch.optim, name), torch.float16, kwargs, grads, init,
                      foreach=False)
    fp32, _f = _run(getattr(fusedlr, name), torch.float32, kwargs, grads, init)
    assert not all(torch.isfinite(t).all() for t in theirs)
    for a, b in zip(ours, fp32, strict=True):
        atol = TORCH_RTOL[torch.float16] * b.abs().max().item()
        torch.testing.assert_close(a.float(), b, atol=atol, rtol=0)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name,kwargs,_", CASES)
def test_low_precision_matches_fp32_math_oracle(name, kwargs, _, dtype):
    """The pure-torch oracle does fp32 math on fp32 state and rounds once per step on store:
    fusedlr agrees exactly but for an odd element one or two roundings apart (fp32 math in
    another order lands on the other side of a rounding boundary: seen for fp16 SGD)."""
    init, grads = _init(), _grads(SHAPES, STEPS)
    ours, _o = _run(getattr(fusedlr, name), dtype, kwargs, grads, init)
    oracle, _r = _run(getattr(reference, name), dtype, kwargs, grads, init)
    eps = torch.finfo(dtype).eps
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=0, rtol=2 * eps)
        assert (a != b).sum() <= max(1, a.numel() // 1000)


@functools.lru_cache
def _regression(dtype, name, steps=40, master_weights=False):
    """A small MLP fit in `dtype` (inputs and params); returns the loss curve in fp32."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    model.to(dtype)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(128, 16, generator=g)
    y = torch.sin(x[:, :1] * 2) + 0.5 * x[:, 1:2]
    kwargs = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    opt = getattr(fusedlr, name)(model.parameters(), **kwargs, master_weights=master_weights,
                                 schedule=fusedlr.schedules.CosineAnnealingLR(T_max=steps))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x.to(dtype)).float() - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses)


@pytest.mark.parametrize("master_weights", [False, True])
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_low_precision_loss_curve_close_to_fp32(name, dtype, master_weights):
    ref = _regression(torch.float32, name)
    low = _regression(dtype, name, master_weights=master_weights)
    assert low[-1] < 0.5 * ref[0]  # it trains
    tol = 0.05 if dtype == torch.bfloat16 else 0.01
    assert (low - ref).abs().max() <= tol * ref[0], (low - ref).abs().max()


# -- master weights --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name,kwargs,_", CASES)
def test_master_weights_follow_the_fp32_trajectory_exactly(name, kwargs, _, dtype):
    """With the same grads, the fp32 master is bit-identical to an fp32 run, and the param is the
    master rounded to nearest."""
    init = [x.to(dtype).float() for x in _init()]  # representable in dtype
    grads = [[g.to(dtype).float() for g in gs] for gs in _grads(SHAPES, STEPS)]
    low, opt = _run(getattr(fusedlr, name), dtype, kwargs, grads, init, master_weights=True)
    fp32, _f = _run(getattr(fusedlr, name), torch.float32, kwargs, grads, init)
    for p, q in zip(low, fp32, strict=True):
        master = opt.state[p]["master"]
        assert master.dtype == torch.float32
        assert torch.equal(master, q)
        assert torch.equal(p, q.to(dtype))


def test_master_weights_keep_updates_smaller_than_an_ulp():
    """bf16 has 8 bits of mantissa: 1.0 - 1e-4 rounds back to 1.0. Without master weights the
    param never moves; with them the fp32 master accumulates the updates."""
    def run(master):
        p = torch.ones(4, dtype=torch.bfloat16, requires_grad=True)
        opt = fusedlr.SGD([p], lr=1e-4, master_weights=master)
        for _ in range(200):
            p.grad = torch.ones_like(p)
            opt.step()
        return p, opt

    stuck, _ = run(False)
    assert torch.equal(stuck, torch.ones_like(stuck))
    moved, opt = run(True)
    torch.testing.assert_close(opt.state[moved]["master"], torch.full((4,), 0.98), rtol=1e-5,
                               atol=0)
    assert torch.equal(moved, torch.full((4,), 0.98).to(torch.bfloat16))


def test_master_weights_only_for_low_precision_params_and_saved():
    p16 = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    p32 = torch.randn(3, requires_grad=True)
    opt = fusedlr.AdamW([p16, p32], lr=0.1, master_weights=True)
    p16.grad, p32.grad = torch.ones_like(p16), torch.ones_like(p32)
    opt.step()
    assert "master" in opt.state[p16] and "master" not in opt.state[p32]
    sd = opt.state_dict()
    assert torch.equal(sd["state"][0]["master"], opt.state[p16]["master"])
    with pytest.raises(TypeError, match="master_weights must be a bool"):
        fusedlr.Adam([p32], master_weights=1)


def test_master_weights_state_dict_round_trip_and_fallbacks():
    init, grads = [x.bfloat16().float() for x in _init()], _grads(SHAPES, 12)
    ref, _ = _run(fusedlr.Adam, torch.bfloat16, dict(lr=0.01), grads, init, master_weights=True)
    first, opt = _run(fusedlr.Adam, torch.bfloat16, dict(lr=0.01), grads[:5], init,
                      master_weights=True)
    sd = opt.state_dict()

    # a fresh master optimizer over params that hold the bf16 rounding: continues exactly
    params = [p.detach().clone().requires_grad_() for p in first]
    opt2 = fusedlr.Adam(params, lr=0.01, master_weights=True)
    opt2.load_state_dict(sd)
    for gs in grads[5:]:
        for p, gr in zip(params, gs, strict=True):
            p.grad = gr.bfloat16()
        opt2.step()
    for a, b in zip(params, ref, strict=True):
        assert torch.equal(a, b)

    # an optimizer without master_weights ignores the saved master
    params3 = [p.detach().clone().requires_grad_() for p in first]
    opt3 = fusedlr.Adam(params3, lr=0.01)
    opt3.load_state_dict(sd)
    assert all("master" not in opt3.state[p] for p in params3)

    # a state_dict without masters: the stale master goes, the next step copies the param
    no_master = fusedlr.Adam([p.detach().clone().requires_grad_() for p in first], lr=0.01)
    no_master.load_state_dict(sd)
    sd_plain = no_master.state_dict()
    assert "master" not in sd_plain["state"][0]
    opt.load_state_dict(sd_plain)
    assert all("master" not in opt.state[p] for p in first)
    for p, gr in zip(first, grads[5], strict=True):
        p.grad = gr.bfloat16()
    opt.step()
    assert all("master" in opt.state[p] for p in first)


def test_master_weights_reject_a_grad_of_the_wrong_shape_before_copying():
    p = torch.zeros(4, dtype=torch.bfloat16, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1, master_weights=True)
    p.grad = torch.zeros_like(p)
    p.grad.data = torch.ones(1, dtype=torch.bfloat16)  # bypasses autograd's check; copy_ would
    # broadcast it into the fp32 grad buffer
    with pytest.raises(RuntimeError, match="grad is"):
        opt.step()
    assert torch.equal(p, torch.zeros_like(p))


# -- a group with several dtypes (and devices) ---------------------------------------------------
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


class _CountUpdates(TorchDispatchMode):
    """Records (device, dtype, tensor count) of every update op call that reaches the
    dispatcher, from torch.ops (list path) or from C++ (the eager EagerBucket path)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "fusedlr" and "update_" in func.name():
            params = args[0]
            self.calls.append((params[0].device, params[0].dtype, len(params)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name,kwargs,_", CASES[::2])
def test_group_mixing_dtypes_equals_one_optimizer_per_dtype(name, kwargs, _):
    g = torch.Generator().manual_seed(5)
    init = [torch.randn(6, 3, generator=g) for _ in DTYPES * 2]
    dtypes = DTYPES * 2
    mixed = [x.to(dt).requires_grad_() for x, dt in zip(init, dtypes, strict=True)]
    sched = fusedlr.schedules.LinearLR(start_factor=0.2, total_iters=4)
    opt = getattr(fusedlr, name)([{"params": mixed}], **kwargs, schedule=sched)
    singles = {
        dt: [x.to(dt).requires_grad_() for x, d in zip(init, dtypes, strict=True) if d == dt]
        for dt in DTYPES
    }
    single_opts = {dt: getattr(fusedlr, name)(ps, **kwargs, schedule=sched)
                   for dt, ps in singles.items()}
    for _ in range(6):
        gs = [torch.randn(6, 3, generator=g) for _ in mixed]
        for p, gr in zip(mixed, gs, strict=True):
            p.grad = gr.to(p.dtype)
        with _CountUpdates() as counter:
            opt.step()
        # one op call per (device, dtype) bucket, each with all the bucket's params
        assert sorted(counter.calls, key=str) == sorted(
            [(torch.device("cpu"), dt, 2) for dt in DTYPES], key=str)
        for dt in DTYPES:
            for p, gr in zip(singles[dt], [x for x, d in zip(gs, dtypes, strict=True) if d == dt],
                             strict=True):
                p.grad = gr.to(dt)
            single_opts[dt].step()
    for dt in DTYPES:
        got = [p for p, d in zip(mixed, dtypes, strict=True) if d == dt]
        for a, b in zip(got, singles[dt], strict=True):
            assert torch.equal(a, b), dt


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_group_mixing_devices():  # pragma: no cover - no GPU on CI
    cpu = torch.randn(5, requires_grad=True)
    gpu = torch.randn(5, device="cuda", requires_grad=True)
    ref = [cpu.detach().clone().requires_grad_(), gpu.detach().cpu().requires_grad_()]
    opt = fusedlr.Adam([cpu, gpu], lr=0.1)
    ropt = fusedlr.Adam(ref, lr=0.1)
    for _ in range(3):
        for p in (cpu, gpu, *ref):
            p.grad = torch.ones_like(p)
        opt.step()
        ropt.step()
    torch.testing.assert_close(gpu.cpu(), ref[1])
    torch.testing.assert_close(cpu, ref[0])


# -- complex params: rejected with a pointer to the real view ------------------------------------
def test_complex_params_are_rejected_with_a_clear_error():
    p = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    for cls in (fusedlr.SGD, fusedlr.Adam, fusedlr.AdamW):
        with pytest.raises(TypeError, match="view complex params as real with torch.view_as_real"):
            cls([p], lr=0.1)
    opt = fusedlr.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="complex64"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_complex_param_as_real_view_matches_torch_on_complex(name):
    """The suggested route (optimize the real view) is what torch does internally for complex."""
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 3, dtype=torch.complex128, generator=g).requires_grad_()
    r = torch.view_as_real(z.detach().clone()).requires_grad_()
    kwargs = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05, weight_decay=0.1)
    topt = getattr(torch.optim, name)([z], **kwargs, foreach=False)
    opt = getattr(fusedlr, name)([r], **kwargs)
    for _ in range(5):
        gz = torch.randn(4, 3, dtype=torch.complex128, generator=g)
        z.grad, r.grad = gz, torch.view_as_real(gz).clone()
        topt.step()
        opt.step()
    torch.testing.assert_close(torch.view_as_real(z.detach()), r.detach(), rtol=1e-12, atol=1e-14)
