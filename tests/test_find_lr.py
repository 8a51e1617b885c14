"""fusedlr.find_lr: the LR range test on problems whose good lr range is known."""

import copy
import functools
import math

import pytest
import torch

import fusedlr
from fusedlr import find_lr
from fusedlr.schedules import CosineAnnealingLR, ExponentialLR, StepLR

mse = torch.nn.functional.mse_loss


@pytest.fixture(autouse=True)
def _one_thread():
    # The models here are tiny: more than one intra-op thread only adds synchronisation,
    # which on a loaded machine costs ~10 ms per backward.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def _ema_rule(raw, num_steps, diverge_factor=4.0):
    """The documented stop rule, recomputed from the raw losses: the bias-corrected EMA
    with span max(5, num_steps / 20). Returns (stop, best, best_step): the first step
    where the EMA exceeds best + (diverge_factor - 1) * |best| (diverge_factor times its
    lowest value so far, for a positive loss) or is not finite (None if it never does),
    and that lowest value and where it was reached."""
    beta = 1 - 1 / max(5.0, num_steps / 20)
    avg, best, best_step = 0.0, math.inf, 0
    for i, v in enumerate(raw):
        avg = beta * avg + (1 - beta) * v
        ema = avg / (1 - beta ** (i + 1))
        if not math.isfinite(ema) or ema > best + (diverge_factor - 1) * abs(best):
            return i, best, best_step
        if ema < best:
            best, best_step = ema, i
    return None, best, best_step


def _usable(r, diverge_factor=4.0):
    """How many leading steps the smoother and the estimators use (documented: those
    before the first batch after the EMA's best whose loss exceeds the stop limit)."""
    _, best, best_step = _ema_rule(r.raw_losses, r.num_steps, diverge_factor)
    limit = best + (diverge_factor - 1) * abs(best)
    return next((i for i in range(best_step + 1, len(r.raw_losses))
                 if not r.raw_losses[i] <= limit), len(r.raw_losses))


def test_divergence_stops_early():
    x, y, _ = _regression()
    model = torch.nn.Linear(8, 1)
    r = find_lr(model, mse, [(x, y)], fusedlr.SGD, start_lr=1e-3, end_lr=1e4, num_steps=100,
                diverge_factor=4)
    assert r.stopped_early
    assert len(r.lrs) < 100 and len(r.losses) == len(r.lrs) == len(r.raw_losses)
    stop, best, _ = _ema_rule(r.raw_losses, 100)
    assert stop == len(r.lrs) - 1  # stopped at the first step the rule fires
    # steps from the divergence on are reported raw, not smoothed
    used = _usable(r)
    assert used < len(r.lrs) and r.raw_losses[used] > 4 * best
    for a, b in zip(r.losses[used:], r.raw_losses[used:], strict=True):
        assert a == b or not (math.isfinite(a) or math.isfinite(b))


def test_negative_losses_are_not_mistaken_for_divergence():
    # A loss that falls below zero (a negative log-likelihood, say) keeps falling: no
    # stop. Then a rise by more than (diverge_factor - 1) times |best| does stop it.
    falling = [1.0 - 0.1 * i for i in range(40)]
    r = _run_scripted(falling)
    assert not r.stopped_early and len(r.lrs) == 40
    rising = falling[:30] + [-1.9 + 2.0 * k for k in range(10)]  # best EMA ~ -1.7
    r = _run_scripted(rising)
    assert r.stopped_early
    stop, best, _ = _ema_rule(rising, 40)
    assert stop == len(r.lrs) - 1 and best < 0


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


def _scripted(values):
    """A loss_fn that returns values[0], values[1], ... (with a zero gradient), so the
    range test records a loss curve chosen by the test."""
    it = iter(values)

    def loss_fn(out, target):
        return out.sum() * 0.0 + next(it)

    return loss_fn


def _run_scripted(values, **kw):
    x = torch.zeros(4, 1, dtype=torch.float64)
    return find_lr(torch.nn.Linear(1, 1).double(), _scripted(values), [(x, x)], fusedlr.SGD,
                   num_steps=len(values), **kw)


def test_smoothing_reproduces_quadratics_exactly():
    # Local quadratic regression is exact on any quadratic, edges included: no lag, no
    # flattening of a minimum.
    n = 100
    truth = [3.0 - 0.05 * i + 4e-4 * i * i for i in range(n)]
    r = _run_scripted(truth)
    assert len(r.losses) == n
    f64 = torch.float64
    torch.testing.assert_close(torch.tensor(r.losses, dtype=f64), torch.tensor(truth, dtype=f64),
                               rtol=0, atol=1e-9)


