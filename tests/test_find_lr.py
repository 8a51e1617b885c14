"""fusedlr.find_lr: the LR range test on problems whose good lr range is known."""

import copy
import functools

import pytest
import torch

import fusedlr
from fusedlr import find_lr
from fusedlr.schedules import CosineAnnealingLR, ExponentialLR, StepLR

mse = torch.nn.functional.mse_loss


def _regression(seed=0, n=256, d=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    lam_max = float(torch.linalg.eigvalsh(2 * x.T @ x / n)[-1])  # Hessian of the MSE
    return x, y, lam_max


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_suggestion_inside_the_known_good_range(seed, momentum):
    # Full-batch least squares: gradient descent (heavy ball) is stable below
    # 2 (1 + momentum) / lam_max; 100x below the stable limit (in effective lr
    # lr / (1 - momentum)) it barely moves. The suggestion must land in between.
    x, y, lam_max = _regression(seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 1)
    r = find_lr(model, mse, [(x, y)], functools.partial(fusedlr.SGD, momentum=momentum))
    high = 2 * (1 + momentum) / lam_max
    low = 0.01 * (1 - momentum) * 2 / lam_max
    assert r.suggested_lr is not None
    assert low < r.suggested_lr < high, (low, r.suggested_lr, high)
    # the recorded lrs are the exponential sweep from start_lr
    gamma = (10 / 1e-7) ** (1 / 99)
    assert r.lrs == ExponentialLR(gamma).values(len(r.lrs), 1e-7).tolist()
    assert r.lrs[0] == 1e-7


def test_divergence_stops_early():
    x, y, _ = _regression()
    model = torch.nn.Linear(8, 1)
    r = find_lr(model, mse, [(x, y)], fusedlr.SGD, start_lr=1e-3, end_lr=1e4, num_steps=100,
                diverge_factor=4)
    assert r.stopped_early
    assert len(r.lrs) < 100 and len(r.losses) == len(r.lrs) == len(r.raw_losses)
    last = r.losses[-1]
    assert not last <= 4 * min(r.losses[:-1])  # the stop criterion (or a non-finite loss)
    assert all(v <= 4 * min(r.losses[: i + 1]) for i, v in enumerate(r.losses[:-1]))


def test_no_early_stop_when_loss_keeps_falling():
    x, y, _ = _regression()
    r = find_lr(torch.nn.Linear(8, 1), mse, [(x, y)], fusedlr.SGD, start_lr=1e-6, end_lr=0.05,
                num_steps=30)
    assert not r.stopped_early and len(r.lrs) == 30


def test_kernel_uses_the_recorded_lrs():
    # loss = sum(w): the gradient is 1, so plain SGD moves w by exactly -lr each step.
    model = torch.nn.Linear(1, 1, bias=False).double()
    seen = []

    def loss_fn(out, target):
        seen.append(model.weight.detach().clone().item())
        return model.weight.sum()

    data = [(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))]
    r = find_lr(model, loss_fn, data, fusedlr.SGD, start_lr=1e-3, end_lr=1.0, num_steps=20,
                smooth=0.0, diverge_factor=1e300)
    moved = [a - b for a, b in zip(seen, seen[1:], strict=False)]
    torch.testing.assert_close(torch.tensor(moved), torch.tensor(r.lrs[:-1]), rtol=1e-12,
                               atol=1e-15)


def test_smoothing_is_a_bias_corrected_ema():
    x, y, _ = _regression()
    r = find_lr(torch.nn.Linear(8, 1), mse, [(x, y)], fusedlr.SGD, num_steps=20, smooth=0.9)
    avg = 0.0
    for i, (raw, sm) in enumerate(zip(r.raw_losses, r.losses, strict=True)):
        avg = 0.9 * avg + 0.1 * raw
        assert sm == pytest.approx(avg / (1 - 0.9 ** (i + 1)), rel=1e-12)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
            torch.nn.Dropout(0.2), torch.nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.body(x)


