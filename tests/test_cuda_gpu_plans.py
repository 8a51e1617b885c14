"""Launch plans of several launches on a GPU, against torch.optim + torch.optim.lr_scheduler.

Each test takes a device: the "cuda" variant (skipped without a GPU or without CUDA kernels) is
the one that exercises the kernels' launch plans (csrc/include/multi_tensor.h): more tensors
than one launch holds, a tensor whose chunks continue into the next launch, more per-tensor step
tensors than one step-increment launch covers, and 16-bit params that are views at
an odd element offset. The "cpu" variant runs the same test body against the same oracle on
fusedlr's CPU kernels, so the test logic itself runs where there is no GPU.
"""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import _C, emulate, schedules

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.skipif(
            not torch.cuda.is_available(),
            reason="no CUDA device (torch.cuda.is_available() is False)",
        ),
        pytest.mark.skipif(
            not _C.cuda_compiled(), reason="fusedlr was built without CUDA kernels (FUSEDLR_CUDA=0)"
        ),
    ],
)
DEVICES = [CUDA, "cpu"]
CHUNK = 65536  # elements per (tensor, chunk) block (multi_tensor.h kChunkSize)
KINDS = ["sgd", "adam", "adamw"]
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _place(values, device, dtype, offset):
    """values copied into a view that starts `offset` elements into a fresh allocation."""
    storage = torch.empty(values.numel() + offset, device=device, dtype=dtype)
    return storage[offset:].copy_(values)


def _sizes(count, seed):
    """`count` sizes: the odd ones first (1, 7, 4097, 65537), then random ones below 3000."""
    gen = torch.Generator().manual_seed(seed)
    rest = torch.randint(1, 3000, (max(count - 4, 0),), generator=gen).tolist()
    return ([1, 7, 4097, CHUNK + 1] + rest)[:count]


def _params(sizes, device, dtype, seed):
    """Params of `sizes`, every other one misaligned (one element past a 16-byte boundary)."""
    gen = torch.Generator().manual_seed(seed)
    return [
        _place(torch.randn(n, generator=gen, dtype=torch.float64), device, dtype, i % 2)
        for i, n in enumerate(sizes)
    ]


def _grads(params, step, seed):
    """Fresh grads for one step: every third one misaligned too."""
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    return [
        _place(
            torch.randn(p.numel(), generator=gen, dtype=torch.float64),
            p.device,
            p.dtype,
            int(i % 3 == 0),
        )
        for i, p in enumerate(params)
    ]


def _groups(kind, params):
    """Two groups with different hyperparameters (the same dicts for fusedlr and torch)."""
    half = len(params) // 2
    if kind == "sgd":
        return [
            dict(params=params[:half], momentum=0.9, nesterov=True, weight_decay=1e-2),
            dict(params=params[half:], momentum=0.5, dampening=0.1),
        ]
    return [
        dict(params=params[:half], amsgrad=True, weight_decay=0.1),
        dict(params=params[half:], betas=(0.8, 0.99), eps=1e-6),
    ]


LR = {"sgd": 0.05, "adam": 1e-2, "adamw": 1e-2}
TORCH_CLS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
FUSED_CLS = {"sgd": fusedlr.SGD, "adam": fusedlr.Adam, "adamw": fusedlr.AdamW}


def _copies(params):
    """Copies that keep each param's device, dtype and alignment."""
    return [_place(p.detach(), p.device, p.dtype, p.storage_offset() % 2) for p in params]


