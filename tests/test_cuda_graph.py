"""A whole training step (forward, backward, opt.step(), plateau.step(loss)) captured in one
CUDA graph and replayed 100 times with a cosine schedule and a plateau, against eager.

Needs a CUDA device (skipped otherwise). The same harness also runs on the CPU with a stand-in
"graph" that re-runs the step function on replay (``test_harness_on_cpu``), so the test logic
itself (static inputs, warm-up, plateau fed a device tensor, the eager comparison) is checked by
CI even where no GPU exists; what only a GPU run proves is that capture and replay reproduce it.
"""

import contextlib
import copy

import pytest
import torch

import fusedlr
from fusedlr import schedules

WARMUP = 3
REPLAYS = 100
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _setup(device):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)
    ).to(device=device, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    n = WARMUP + REPLAYS
    xs = torch.randn(n, 8, 16, generator=g, dtype=torch.float64).to(device)
    ys = torch.randn(n, 8, 4, generator=g, dtype=torch.float64).to(device)
    return model, xs, ys


def _optimizer(model):
    sched = schedules.CosineAnnealingLR(40, eta_min=1e-4)  # a new lr at (almost) every step
    opt = fusedlr.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2, schedule=sched)
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=2, cooldown=1, factor=0.5, threshold=0.05)
    return opt, plateau


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _train_step(model, opt, plateau, x, y):
    loss = _loss(model, x, y)
    loss.backward()
    opt.step()
    plateau.step(loss.detach())  # a device tensor: nothing waits for the host
    return loss.detach()


class _CudaGraph:
    """torch.cuda.graph capture of fn(); replay() re-launches it."""

    def __init__(self, fn, reset):
        del reset  # replays overwrite the static grads that backward allocated during capture
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn()

    def replay(self):
        self.graph.replay()
        return self.out


class _Rerun:
    """CPU stand-in with the same interface: replay() runs fn() again, its output copied into
    the static output tensor as a graph replay would write it. Unlike a capture, construction
    runs fn() once (the first step)."""

    def __init__(self, fn, reset):
        self.fn, self.reset = fn, reset
        self.out = fn()

    def replay(self):
        self.reset()  # eager backward accumulates; a replayed backward overwrites
        self.out.copy_(self.fn())
        return self.out


def _side_stream(device):
    if torch.device(device).type == "cuda":
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        return s
    return None


