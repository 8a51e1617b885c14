"""torch.amp.GradScaler with fusedlr optimizers, against torch's fused optimizers (CPU).

GradScaler hands ``grad_scale`` and ``found_inf`` to optimizers with
``_step_supports_amp_scaling``; the kernel unscales and skips the update on overflow without a
host sync. The oracle is torch.optim.Adam/SGD(fused=True) driven by the same scaler on the same
sequence of batches, with inf grads injected on some steps.
"""

import copy

import pytest
import torch
from torch.optim import lr_scheduler

import fusedlr
from fusedlr import schedules

STEPS = 14
INF_STEPS = {2, 3, 7, 11}


def _model(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)
    ).to(dtype)


def _batches(dtype):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 6, generator=g, dtype=dtype) for _ in range(STEPS)]


def _train_step(model, opt, scaler, x, inject):
    loss = model(x).square().mean()
    scaler.scale(loss).backward()
    if inject:
        next(iter(model.parameters())).grad.view(-1)[0] = float("inf")
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)


def _scaler():
    # a small growth interval so the scale both shrinks (on inf) and grows during the run
    return torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=3)


def _assert_params_equal(a, b, dtype):
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=2e-6, atol=1e-7)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, **tol)


def _run_pair(make_ours, make_theirs, dtype, inf_steps, sched_pair=None, skip_schedule=False):
    ours_model = _model(dtype)
    theirs_model = copy.deepcopy(ours_model)
    ours = make_ours(ours_model.parameters())
    theirs = make_theirs(theirs_model.parameters())
    theirs_sched = sched_pair(theirs) if sched_pair else None
    s_ours, s_theirs = _scaler(), _scaler()
    for i, x in enumerate(_batches(dtype)):
        _train_step(ours_model, ours, s_ours, x, i in inf_steps)
        _train_step(theirs_model, theirs, s_theirs, x, i in inf_steps)
        if theirs_sched is not None and not (skip_schedule and i in inf_steps):
            theirs_sched.step()
        assert s_ours.get_scale() == s_theirs.get_scale()
        _assert_params_equal(ours_model, theirs_model, dtype)
        if theirs_sched is not None:
            assert float(ours.get_last_lr()[0]) == pytest.approx(
                theirs.param_groups[0]["lr"], rel=1e-12
            )
    return ours, theirs, ours_model, theirs_model


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_matches_torch_fused(dtype, amsgrad, decoupled):
    ours_cls, theirs_cls = (fusedlr.AdamW, torch.optim.AdamW) if decoupled else (
        fusedlr.Adam, torch.optim.Adam)
    kw = dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=amsgrad)
    ours, theirs, om, tm = _run_pair(
        lambda p: ours_cls(p, **kw),
        lambda p: theirs_cls(p, fused=True, **kw),
        dtype,
        INF_STEPS,
    )
    applied = STEPS - len(INF_STEPS)
    for p, q in zip(om.parameters(), tm.parameters(), strict=True):
        assert float(ours.state[p]["step"]) == applied == float(theirs.state[q]["step"])
        torch.testing.assert_close(ours.state[p]["exp_avg"], theirs.state[q]["exp_avg"])


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("skip_schedule", [False, True])
def test_adam_with_schedule_and_skip_schedule_on_inf(skip_schedule):
    """The schedule counter counts every step() (torch: scheduler.step() every iteration) unless
    skip_schedule_on_inf=True (torch: scheduler.step() only after an applied update)."""
    dtype = torch.float64
    ours, _, _, _ = _run_pair(
        lambda p: fusedlr.Adam(p, lr=0.01, schedule=schedules.CosineAnnealingLR(5),
                               skip_schedule_on_inf=skip_schedule),
        lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
        dtype,
        INF_STEPS,
        sched_pair=lambda o: lr_scheduler.CosineAnnealingLR(o, 5),
        skip_schedule=skip_schedule,
    )
    expected = STEPS - len(INF_STEPS) if skip_schedule else STEPS
    assert int(ours.schedule_counter) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_torch_fused(dtype, nesterov):
    # No inf on the first step here: torch's fused SGD allocates its momentum buffer with
    # empty_like on the first step even when that step is skipped (see the test below).
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
    ours, theirs, om, tm = _run_pair(
        lambda p: fusedlr.SGD(p, **kw),
        lambda p: torch.optim.SGD(p, fused=True, **kw),
        dtype,
        INF_STEPS,
    )
    for p, q in zip(om.parameters(), tm.parameters(), strict=True):
        torch.testing.assert_close(ours.state[p]["momentum_buffer"],
                                   theirs.state[q]["momentum_buffer"])


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("first_steps_skipped", [1, 2])
def test_skipped_first_step_leaves_sgd_momentum_clean(first_steps_skipped):
    """LibreYOLO#771 bug class: a first step skipped for inf grads must not start the momentum
    buffer; the next applied step initialises it from the grad. Oracle: torch's SGD (foreach=
    False), whose step GradScaler does not call at all on overflow."""
    dtype = torch.float64
    inf_steps = set(range(first_steps_skipped)) | {6}
    kw = dict(lr=0.05, momentum=0.9, dampening=0.1)
    ours, theirs, om, tm = _run_pair(
        lambda p: fusedlr.SGD(p, **kw),
        lambda p: torch.optim.SGD(p, foreach=False, **kw),
        dtype,
        inf_steps,
    )
    for p, q in zip(om.parameters(), tm.parameters(), strict=True):
        torch.testing.assert_close(ours.state[p]["momentum_buffer"],
                                   theirs.state[q]["momentum_buffer"], rtol=1e-12, atol=1e-14)


