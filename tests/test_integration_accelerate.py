"""fusedlr under HF accelerate (real ``Accelerator(cpu=True)``, a tiny MLP, random data).

The oracle is what an accelerate user runs today: ``torch.optim.AdamW`` (or SGD) plus the same
schedule as a ``torch.optim.lr_scheduler``, both given to ``accelerator.prepare`` (so accelerate's
``AcceleratedScheduler`` steps it once per real optimizer step). The fusedlr side follows the
recipe: the fusedlr optimizer with its schedule, no scheduler.

Params are float64 so both sides compute the same formulas to rounding: trajectories agree to
~1e-12 relative (the fused kernel orders a few float operations differently from torch's
single-tensor loop, nothing more); any schedule off by one step would differ by ~1e-3.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

accelerate = pytest.importorskip("accelerate")

from accelerate import Accelerator  # noqa: E402
from accelerate.optimizer import AcceleratedOptimizer  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402

import fusedlr  # noqa: E402
from fusedlr import schedules as S  # noqa: E402
from fusedlr.integrations import accelerate as fa  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-12)
WARMUP, DECAY = 3, 9  # real optimizer steps: warmup then cosine


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps its state in process-wide singletons: each test starts clean."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _accelerator(**kwargs) -> Accelerator:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return Accelerator(cpu=True, **kwargs)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()


def _batches(seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g, dtype=torch.float64),
             torch.randn(8, 3, generator=g, dtype=torch.float64)) for _ in range(n)]


def _loader(batches):
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=8)


def _torch_schedule(opt):
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=WARMUP)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=DECAY)
    return torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[WARMUP])


FUSEDLR_SCHEDULE = S.SequentialLR([S.LinearLR(0.1, 1.0, WARMUP), S.CosineAnnealingLR(DECAY)],
                                  [WARMUP])


def _train(accelerator, model, opt, loader, scheduler=None):
    """accelerate's documented loop; returns the losses and, per real optimizer step, the lr
    of the next step as the optimizer's wrapper reports it (torch: the scheduler's)."""
    losses, next_lrs = [], []
    for x, y in loader:
        with accelerator.accumulate(model):
            loss = F.mse_loss(model(x), y)
            accelerator.backward(loss)
            opt.step()
            if scheduler is not None:
                scheduler.step()
            opt.zero_grad()
        losses.append(loss.item())
        if accelerator.sync_gradients:
            lr = scheduler.get_last_lr() if scheduler is not None else opt.get_last_lr()
            next_lrs.append([float(v) for v in lr])
    return losses, next_lrs


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("accumulation", [1, 2])
def test_recipe_matches_torch_adamw_with_a_prepared_torch_scheduler(accumulation):
    n_micro = (WARMUP + DECAY + 2) * accumulation  # runs 2 steps past the cosine's end
    batches = _batches(seed=11 + accumulation, n=n_micro)

    acc = _accelerator(gradient_accumulation_steps=accumulation)
    model = _model(seed=5)
    opt = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.1, foreach=False)
    sched = _torch_schedule(opt)
    model, opt, loader, sched = acc.prepare(model, opt, _loader(batches), sched)
    want_losses, want_lrs = _train(acc, model, opt, loader, sched)
    want_params = _params(model)

    acc = _accelerator(gradient_accumulation_steps=accumulation)
    model = _model(seed=5)
    opt = fusedlr.AdamW(model.parameters(), lr=0.02, weight_decay=0.1, schedule=FUSEDLR_SCHEDULE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fusedlr.DoubleScheduleWarning)
        model, opt, loader = fa.prepare(acc, model, opt, _loader(batches))
        got_losses, got_lrs = _train(acc, model, opt, loader)

    # The counter advanced once per real optimizer step (accelerate skips step() on the
    # non-sync micro-batches), exactly as AcceleratedScheduler stepped torch's scheduler.
    real_steps = n_micro // accumulation
    assert len(got_lrs) == real_steps
    assert int(opt.schedule_counter) == real_steps
    torch.testing.assert_close(torch.tensor(got_lrs), torch.tensor(want_lrs), **TOL)
    torch.testing.assert_close(torch.tensor(got_losses), torch.tensor(want_losses), **TOL)
    for got, want in zip(_params(model), want_params, strict=True):
        torch.testing.assert_close(got, want, **TOL)


def _sgd_kernel_lr(p_before, p_after, grad) -> float:
    """The lr plain SGD (no momentum, no weight decay) applied: p' = p - lr * g."""
    return float(((p_before - p_after) / grad).mean())