def _run_captured(device, graph_cls):
    model, xs, ys = _setup(device)
    eager_model = copy.deepcopy(model)
    opt, plateau = _optimizer(model)
    eager_opt, eager_plateau = _optimizer(eager_model)
    static_x, static_y = xs[0].clone(), ys[0].clone()

    # Warm-up (creates the optimizer state and the grads' autograd machinery), on a side stream
    # as the torch.cuda.graph documentation requires.
    s = _side_stream(device)
    with torch.cuda.stream(s) if s is not None else contextlib.nullcontext():
        for i in range(WARMUP):
            static_x.copy_(xs[i])
            static_y.copy_(ys[i])
            opt.zero_grad(set_to_none=True)
            _train_step(model, opt, plateau, static_x, static_y)
    if s is not None:
        torch.cuda.current_stream().wait_stream(s)
    for i in range(WARMUP):
        eager_opt.zero_grad(set_to_none=True)
        _train_step(eager_model, eager_opt, eager_plateau, xs[i], ys[i])

    # Capture: grads set to None so that backward allocates them from the graph's pool and the
    # replays write into those same static tensors (backward overwrites, no accumulation).
    # The static inputs already hold the first replayed batch, for the CPU stand-in, which runs
    # that step while "capturing" (a real capture records and does not run).
    static_x.copy_(xs[WARMUP])
    static_y.copy_(ys[WARMUP])
    opt.zero_grad(set_to_none=True)
    graph = graph_cls(lambda: _train_step(model, opt, plateau, static_x, static_y),
                      lambda: opt.zero_grad(set_to_none=True))
    captured_runs = 0 if graph_cls is _CudaGraph else 1
    lrs, scales = [], []
    for k in range(REPLAYS):
        i = WARMUP + k
        if k < captured_runs:  # the stand-in ran step i while "capturing"
            loss = graph.out
        else:
            static_x.copy_(xs[i])
            static_y.copy_(ys[i])
            loss = graph.replay()
        eager_opt.zero_grad(set_to_none=True)
        eager_loss = _train_step(eager_model, eager_opt, eager_plateau, xs[i], ys[i])
        torch.testing.assert_close(loss, eager_loss, rtol=1e-9, atol=1e-12)
        lr, eager_lr = float(opt.get_last_lr()[0]), float(eager_opt.get_last_lr()[0])
        assert lr == pytest.approx(eager_lr, rel=1e-12)
        lrs.append(lr)
        scales.append(float(next(iter(opt._devices.values())).lr_scale[0]))
    for p, q in zip(model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    assert int(opt.schedule_counter) == WARMUP + REPLAYS
    assert int(plateau.last_epoch) == WARMUP + REPLAYS
    assert len(set(lrs)) > REPLAYS // 2  # the schedule moved the lr under the replays
    assert min(scales) < 1.0  # the plateau reduced the lr inside the graph
    return opt, plateau, graph


@needs_cuda
def test_capture_replay_matches_eager():
    _run_captured("cuda", _CudaGraph)


@needs_cuda
def test_load_state_dict_keeps_the_graph_valid():
    opt, plateau, graph = _run_captured("cuda", _CudaGraph)
    ds = next(iter(opt._devices.values()))
    ptrs = [ds.counter.data_ptr(), ds.lr_scale.data_ptr(), ds.group_lr.data_ptr(),
            plateau.best.data_ptr()]
    state_ptrs = [t.data_ptr() for st in opt.state.values() for t in st.values()
                  if isinstance(t, torch.Tensor)]
    saved_opt, saved_plateau = opt.state_dict(), plateau.state_dict()
    opt.load_state_dict(saved_opt)
    plateau.load_state_dict(saved_plateau)
    assert [ds.counter.data_ptr(), ds.lr_scale.data_ptr(), ds.group_lr.data_ptr(),
            plateau.best.data_ptr()] == ptrs
    assert [t.data_ptr() for st in opt.state.values() for t in st.values()
            if isinstance(t, torch.Tensor)] == state_ptrs
    before = int(opt.schedule_counter)
    graph.replay()
    torch.cuda.synchronize()
    assert int(opt.schedule_counter) == before + 1


def test_harness_on_cpu():
    """The harness above, with re-execution instead of capture: checks the test's own logic."""
    _run_captured("cpu", _Rerun)


def test_load_state_dict_keeps_tensor_identity_on_cpu():
    model, xs, ys = _setup("cpu")
    opt, plateau = _optimizer(model)
    for i in range(3):
        opt.zero_grad()
        _train_step(model, opt, plateau, xs[i], ys[i])
    ds = next(iter(opt._devices.values()))
    ids = [id(ds.counter), id(ds.lr_scale), id(ds.group_lr)]
    state = {(id(p), k): t for p, st in opt.state.items() for k, t in st.items()
             if isinstance(t, torch.Tensor)}
    saved = copy.deepcopy(opt.state_dict())
    for i in range(3, 6):
        opt.zero_grad()
        _train_step(model, opt, plateau, xs[i], ys[i])
    opt.load_state_dict(saved)
    assert [id(ds.counter), id(ds.lr_scale), id(ds.group_lr)] == ids
    assert next(iter(opt._devices.values())) is ds
    for p, st in opt.state.items():
        for k, t in st.items():
            if isinstance(t, torch.Tensor):
                assert state[(id(p), k)] is t  # the same tensor object, values reloaded
    assert int(opt.schedule_counter) == 3


def test_sgd_load_of_torch_format_keeps_step_tensors():
    """A torch-format SGD state (no 'step') makes the loader build new step tensors; the
    optimizer copies them into the ones a captured graph points at."""
    model, xs, ys = _setup("cpu")
    opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for i in range(2):
        opt.zero_grad()
        _loss(model, xs[i], ys[i]).backward()
        opt.step()
    steps = {p: opt.state[p]["step"] for p in model.parameters()}
    bufs = {p: opt.state[p]["momentum_buffer"] for p in model.parameters()}
    saved = copy.deepcopy(opt.state_dict())
    for st in saved["state"].values():
        st.pop("step")
        st["momentum_buffer"].mul_(2.0)
    opt.load_state_dict(saved)
    for p in model.parameters():
        assert opt.state[p]["step"] is steps[p] and float(steps[p]) == 1.0
        assert opt.state[p]["momentum_buffer"] is bufs[p]
    assert all(torch.equal(bufs[p], saved["state"][i]["momentum_buffer"])
               for i, p in enumerate(model.parameters()))
