"""torch.compile(fullgraph=True) of opt.step() and of a whole training step, on the CPU, and
torch.library.opcheck of every fusedlr op.

The lr lives in a device tensor, so a changing schedule (or plateau factor) must not recompile.
Compiled graphs are counted by dynamo (``counters["stats"]["unique_graphs"]``; a restart of the
analysis within one compile is not a recompile) and by a backend wrapped around aot_eager
(which runs the fake kernels and functionalization, as inductor does, without C++ codegen),
which must not be called again after the first compiled call. One test uses inductor.
"""

import copy

import pytest
import torch

import fusedlr
from fusedlr import schedules

STEPS = 20


class CountingBackend:
    def __init__(self, inner="aot_eager"):
        self.inner = torch._dynamo.lookup_backend(inner)
        self.calls = 0

    def __call__(self, gm, example_inputs):
        self.calls += 1
        return self.inner(gm, example_inputs)


def _graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))


def _make(kind, params):
    sched = schedules.CosineAnnealingLR(25, eta_min=1e-4)  # a new lr at every step
    if kind == "SGD":
        return fusedlr.SGD(params, lr=0.1, momentum=0.9, nesterov=True, schedule=sched)
    if kind == "Adam":
        return fusedlr.Adam(params, lr=0.01, amsgrad=True, schedule=sched)
    return fusedlr.AdamW(params, lr=0.01, weight_decay=0.1, schedule=sched)


def _batches():
    g = torch.Generator().manual_seed(2)
    return [torch.randn(4, 5, generator=g) for _ in range(STEPS)]


def _grads(model, x):
    model(x).square().mean().backward()


KINDS = ["SGD", "Adam", "AdamW"]