def test_introspection_through_the_prepared_optimizer_reports_the_kernel_lr():
    acc = _accelerator(gradient_accumulation_steps=2)
    torch.manual_seed(3)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    v = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    model = torch.nn.ParameterList([w, v])
    opt = fusedlr.SGD([
        {"params": [w], "lr": 0.3, "schedule": S.WarmupCosine(2, 6)},
        {"params": [v], "lr": 0.1, "schedule": S.StepLR(2, 0.5)},
    ])
    model, opt = fa.prepare(acc, model, opt)
    assert isinstance(opt, AcceleratedOptimizer)
    assert opt.fusedlr_optimizer is fa.unwrap(opt)
    assert opt.host_lr_unknown_reason is None

    g = torch.Generator().manual_seed(4)
    real = 0
    for _ in range(14):
        with acc.accumulate(model):
            before = [w.detach().clone(), v.detach().clone()]
            next_device = [float(x) for x in opt.get_last_lr()]
            next_host = opt.get_host_lr("next")
            grads = [torch.rand(5, generator=g, dtype=torch.float64) + 0.5,
                     torch.rand(4, generator=g, dtype=torch.float64) + 0.5]
            w.grad, v.grad = grads[0].clone(), grads[1].clone()
            opt.step()
            opt.zero_grad()
        if not acc.sync_gradients:  # accelerate skipped the step: nothing moved, no count
            assert torch.equal(w.detach(), before[0]) and torch.equal(v.detach(), before[1])
            assert int(opt.schedule_counter) == real == opt.host_step_count
            continue
        real += 1
        used = [_sgd_kernel_lr(before[0], w.detach(), grads[0]),
                _sgd_kernel_lr(before[1], v.detach(), grads[1])]
        torch.testing.assert_close(torch.tensor(next_device), torch.tensor(used), **TOL)
        torch.testing.assert_close(torch.tensor(next_host), torch.tensor(used), **TOL)
        torch.testing.assert_close(torch.tensor(opt.get_host_lr("last")), torch.tensor(used),
                                   **TOL)
        assert int(opt.schedule_counter) == real == opt.host_step_count
    # the schedules themselves, previewed on the host: step k used schedule(k)
    assert real == 7
    expected = [S.WarmupCosine(2, 6).values(7, 0.3)[-1], S.StepLR(2, 0.5).values(7, 0.1)[-1]]
    # as floats: pytest 9.2's approx refuses 0-dim tensors
    assert opt.get_host_lr("last") == pytest.approx([float(x) for x in expected])


def test_momentum_introspection_through_the_prepared_optimizer():
    acc = _accelerator()
    model = _model(seed=1)
    cycle = S.OneCycleLR(max_lr=0.05, total_steps=10)
    opt = fusedlr.SGD(model.parameters(), lr=0.05, momentum=0.9, schedule=cycle)
    ref = torch.optim.SGD(_model(seed=1).parameters(), lr=0.05, momentum=0.9)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=0.05, total_steps=10)
    model, opt = fa.prepare(acc, model, opt)
    for x, y in _batches(seed=2, n=6):
        F.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        ref.step()
        ref_sched.step()
        want = ref.param_groups[0]["momentum"]  # what torch's OneCycleLR set for the next step
        assert float(opt.get_last_momentum()[0]) == pytest.approx(want, rel=1e-12)
        assert opt.get_host_momentum("next")[0] == pytest.approx(want, rel=1e-12)


