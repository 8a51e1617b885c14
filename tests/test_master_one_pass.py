"""master_weights=True in one pass against the three-pass path, bit for bit.

One pass (CPU, contiguous 16-bit params): ``*_update_master_`` reads the 16-bit grad and the
float32 master, writes the master and its rounding to the 16-bit param. Three passes (the
reference, ``_master_one_pass = False``): grads copied to float32 buffers, the float32 update,
the masters copied to the params. The same math and the same round-to-nearest-even, so params,
masters and state must be equal, with a schedule, a grad scaler (overflow steps included) and
params that miss their grad on some steps.
"""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import schedules

CONFIGS = {
    "sgd": (fusedlr.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (fusedlr.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    "adamw": (fusedlr.AdamW, dict(lr=1e-2, weight_decay=0.1)),
}
SIZES = (1, 7, 4097, 65537, 3, 64)


def _run(kind, dtype, one_pass, seed, steps=7, device="cpu"):
    cls, kw = CONFIGS[kind]
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen).to(device, dtype) for n in SIZES]
    opt = cls(params, **kw, master_weights=True, schedule=schedules.StepLR(2, gamma=0.5))
    opt._master_one_pass = one_pass
    grads_seen = []
    for t in range(steps):
        gs = [torch.randn(p.shape, generator=gen).to(device, dtype) for p in params]
        for i, (p, g) in enumerate(zip(params, gs, strict=True)):
            p.grad = None if (t == 3 and i == 2) else g.clone()
        if t in (4, 5):  # a grad scaler's arguments; step 5 overflows
            opt.grad_scale = torch.tensor([8.0], device=device)
            opt.found_inf = torch.tensor([float(t == 5)], device=device)
        opt.step()
        opt.grad_scale = opt.found_inf = None
        grads_seen.append([None if p.grad is None else p.grad.clone() for p in params])
    return params, opt, grads_seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_one_pass_equals_three_passes(kind, dtype):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    one, opt1, _ = _run(kind, dtype, True, seed)
    three, opt3, _ = _run(kind, dtype, False, seed)
    call = opt1._buckets[0].calls[None]
    assert call.one_pass and call.native is not None  # the C++ eager path ran the op
    assert not opt3._buckets[0].calls[None].one_pass
    for a, b in zip(one, three, strict=True):
        assert torch.equal(a, b)
        sa, sb = opt1.state[a], opt3.state[b]
        assert set(sa) == set(sb)
        for key in sa:
            if torch.is_tensor(sa[key]):
                assert torch.equal(sa[key], sb[key]), key


def test_one_pass_leaves_the_grads_alone():
    """The one-pass op reads the 16-bit grads and writes neither them nor a float32 copy; the
    grads seen after each step are the ones set before it (also under a grad scaler)."""
    cls, kw = CONFIGS["adamw"]
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(n, generator=gen).bfloat16() for n in SIZES]
    opt = cls(params, **kw, master_weights=True)
    for t in range(3):
        gs = [torch.randn(p.shape, generator=gen).bfloat16() for p in params]
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        if t == 2:
            opt.grad_scale, opt.found_inf = torch.tensor([4.0]), torch.tensor([0.0])
        opt.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, gs, strict=True))
    assert not opt._grad32  # no float32 grad buffer was allocated


def test_bad_master_is_refused_before_any_write():
    from fusedlr import ops

    params = [torch.randn(5).bfloat16()]
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9, master_weights=True)
    params[0].grad = torch.randn(5).bfloat16()
    opt.step()
    call = opt._buckets[0].calls[None]
    ds = opt._devices[torch.device("cpu")]
    before = [params[0].clone(), call.params[0].clone()]
    with pytest.raises(RuntimeError, match=r"masters\[0\] must be a float32 tensor"):
        ops.sgd_update_master_([call.params[0].double()], [params[0].grad], call.lists[0],
                               call.steps, call.sources, call.meta, ds.hparams, ds.group_lr)
    with pytest.raises(RuntimeError, match=r"params\[0\] is Float; the master update takes"):
        ops.sgd_update_master_(call.params, [params[0].grad.float()], call.lists[0], call.steps,
                               [call.params[0].clone()], call.meta, ds.hparams, ds.group_lr)
    assert torch.equal(params[0], before[0]) and torch.equal(call.params[0], before[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.skipif(not fusedlr._C.cuda_compiled(), reason="fusedlr was built without CUDA")
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_cuda_one_pass_matches_three_passes(kind):
    """On a GPU: the master kernels (sgd/adam_master_kernel) against the three-pass path; the
    same float32 math, compiled in two kernels (nvcc may contract differently), so to float32
    rounding rather than bit for bit."""
    one, opt1, _ = _run(kind, torch.bfloat16, True, 12, device="cuda")
    three, opt3, _ = _run(kind, torch.bfloat16, False, 12, device="cuda")
    assert opt1._buckets[0].calls[None].one_pass
    for a, b in zip(one, three, strict=True):
        torch.testing.assert_close(opt1.state[a]["master"], opt3.state[b]["master"],
                                   rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(a.float(), b.float(), rtol=2**-7, atol=1e-6)