def _train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        mse(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda params: fusedlr.Adam(
        [{"params": params[:2], "lr": 1e-2, "schedule": CosineAnnealingLR(10)},
         {"params": params[2:], "lr": 3e-3, "schedule": StepLR(2), "steps_per_epoch": 3}],
        amsgrad=True),
    lambda params: fusedlr.SGD(
        [{"params": params[:3], "lr": 0.05, "momentum": 0.9, "schedule": CosineAnnealingLR(10)},
         {"params": params[3:], "lr": 0.01, "schedule": None}]),
])
def test_model_and_optimizer_restored_bit_identically(make_opt):
    x, y, _ = _regression()
    torch.manual_seed(0)
    model = _Net()
    twin = copy.deepcopy(model)
    opt, twin_opt = make_opt(list(model.parameters())), make_opt(list(twin.parameters()))
    torch.manual_seed(1)
    _train(model, opt, x, y, 4)
    torch.manual_seed(1)
    _train(twin, twin_opt, x, y, 4)
    model.eval()
    twin.eval()
    grads_before = [p.grad.clone() for p in model.parameters()]
    before_sd = copy.deepcopy(opt.state_dict())
    state_tensors = {id(t) for st in opt.state.values() for t in st.values()
                     if isinstance(t, torch.Tensor)}
    counter = opt.schedule_counter
    rng = torch.get_rng_state()

    r = find_lr(model, mse, [(x[:64], y[:64]), (x[64:128], y[64:128])], opt, num_steps=40)
    assert len(r.lrs) > 5

    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    for p, g in zip(model.parameters(), grads_before, strict=True):
        assert torch.equal(p.grad, g)
    after_sd = opt.state_dict()
    assert after_sd["param_groups"] == before_sd["param_groups"]
    assert after_sd["state"].keys() == before_sd["state"].keys()
    for k, st in before_sd["state"].items():
        for name, v in st.items():
            assert torch.equal(after_sd["state"][k][name], v) if v is not None else (
                after_sd["state"][k][name] is None), (k, name)
    assert torch.equal(after_sd["fusedlr"]["counter"], before_sd["fusedlr"]["counter"])
    assert opt.schedule_counter is counter  # in place: a captured graph stays valid
    assert state_tensors <= {id(t) for st in opt.state.values() for t in st.values()
                             if isinstance(t, torch.Tensor)}
    assert [g["schedule"] for g in opt.param_groups] == [g["schedule"]
                                                         for g in twin_opt.param_groups]
    # and training continues exactly as if the range test had never run
    model.train()
    twin.train()
    torch.manual_seed(2)
    _train(model, opt, x, y, 3)
    torch.manual_seed(2)
    _train(twin, twin_opt, x, y, 3)
    for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [float(v) for v in opt.get_last_lr()] == [float(v) for v in twin_opt.get_last_lr()]


def test_fresh_optimizer_from_factory_restores_the_model():
    x, y, _ = _regression()
    torch.manual_seed(0)
    model = _Net()
    before = copy.deepcopy(model.state_dict())
    calls = []

    def factory(params, lr, schedule):
        calls.append((lr, schedule))
        return fusedlr.AdamW(params, lr=lr, schedule=schedule)

    find_lr(model, mse, [(x, y)], factory, start_lr=1e-5, end_lr=1.0, num_steps=10)
    assert calls == [(1e-5, ExponentialLR((1.0 / 1e-5) ** (1 / 9)))]
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_plot(tmp_path):
    x, y, _ = _regression()
    r = find_lr(torch.nn.Linear(8, 1), mse, [(x, y)], fusedlr.SGD)
    fig = r.plot(tmp_path / "lr_find.png")
    assert (tmp_path / "lr_find.png").exists()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(line.get_xdata()[0] == r.suggested_lr for line in ax.lines
               if len(line.get_xdata()) == 1)
    assert ax.lines[1].get_ydata().tolist() == r.losses


@pytest.mark.parametrize("kwargs, exc", [
    ({"start_lr": 0.0}, ValueError), ({"end_lr": 1e-8}, ValueError), ({"num_steps": 1}, ValueError),
    ({"smooth": 1.0}, ValueError), ({"diverge_factor": 1.0}, ValueError),
    ({"optimizer_factory": torch.optim.SGD}, TypeError),
])
def test_bad_arguments(kwargs, exc):
    x, y, _ = _regression()
    args = dict(model=torch.nn.Linear(8, 1), loss_fn=mse, loader=[(x, y)],
                optimizer_factory=fusedlr.SGD)
    args.update(kwargs)
    with pytest.raises(exc):
        find_lr(**args)


def test_empty_loader():
    with pytest.raises(ValueError, match="no batches"):
        find_lr(torch.nn.Linear(8, 1), mse, [], fusedlr.SGD)