def test_skipped_first_step_state_directly():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(torch.ones(()))
    p.grad = torch.full((4,), float("inf"), dtype=torch.float64)
    scaler.step(opt)
    scaler.update()
    assert torch.equal(p.detach(), torch.ones(4, dtype=torch.float64))  # untouched
    assert float(opt.state[p]["step"]) == 0  # no momentum update happened
    scaler.scale(torch.ones(()))
    g = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    p.grad = g * scaler.get_scale()
    scaler.step(opt)
    # first applied update: buf = grad (dampening not applied), p = 1 - lr * grad
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], g, rtol=0, atol=0)
    torch.testing.assert_close(p.detach(), 1 - 0.1 * g, rtol=1e-15, atol=0)


def test_skip_schedule_on_inf_counter_and_validation():
    p = torch.nn.Parameter(torch.zeros(3))
    for skip, expected in ((False, 5), (True, 3)):
        opt = fusedlr.Adam([p], lr=1.0, schedule=schedules.ExponentialLR(0.5),
                           skip_schedule_on_inf=skip)
        for i in range(5):
            p.grad = torch.ones(3)
            opt.found_inf = torch.tensor([1.0 if i in (1, 3) else 0.0])
            opt.grad_scale = torch.tensor([1.0])
            opt.step()
        del opt.found_inf, opt.grad_scale
        assert int(opt.schedule_counter) == expected
        assert float(opt.get_last_lr()[0]) == 0.5**expected
    with pytest.raises(TypeError, match="skip_schedule_on_inf"):
        fusedlr.SGD([p], skip_schedule_on_inf=1)


def test_docstrings_document_amp():
    import fusedlr.optim as optim

    doc = optim.__doc__
    assert "GradScaler" in doc and "skip_schedule_on_inf" in doc and "warm-up" in doc


@pytest.mark.parametrize("shape", [(), (1,)])
def test_skip_schedule_on_inf_counts_into_one_buffer(shape):
    """The applied-step count goes through one preallocated int64 buffer (no per-step
    allocation), for GradScaler's 0-dim found_inf and for a (1,) one."""
    p = torch.nn.Parameter(torch.zeros(7))
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9, skip_schedule_on_inf=True)
    buffers = set()
    infs = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    for v in infs:
        p.grad = torch.randn(7)
        opt.found_inf = torch.full(shape, v)
        opt.step()
        (ds,) = opt._devices.values()
        buffers.add(ds.applied.data_ptr())
    assert len(buffers) == 1
    assert int(opt.schedule_counter) == infs.count(0.0)