def test_smoothing_does_not_lag():
    # A noisy descent 2 - tanh((i - 50) / 8): it falls fastest at step 50 and crosses its
    # midpoint (2.0) there. The smoothed curve must do both at 50, not a decade later
    # (fastai's EMA with weight 0.98 lags ~50 steps), and be closer to the truth than
    # the raw losses are (away from the ends: RMS error under 0.6 noise sigmas, no point
    # off by two).
    n = 100
    g = torch.Generator().manual_seed(3)
    truth = [2.0 - math.tanh((i - 50) / 8) for i in range(n)]
    noise = (0.05 * torch.randn(n, generator=g, dtype=torch.float64)).tolist()
    r = _run_scripted([t + e for t, e in zip(truth, noise, strict=True)])
    assert not r.stopped_early and r.suggested_lr is not None
    assert abs(r.lrs.index(r.suggestions["steep"]) - 50) <= 2
    crossing = next(i for i, v in enumerate(r.losses) if v < 2.0)
    assert abs(crossing - 50) <= 2
    err = [a - b for a, b in zip(r.losses[10:90], truth[10:90], strict=True)]
    assert math.sqrt(sum(e * e for e in err) / len(err)) < 0.6 * 0.05
    assert max(abs(e) for e in err) < 2 * 0.05