@pytest.mark.parametrize("kind", KINDS)
def test_step_fullgraph_no_recompile(kind):
    eager_model = _model()
    comp_model = copy.deepcopy(eager_model)
    eager = _make(kind, eager_model.parameters())
    comp = _make(kind, comp_model.parameters())
    backend = CountingBackend()
    step = torch.compile(comp.step, fullgraph=True, backend=backend)
    lrs = []
    for i, x in enumerate(_batches()):
        for m, o in ((eager_model, eager), (comp_model, comp)):
            o.zero_grad()
            _grads(m, x)
        eager.step()
        if i == 0:
            comp.step()  # warm-up: creates the state (as a CUDA graph capture needs too)
        else:
            step()
        if i == 1:
            calls = backend.calls
        lrs.append(float(comp.get_last_lr()[0]))
        for p, q in zip(eager_model.parameters(), comp_model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert len(set(lrs)) == STEPS  # the lr really changed at every step
    assert _graphs() == 1 and backend.calls == calls


def test_step_without_warm_up_compiles_at_most_twice():
    """Without a warm-up the first traced step creates the state: one recompile, then none."""
    model = _model()
    opt = _make("Adam", model.parameters())
    backend = CountingBackend()
    step = torch.compile(opt.step, fullgraph=True, backend=backend)
    for x in _batches():
        opt.zero_grad()
        _grads(model, x)
        step()
    assert _graphs() <= 2


def _train_step_fn(model, opt):
    def train_step(x):
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        return loss.detach()

    return train_step


@pytest.mark.parametrize("kind", KINDS)
def test_whole_train_step_fullgraph(kind):
    eager_model = _model()
    comp_model = copy.deepcopy(eager_model)
    eager = _make(kind, eager_model.parameters())
    comp = _make(kind, comp_model.parameters())
    plateau_e = fusedlr.ReduceLROnPlateau(eager, patience=1, factor=0.5)
    plateau_c = fusedlr.ReduceLROnPlateau(comp, patience=1, factor=0.5)
    backend = CountingBackend()
    eager_step = _train_step_fn(eager_model, eager)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        comp_step = torch.compile(_train_step_fn(comp_model, comp), fullgraph=True,
                                  backend=backend)
        for i, x in enumerate(_batches()):
            eager.zero_grad()  # zero_grad stays outside: dynamo skips Optimizer.zero_grad
            comp.zero_grad()
            le = eager_step(x)
            lc = comp_step(x) if i else _train_step_fn(comp_model, comp)(x)
            if i == 1:
                calls = backend.calls
            torch.testing.assert_close(le, lc, rtol=1e-6, atol=1e-7)
            metric = torch.tensor(float(i % 3))  # plateaus, so the factor changes too
            plateau_e.step(metric)
            plateau_c.step(metric)
    for p, q in zip(eager_model.parameters(), comp_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert float(comp.get_last_lr()[0]) == float(eager.get_last_lr()[0])
    assert float(next(iter(comp._devices.values())).lr_scale[0]) < 1.0  # the plateau acted
    assert _graphs() == 1 and backend.calls == calls


def test_plateau_step_fullgraph():
    opt = _make("SGD", _model().parameters())
    ref_opt = _make("SGD", _model().parameters())
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=0, cooldown=1, factor=0.5)
    ref = fusedlr.ReduceLROnPlateau(ref_opt, patience=0, cooldown=1, factor=0.5)
    backend = CountingBackend()
    step = torch.compile(plateau.step, fullgraph=True, backend=backend)
    for i in range(STEPS):
        m = torch.tensor([3.0, 2.0, 2.0, 2.5][i % 4])
        step(m)
        ref.step(m)
        if i == 0:
            calls = backend.calls
        assert [float(x) for x in plateau.get_last_lr()] == [float(x) for x in ref.get_last_lr()]
    assert _graphs() == 1 and backend.calls == calls
    assert float(next(iter(opt._devices.values())).lr_scale[0]) < 1.0


def test_step_inductor():
    model = _model()
    eager_model = copy.deepcopy(model)
    opt = _make("AdamW", model.parameters())
    eager = _make("AdamW", eager_model.parameters())
    step = torch.compile(opt.step, fullgraph=True)  # default backend: inductor
    for i, x in enumerate(_batches()[:6]):
        for m, o in ((model, opt), (eager_model, eager)):
            o.zero_grad()
            _grads(m, x)
        eager.step()
        opt.step() if i == 0 else step()
    for p, q in zip(model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# -- opcheck ---------------------------------------------------------------------------------------
def _bucket_args(opt):
    p = next(iter(opt._buckets))
    call = p.calls[None]
    ds = opt._devices[p.device]
    grads = [q.grad for q in call.params]
    return call, ds, grads


def _optimizer_with_state(cls, **kw):
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(9)]
    opt = cls(params, schedule=schedules.LinearLR(0.5, 1.0, 4), **kw)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()  # creates the state and caches the op arguments
    return opt


def _eval_schedule_samples():
    opt = _optimizer_with_state(fusedlr.SGD, lr=0.1)
    ds = next(iter(opt._devices.values()))
    return [(ds.program, ds.hparams, ds.lr_scale, ds.counter, torch.empty_like(ds.group_lr))]


def _amp_variants(args_without_amp):
    scale = torch.tensor([4.0])
    return [
        (*args_without_amp, None, None),
        (*args_without_amp, scale, torch.tensor([0.0])),
        (*args_without_amp, scale, torch.tensor([1.0])),
    ]


def _sgd_update_samples():
    opt = _optimizer_with_state(fusedlr.SGD, lr=0.1, momentum=0.9)
    call, ds, grads = _bucket_args(opt)
    base = (call.params, grads, call.lists[0], call.steps, call.meta, ds.hparams, ds.group_lr)
    return _amp_variants(base)


def _adam_update_samples():
    out = []
    for amsgrad in (False, True):
        opt = _optimizer_with_state(fusedlr.AdamW, lr=0.01, amsgrad=amsgrad)
        call, ds, grads = _bucket_args(opt)
        base = (call.params, grads, *call.lists, call.steps, call.meta, ds.hparams, ds.group_lr)
        out += _amp_variants(base)
    return out


def _master_args(cls, **kw):
    """A master_weights optimizer on bfloat16 params after one step: its one-pass call."""
    torch.manual_seed(0)
    params = [torch.randn(5, 3).bfloat16(), torch.randn(9).bfloat16()]
    opt = cls(params, schedule=schedules.LinearLR(0.5, 1.0, 4), master_weights=True, **kw)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    bucket = opt._buckets[0]
    call = bucket.calls[None]
    assert call.one_pass
    return call, opt._devices[bucket.device], [q.grad for q in call.sources]


def _sgd_update_master_samples():
    call, ds, grads = _master_args(fusedlr.SGD, lr=0.1, momentum=0.9)
    base = (call.params, grads, call.lists[0], call.steps, call.sources, call.meta, ds.hparams,
            ds.group_lr)
    return _amp_variants(base)


def _adam_update_master_samples():
    call, ds, grads = _master_args(fusedlr.AdamW, lr=0.01, amsgrad=True)
    base = (call.params, grads, *call.lists, call.steps, call.sources, call.meta, ds.hparams,
            ds.group_lr)
    return _amp_variants(base)


def _schedule_values_samples():
    program, root = schedules.CosineAnnealingLR(5).program()
    return [(program, root, 0.1, 0, 7), (program, root, 1.0, 3, 0)]


def _emulate_sgd_samples():
    # (max_tensors_per_launch, threads_per_block, max_blocks_per_launch): a split plan.
    return [(*args, 1, 64, 1) for args in _sgd_update_samples()]


def _emulate_adam_samples():
    return [(*args, 1, 64, 1) for args in _adam_update_samples()]


def _launch_plan_stats_samples():
    return [([1, 7, 4097, 65537], 4, 2, 1), ([2**31 + 7], 2, 0, 0)]


def _schedule_free_state(cls, **kw):
    """A schedule-free optimizer after two steps (float32 and float64 params, two groups)."""
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(9, dtype=torch.float64), torch.randn(7)]
    opt = cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}],
              schedule=schedules.LinearLR(0.5, 1.0, 4), **kw)
    opt.train()
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    ds = opt._devices[torch.device("cpu")]
    call = next(iter(opt._calls.values()))
    return opt, ds, call