def _run_torch(kind, params, steps, seed, skip=()):
    """torch.optim (foreach=False) + StepLR; the steps in `skip` are not taken (an overflow)."""
    params = _copies(params)
    opt = TORCH_CLS[kind](_groups(kind, params), lr=LR[kind], foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for t in range(steps):
        for p, g in zip(params, _grads(params, t, seed), strict=True):
            p.grad = g
        if t not in skip:
            opt.step()
        sched.step()
    return params, opt


def _run_fused(kind, params, steps, seed, skip=()):
    """fusedlr with the same groups and schedule; the steps in `skip` see found_inf = 1."""
    params = _copies(params)
    opt = FUSED_CLS[kind](
        _groups(kind, params), lr=LR[kind], schedule=schedules.StepLR(step_size=2, gamma=0.5)
    )
    device = params[0].device
    if skip:
        opt.grad_scale = torch.ones(1, device=device)
        opt.found_inf = torch.zeros(1, device=device)
    for t in range(steps):
        for p, g in zip(params, _grads(params, t, seed), strict=True):
            p.grad = g  # on the optimizer's params, never the caller's
        if skip:
            opt.found_inf.fill_(float(t in skip))
        opt.step()
    return params, opt


def _assert_match(got, expected, dtype):
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(g, e, **TOL[dtype], msg=lambda m, i=i: f"param {i}: {m}")


def _launches(numels, elem_size, device):
    """Update launches of the Adam plan in the kernel-argument layout the device uses (the
    classic one for the cpu variant, whose sizes stay small)."""
    large = emulate.kernel_args_large(device)
    return emulate.launch_plan_stats(numels, elem_size, large_args=large)["launches"]


def _max_tensors(device):
    return (emulate.LARGE_SGD_MAX_TENSORS if emulate.kernel_args_large(device)
            else emulate.SGD_MAX_TENSORS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", DEVICES)
def test_more_tensors_than_one_launch(device, kind):
    """More tensors than one launch holds (classic layout: 36 Adam / 48 SGD; 32 KB layout: 384 /
    512), odd sizes, misaligned starts."""
    sizes = _sizes(_max_tensors(device) + 2, seed=1)
    assert _launches(sizes, 4, device) >= 2  # the plan really has several launches
    params = _params(sizes, device, torch.float32, seed=1)
    expected, _ = _run_torch(kind, params, 5, seed=1)
    got, _ = _run_fused(kind, params, 5, seed=1)
    _assert_match(got, expected, torch.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", DEVICES)
def test_tensor_continues_into_next_launch(device, kind):
    """One tensor of more chunks than a launch holds (320; 1280 in the 32 KB layout), between
    small ones: its first chunks share a launch with the tensors before it, its last ones a
    launch with those after it."""
    blocks = emulate.LARGE_MAX_BLOCKS if emulate.kernel_args_large(device) else emulate.MAX_BLOCKS
    big = (blocks + 10) * CHUNK + 7
    assert _launches([big], 4, device) >= 2  # it cannot fit one launch
    sizes = [4097, 7, big, 1, 65537]
    params = _params(sizes, device, torch.float32, seed=2)
    expected, _ = _run_torch(kind, params, 3, seed=2)
    got, _ = _run_fused(kind, params, 3, seed=2)
    _assert_match(got, expected, torch.float32)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("device", DEVICES)
def test_more_step_tensors_than_one_step_launch(device, kind):
    """More per-tensor steps than one step-increment launch covers (256; 2304 in the 32 KB
    layout): every step advances on the applied steps and none on an overflow step (found_inf
    = 1 at step 2)."""
    per = emulate.LARGE_STEP_TENSORS if emulate.kernel_args_large(device) else emulate.STEP_TENSORS
    sizes = _sizes(per + 44, seed=3)
    params = _params(sizes, device, torch.float64, seed=3)
    expected, topt = _run_torch(kind, params, 5, seed=3, skip={2})
    got, fopt = _run_fused(kind, params, 5, seed=3, skip={2})
    _assert_match(got, expected, torch.float64)
    steps = [float(fopt.state[p]["step"]) for p in got]
    if kind == "sgd":  # torch's SGD keeps no step: momentum buffers were updated 4 times
        assert steps == [4.0] * len(got)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(
                fopt.state[g]["momentum_buffer"],
                topt.state[e]["momentum_buffer"],
                **TOL[torch.float64],
            )
    else:
        assert steps == [float(topt.state[e]["step"]) for e in expected] == [4.0] * len(got)


def _rounded_torch(kind, params, steps, seed):
    """The 16-bit oracle: torch.optim on float32 copies (fusedlr's state and math type) whose
    params are rounded to the 16-bit type after every step, grads taken from the 16-bit grads."""
    low = params[0].dtype
    work = [p.detach().float() for p in params]
    opt = TORCH_CLS[kind](_groups(kind, work), lr=LR[kind], foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for t in range(steps):
        for p, g in zip(work, _grads(params, t, seed), strict=True):
            p.grad = g.float()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p in work:
                p.copy_(p.to(low))
    return [p.to(low) for p in work]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_misaligned_low_precision(device, dtype, kind):
    """bf16 / fp16 params that are views at an odd element offset (2 bytes past a 16-byte
    boundary), beside aligned ones, over several launches."""
    sizes = _sizes(40, seed=4)
    params = _params(sizes, device, dtype, seed=4)
    assert [p.storage_offset() for p in params[:2]] == [0, 1]
    expected = _rounded_torch(kind, params, 5, seed=4)
    got, _ = _run_fused(kind, params, 5, seed=4)
    # float32 results a few ulp apart may round to neighbouring 16-bit values, and such a flip
    # persists: 2 ulp of the larger of the start and end values, on at most 1% of the elements
    eps = torch.finfo(dtype).eps
    for i, (g, e, p0) in enumerate(zip(got, expected, params, strict=True)):
        g, e, p0 = g.double(), e.double(), p0.double()
        diff = (g - e).abs()
        bound = 2 * eps * torch.maximum(p0.abs(), e.abs()) + 1e-6
        worst = int((diff - bound).argmax())
        assert bool((diff <= bound).all()), (
            f"param {i} ({sizes[i]} elements): element {worst} fusedlr {float(g[worst])}, "
            f"oracle {float(e[worst])}, start {float(p0[worst])}"
        )
        assert int((diff > 0).sum()) <= max(1, g.numel() // 100), f"param {i}: many differ"