def test_smoothing_width_scales_with_num_steps():
    # The same noisy curve sampled over 100 and over 400 steps: the kernel width is a
    # fixed fraction of the sweep, so the longer sweep averages 4x as many batches per
    # window and its smoothed curve is closer to the truth.
    errors = []
    for n in (100, 400):
        g = torch.Generator().manual_seed(5)
        truth = [2.0 - math.tanh((i / n - 0.5) * 12) for i in range(n)]
        noise = (0.1 * torch.randn(n, generator=g, dtype=torch.float64)).tolist()
        r = _run_scripted([t + e for t, e in zip(truth, noise, strict=True)])
        inner = range(n // 10, n - n // 10)
        errors.append(math.sqrt(sum((r.losses[i] - truth[i]) ** 2 for i in inner) / len(inner)))
    assert errors[1] < 0.75 * errors[0], errors


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


# -- the suggestion against training outcomes ---------------------------------------------------

GRID = [10 ** (k / 4) for k in range(-20, 5)]  # 1e-5 .. 10, four lrs per decade


def _shuffled_batches(x, y, batch_size, num_steps, seed):
    """num_steps minibatches, reshuffling each epoch (a fixed list: every run sees the
    same batches in the same order)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < num_steps:
        order = torch.randperm(len(x), generator=g)
        out += [(x[i], y[i]) for i in order.split(batch_size)]
    return out[:num_steps]


def _converging_range(make_model, loss_fn, batches, opt_factory, x, y, grid=GRID):
    """The oracle: which constant lrs actually train. For each lr on the grid, a fresh
    model (same initial weights) is trained by the same optimizer at that constant lr on
    the same batches the range test sees (as many steps as the sweep), then its loss on
    the whole training set is measured. An lr converges if that loss is finite and has
    made at least 80% of the reduction the best grid lr achieves:
    ``final <= best + 0.2 * (initial - best)``. Returns (lo, hi), the ends of the
    contiguous run of converging grid lrs around the best one."""
    with torch.no_grad():
        initial = float(loss_fn(make_model()(x), y))
    finals = []
    for lr in grid:
        model = make_model()
        opt = opt_factory(model.parameters(), lr=lr)
        for xb, yb in batches:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        with torch.no_grad():
            v = float(loss_fn(model(x), y))
        finals.append(v if math.isfinite(v) else math.inf)
    best_i = min(range(len(grid)), key=finals.__getitem__)
    best = finals[best_i]
    assert best < 0.5 * initial, (initial, best)  # the problem is trainable at all
    ok = [v <= best + 0.2 * (initial - best) for v in finals]
    lo = hi = best_i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(grid) - 1 and ok[hi + 1]:
        hi += 1
    assert 0 < lo and hi < len(grid) - 1  # the grid brackets the range on both sides
    return grid[lo], grid[hi]


def _check_suggestion(make_model, loss_fn, x, y, batches, opt_factory, start_lr, grid=GRID):
    r = find_lr(make_model(), loss_fn, batches, opt_factory, start_lr=start_lr, end_lr=10.0,
                num_steps=len(batches))
    lo, hi = _converging_range(make_model, loss_fn, batches, opt_factory, x, y, grid)
    assert r.method == "steep" and r.suggested_lr == r.suggestions["steep"]
    assert set(r.suggestions) == {"steep", "minimum", "valley"}
    assert lo <= r.suggested_lr <= hi, (lo, r.suggestions, hi)
    # every estimator is reported, and none lands where a large lr no longer trains
    # (minimum/10 and valley are the conservative ones: they may sit below lo)
    for name, lr in r.suggestions.items():
        assert lr is not None and lr <= hi, (name, lr, hi)
    return r, (lo, hi)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_least_squares_suggestion_trains(seed):
    """Least squares, 512 x 10 inputs, minibatches of 64, fusedlr.SGD, sweep 1e-6..10 in
    100 steps (the sweep on which the lagging EMA suggested 6e-6). The converging range
    comes from training (see _converging_range): [0.0056, 0.56] for these seeds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 10, generator=g)
    y = x @ torch.randn(10, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)

    def make_model():
        torch.manual_seed(seed)
        return torch.nn.Linear(10, 1)

    batches = _shuffled_batches(x, y, 64, 100, seed + 1)
    _check_suggestion(make_model, mse, x, y, batches, fusedlr.SGD, 1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logistic_regression_suggestion_trains(seed):
    """Logistic regression on 512 x 10 features with scales from 0.3 to 3 and an offset
    (so large lrs overshoot), labels drawn from the true model; minibatches of 64,
    fusedlr.SGD, sweep 1e-6..10 in 100 steps. Converging range from training (see
    _converging_range): about [0.056, 3.2] for these seeds ([0.01, 3.2] for seed 2)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 10, generator=g) * torch.logspace(-0.5, 0.5, 10) + 1.0
    y = (torch.rand(512, 1, generator=g) < torch.sigmoid(x @ torch.randn(10, 1, generator=g)))
    y = y.float()

    def make_model():
        torch.manual_seed(seed)
        return torch.nn.Linear(10, 1)

    batches = _shuffled_batches(x, y, 64, 100, seed + 1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    grid = GRID + [10 ** (k / 4) for k in range(5, 9)]  # up to 100: large lrs still train
    _check_suggestion(make_model, bce, x, y, batches, fusedlr.SGD, 1e-6, grid)


@pytest.mark.parametrize("seed", [0, 1])
def test_demo_mlp_suggestion_trains(seed):
    """The demo: its 64-128-128-10 MLP on scikit-learn digits, its batches (64), its
    optimizer (fusedlr.SGD, momentum 0.9, weight decay 5e-4), the CLI's sweep 1e-4..10 in
    100 steps (where the lagging EMA suggested 0.24, at the edge of divergence).
    Converging range from training (see _converging_range): [0.032, 0.18] for seed 0,
    [0.032, 0.32] for seed 1."""
    pytest.importorskip("sklearn")  # as tests/test_demo.py: the demo's data needs it
    from fusedlr import demo

    data = demo.load_digits_data(seed)
    batches = []
    for epoch in range(5):
        batches += list(demo.epoch_batches(data, epoch, seed))
    batches = batches[:100]
    factory = functools.partial(fusedlr.SGD, momentum=demo.MOMENTUM,
                                weight_decay=demo.WEIGHT_DECAY)
    r, _ = _check_suggestion(
        lambda: demo.make_model(seed), torch.nn.CrossEntropyLoss(), data.x_train,
        data.y_train, batches, factory, 1e-4, [10 ** (k / 4) for k in range(-12, 5)])
    assert r.stopped_early  # the sweep does run into divergence, and the suggestion is below


def _ls_minibatch(seed=0, start_lr=1e-6, end_lr=10.0, **kw):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 10, generator=g)
    y = x @ torch.randn(10, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
    torch.manual_seed(seed)
    return find_lr(torch.nn.Linear(10, 1), mse, _shuffled_batches(x, y, 64, 100, seed + 1),
                   fusedlr.SGD, start_lr=start_lr, end_lr=end_lr, **kw)


def _fastai_valley_bounds(losses):
    """fastai's valley loop (fastai.callback.schedule.valley), transcribed: the first
    end of a longest strictly decreasing subsequence and its length."""
    n = len(losses)
    max_end = 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
    return max_end, lds[max_end]


@pytest.mark.parametrize("seed", [0, 1])
def test_estimators_side_by_side(seed):
    r = _ls_minibatch(seed)
    skip, used = r.num_steps // 10, _usable(r)
    assert r.stopped_early and used < len(r.lrs)  # the divergence is left out
    sm = r.losses[skip:used]
    i_min = skip + min(range(len(sm)), key=sm.__getitem__)
    # minimum: a tenth of the lr at the minimum of the smoothed loss
    assert r.suggestions["minimum"] == r.lrs[i_min] / 10
    # valley: half way along fastai's longest valley (its start taken one step later)
    end, length = _fastai_valley_bounds(sm)
    start = end - length + 1
    third = (end - start) / 3
    assert r.suggestions["valley"] == r.lrs[skip + start + int(third) + int(third / 2)]
    # steep: on the descent before the minimum, where the smoothed curve falls (nearly)
    # as fast as anywhere on it
    j = r.lrs.index(r.suggestions["steep"])
    assert skip <= j <= i_min
    assert r.losses[j] < r.losses[skip] - 0.25 * (r.losses[skip] - r.losses[i_min])
    drop = [r.losses[k + 1] - r.losses[k - 1] for k in range(skip + 1, i_min)]
    assert r.losses[j + 1] - r.losses[j - 1] <= 0.8 * min(drop)
    # the method argument picks which one is suggested; the estimates do not change
    for method in ("minimum", "valley", "steep"):
        rm = _ls_minibatch(seed, method=method)
        assert rm.method == method and rm.suggestions == r.suggestions
        assert rm.suggested_lr == r.suggestions[method]
        assert rm.lrs == r.lrs and rm.raw_losses == r.raw_losses


def test_flat_noisy_sweep_suggests_nothing():
    # lrs of 1e-10 .. 1e-7 do not train in 100 steps: the loss is flat plus batch noise,
    # and no estimator may turn a noise wiggle into a suggestion.
    r = _ls_minibatch(0, start_lr=1e-10, end_lr=1e-7)
    assert not r.stopped_early
    assert max(r.raw_losses) > 1.5 * min(r.raw_losses)  # the batch noise is large
    assert r.suggested_lr is None
    assert r.suggestions == {"steep": None, "minimum": None, "valley": None}
    r.plot()  # still draws


def test_plot(tmp_path):
    x, y, _ = _regression()
    torch.manual_seed(0)
    # diverge_factor 1e4: the sweep runs on into a spike of ~1e5
    r = find_lr(torch.nn.Linear(8, 1), mse, [(x, y)], fusedlr.SGD, start_lr=1e-4,
                end_lr=1e3, method="minimum", diverge_factor=1e4)
    assert r.stopped_early and all(v is not None for v in r.suggestions.values())
    fig = r.plot(tmp_path / "lr_find.png")
    assert (tmp_path / "lr_find.png").exists()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.lines[0].get_ydata().tolist() == r.raw_losses
    assert ax.lines[1].get_ydata().tolist() == r.losses
    for name, lr in r.suggestions.items():  # every estimator: a marker and a vertical line
        assert any(len(line.get_xdata()) == 1 and line.get_xdata()[0] == lr
                   for line in ax.lines), name
        (vline,) = [line for line in ax.lines if list(line.get_xdata()) == [lr, lr]]
        assert vline.get_linestyle() == ("-" if name == "minimum" else "--"), name
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "(suggested)" in legend and "minimum/10" in legend and "valley" in legend
    # the y range shows the sweep, not the divergence spike
    used = _usable(r, 1e4)
    assert max(r.raw_losses) > 1e3 * max(r.losses[:used])
    i_min = min(range(used), key=r.losses.__getitem__)
    bottom, top = ax.get_ylim()
    assert bottom <= min(r.raw_losses[:used]) and bottom <= r.losses[i_min]
    assert top >= max(r.losses[: i_min + 1])
    assert top < max(v for v in r.raw_losses if math.isfinite(v)) / 10


@pytest.mark.parametrize("kwargs, exc", [
    ({"start_lr": 0.0}, ValueError), ({"end_lr": 1e-8}, ValueError), ({"num_steps": 1}, ValueError),
    ({"smooth": 0.98}, ValueError),  # an EMA weight (the old meaning) is refused, not misread
    ({"smooth": -0.01}, ValueError), ({"smooth": 0.51}, ValueError),
    ({"diverge_factor": 1.0}, ValueError), ({"method": "slide"}, ValueError),
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