def test_save_state_and_load_state_resume_exactly(tmp_path):
    batches = _batches(seed=21, n=16)

    def run(acc, model, opt, part):
        for x, y in part:
            with acc.accumulate(model):
                acc.backward(F.mse_loss(model(x), y))
                opt.step()
                opt.zero_grad()

    acc = _accelerator(gradient_accumulation_steps=2)
    model = _model(seed=7)
    opt = fusedlr.AdamW(model.parameters(), lr=0.03, schedule=S.WarmupCosine(2, 6))
    model, opt = fa.prepare(acc, model, opt)
    run(acc, model, opt, batches[:6])
    acc.save_state(str(tmp_path / "ckpt"))
    run(acc, model, opt, batches[6:])
    want_params, want_counter = _params(model), int(opt.schedule_counter)
    want_lr = [float(x) for x in opt.get_last_lr()]

    acc = _accelerator(gradient_accumulation_steps=2)
    model = _model(seed=99)  # different init: everything must come from the checkpoint
    opt = fusedlr.AdamW(model.parameters(), lr=0.03, schedule=S.WarmupCosine(2, 6))
    model, opt = fa.prepare(acc, model, opt)
    acc.load_state(str(tmp_path / "ckpt"))
    assert int(opt.schedule_counter) == 3 == opt.host_step_count
    run(acc, model, opt, batches[6:])

    assert int(opt.schedule_counter) == want_counter == 8
    assert [float(x) for x in opt.get_last_lr()] == want_lr
    assert opt.get_host_lr("next") == pytest.approx(want_lr, rel=1e-15)
    for got, want in zip(_params(model), want_params, strict=True):
        assert torch.equal(got, want)


def _found_inf_loop(acc, model, opt, batches, overflow_at, scheduler=None):
    """Mixed-precision style loop: the GradScaler scales the loss; one step gets an inf grad.
    Returns the lr of the next step and accelerate's ``step_was_skipped``, per step."""
    lrs, skipped = [], []
    for k, (x, y) in enumerate(batches):
        acc.backward(F.mse_loss(model(x), y))
        if k == overflow_at:
            next(model.parameters()).grad[0, 0] = float("inf")
        opt.step()
        if scheduler is not None:
            scheduler.step()
        opt.zero_grad()
        lrs.append(float((scheduler or opt).get_last_lr()[0]))
        skipped.append(opt.step_was_skipped)
    return lrs, skipped


def test_grad_scaler_path_is_accelerates_own_and_overflow_skips_as_with_torch():
    """accelerate sets ``accelerator.scaler`` (a GradScaler) for fp16 on a GPU; the CPU has no
    fp16 autocast, so the test sets one itself: the prepared optimizer then runs accelerate's
    ``scaler.step`` path. Oracle: torch AdamW + a prepared torch scheduler, which accelerate
    does not step when the optimizer step was skipped; fusedlr's equivalent is
    ``skip_schedule_on_inf=True``."""
    batches, overflow_at = _batches(seed=31, n=8), 3

    acc = _accelerator()
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    model = _model(seed=8)
    opt = torch.optim.AdamW(model.parameters(), lr=0.02, foreach=False)
    sched = _torch_schedule(opt)
    model, opt, sched = acc.prepare(model, opt, sched)
    want_lrs, want_skipped = _found_inf_loop(acc, model, opt, batches, overflow_at, sched)
    assert want_skipped == [k == overflow_at for k in range(len(batches))]
    want_params, want_scale = _params(model), acc.scaler.get_scale()

    acc = _accelerator()
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    model = _model(seed=8)
    opt = fusedlr.AdamW(model.parameters(), lr=0.02, schedule=FUSEDLR_SCHEDULE,
                        skip_schedule_on_inf=True)
    model, opt = fa.prepare(acc, model, opt)
    assert opt.scaler is acc.scaler
    got_lrs, got_skipped = _found_inf_loop(acc, model, opt, batches, overflow_at)
    # GradScaler always calls a fused-style optimizer's step() (the kernel skips the update on
    # found_inf), so accelerate never reports a skipped step for it, as for torch's fused=True.
    assert not any(got_skipped)

    assert acc.scaler.get_scale() == want_scale  # halved once by the overflow
    assert int(opt.schedule_counter) == len(batches) - 1
    torch.testing.assert_close(torch.tensor(got_lrs), torch.tensor(want_lrs), **TOL)
    for got, want in zip(_params(model), want_params, strict=True):
        torch.testing.assert_close(got, want, **TOL)
    # The skip was decided on the device: the host mirror says it does not know, until synced.
    assert opt.host_lr_unknown_reason is not None
    with pytest.raises(fusedlr.HostLRUnknownError):
        opt.get_host_lr()
    opt.sync_host_counter()
    assert opt.host_lr_unknown_reason is None
    assert opt.get_host_lr("next") == pytest.approx(got_lrs[-1:], rel=1e-15)