def _schedule_free_prepare_samples():
    _, ds, _ = _schedule_free_state(fusedlr.AdamWScheduleFree, lr=0.01)
    return [(ds["program"], ds["hparams"], ds["state"].clone())]


def _schedule_free_update_samples():
    out = []
    for cls in (fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree):
        _, ds, (params, zs, vs, groups) = _schedule_free_state(cls, lr=0.01, weight_decay=0.01)
        grads = [p.grad for p in params]
        out.append((params, grads, zs, vs, groups, ds["program"], ds["hparams"],
                    ds["state"].clone()))
    return out


def _schedule_free_swap_samples():
    _, ds, (params, zs, _, groups) = _schedule_free_state(fusedlr.AdamWScheduleFree, lr=0.01)
    return [(params, zs, groups, ds["hparams"], flag) for flag in (False, True)]


def _emulate_schedule_free_samples():
    out = []
    for params, grads, zs, vs, groups, _, hparams, state in _schedule_free_update_samples():
        out.append((params, grads, zs, vs, groups, hparams, state, 0, 1, 64, 1))
    for params, zs, groups, hparams, to_train in _schedule_free_swap_samples():
        state = torch.zeros(hparams.shape[0], 8, dtype=torch.float64)
        out.append((params, [], zs, [], groups, hparams, state, 1 if to_train else 2, 2, 32, 0))
    return out


def _emulate_schedule_free_prepare_samples():
    return [(*args, 1) for args in _schedule_free_prepare_samples()]


def _grad_norms_samples():
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(n, generator=gen) for n in (1, 7, 4097)]
    return [(grads, 2.0, torch.zeros(3, dtype=torch.float64)),
            ([g.double() for g in grads], float("inf"), torch.zeros(3, dtype=torch.float64))]