def test_a_torch_scheduler_on_unscheduled_groups_still_works_through_accelerate():
    """schedule=None groups: group['lr'] as it stands, driven by accelerate's scheduler."""
    batches = _batches(seed=41, n=8)
    results = []
    for make in (lambda ps: torch.optim.AdamW(ps, lr=0.02, foreach=False),
                 lambda ps: fusedlr.AdamW(ps, lr=0.02)):
        acc = _accelerator(gradient_accumulation_steps=2)
        model = _model(seed=9)
        opt = make(model.parameters())
        sched = _torch_schedule(opt)
        model, opt, loader, sched = fa.prepare(acc, model, opt, _loader(batches), sched)
        losses, lrs = _train(acc, model, opt, loader, sched)
        results.append((losses, lrs, _params(model)))
    (want_losses, want_lrs, want_params), (got_losses, got_lrs, got_params) = results
    assert got_lrs == want_lrs
    torch.testing.assert_close(torch.tensor(got_losses), torch.tensor(want_losses), **TOL)
    for got, want in zip(got_params, want_params, strict=True):
        torch.testing.assert_close(got, want, **TOL)


def test_prepare_refuses_a_torch_scheduler_on_a_scheduled_group():
    acc = _accelerator()
    model = _model(seed=0)
    opt = fusedlr.AdamW(model.parameters(), lr=0.01, schedule=S.WarmupCosine(2, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fusedlr.DoubleScheduleWarning)
        sched = torch.optim.lr_scheduler.LinearLR(opt, total_iters=5)
    with pytest.raises(ValueError, match=r"param groups \[0\].*schedule"):
        fa.prepare(acc, model, opt, sched)


def test_expose_after_a_plain_prepare_and_unwrap():
    acc = _accelerator()
    model = _model(seed=0)
    inner = fusedlr.Adam(model.parameters(), lr=0.01, schedule=S.StepLR(1, 0.5))
    model, opt = acc.prepare(model, inner)
    assert not hasattr(opt, "get_last_lr")  # accelerate alone hides it (issue 12)
    assert fa.expose(opt) is opt and fa.expose(opt) is opt
    assert acc._optimizers[0] is opt  # what save_state / load_state iterate over
    assert fa.unwrap(opt) is inner and fa.unwrap(inner) is inner
    assert opt.schedule_counter is inner.schedule_counter
    assert opt.get_host_lr("next") == [0.01]


def test_expose_and_unwrap_refuse_other_optimizers():
    acc = _accelerator()
    model = _model(seed=0)
    model, opt = acc.prepare(model, torch.optim.AdamW(model.parameters()))
    with pytest.raises(TypeError, match="optimizer: expected a fusedlr optimizer"):
        fa.expose(opt)
    with pytest.raises(TypeError, match="optimizer: expected a fusedlr optimizer"):
        fa.unwrap(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="optimizer: expected the .*AcceleratedOptimizer"):
        fa.expose(fusedlr.SGD(model.parameters(), lr=0.1))
    # prepare leaves optimizers that wrap no fusedlr optimizer alone
    _, plain = fa.prepare(acc, model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert type(plain) is AcceleratedOptimizer


def test_importing_fusedlr_does_not_import_accelerate():
    code = ("import sys, fusedlr, fusedlr.integrations; "
            "assert 'accelerate' not in sys.modules, 'accelerate imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