SAMPLES = {
    "grad_norms_": _grad_norms_samples,
    "sgd_update_master_": _sgd_update_master_samples,
    "adam_update_master_": _adam_update_master_samples,
    "schedule_free_prepare_": _schedule_free_prepare_samples,
    "schedule_free_update_": _schedule_free_update_samples,
    "schedule_free_swap_": _schedule_free_swap_samples,
    "emulate_schedule_free_": _emulate_schedule_free_samples,
    "emulate_schedule_free_prepare_": _emulate_schedule_free_prepare_samples,
    "emulate_sgd_update_": _emulate_sgd_samples,
    "emulate_adam_update_": _emulate_adam_samples,
    "launch_plan_stats": _launch_plan_stats_samples,
    "eval_schedule_": _eval_schedule_samples,
    "sgd_update_": _sgd_update_samples,
    "adam_update_": _adam_update_samples,
    "schedule_values": _schedule_values_samples,
}


def _fusedlr_op_names():
    import fusedlr.emulate  # noqa: F401  (fake kernels of the CUDA-emulation ops)
    import fusedlr.ops  # noqa: F401  (loads the extension)

    names = set()
    for qualified in torch._C._dispatch_get_all_op_names():
        ns, _, name = qualified.partition("::")
        if ns == "fusedlr":
            names.add(name.split(".")[0])
    return sorted(names)


def test_every_op_has_samples():
    names = _fusedlr_op_names()
    assert names, "no torch.ops.fusedlr ops registered"
    missing = [n for n in names if n not in SAMPLES]
    assert not missing, f"ops without opcheck samples in tests/test_compile.py: {missing}"


# schedule_values returns NaN in the momentum column of schedules that impose no momentum, and
# opcheck's eager-vs-AOT comparison treats NaN != NaN: that one check is done below with
# equal_nan=True instead.
_NAN_OUTPUT = {"schedule_values": ("test_aot_dispatch_dynamic",)}


@pytest.mark.parametrize("name", _fusedlr_op_names())
def test_opcheck(name):
    op = getattr(torch.ops.fusedlr, name)
    samples = SAMPLES[name]()
    assert samples
    skip = _NAN_OUTPUT.get(name, ())
    utils = tuple(u for u in torch.library._OPCHECK_DEFAULT_UTILS if u not in skip)
    for args in samples:
        torch.library.opcheck(op, args, test_utils=utils)


def test_schedule_values_aot_dynamic_with_nan():
    op = torch.ops.fusedlr.schedule_values.default
    for program, root, base_lr, start, n in _schedule_values_samples():

        def f(prog, root=root, base_lr=base_lr, start=start, n=n):
            return op(prog, root, base_lr, start, n) * 1.0

        out = torch.compile(f, backend="aot_eager", dynamic=True, fullgraph=True)(program)
        torch.testing.assert_close(out, f(program), equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree],
                         ids=lambda c: c.__name__)
def test_schedule_free_step_fullgraph_no_recompile(cls):
    """The schedule-free step traces to one graph (scalars on the device: no recompile as the
    lr, c_t and the bias correction change) and matches eager steps bit for bit."""
    eager_model = _model()
    comp_model = copy.deepcopy(eager_model)
    kw = dict(lr=0.05, weight_decay=0.01, schedule=schedules.CosineAnnealingLR(25, 1e-4))
    eager = cls(eager_model.parameters(), **kw)
    comp = cls(comp_model.parameters(), **kw)
    eager.train()
    comp.train()
    backend = CountingBackend()
    step = torch.compile(comp.step, fullgraph=True, backend=backend)
    for i, x in enumerate(_batches()):
        for m, o in ((eager_model, eager), (comp_model, comp)):
            o.zero_grad()
            _grads(m, x)
        eager.step()
        if i == 0:
            comp.step()  # warm-up: creates z (and exp_avg_sq)
        else:
            step()
        if i == 1:
            calls = backend.calls
        for p, q in zip(eager_model.parameters(), comp_model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert _graphs() == 1 and backend.calls == calls
    assert int(comp.device_scalars()[0, 0]) == STEPS
