"""Bad and hostile input: a clear TypeError/ValueError/RuntimeError naming the argument, raised
before anything changes (params, per-param state and step counters, the schedule counter).

Hyperparameter messages follow torch's wording ("Invalid learning rate: -1.0") with the place
(optimizer, group) added; where torch also refuses an input, torch's exception type is asserted
too. Schedule specs are checked for every exported class (see ``VALID`` for the classes known
here; a class exported without an entry is reported as skipped, not silently ignored).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings

import pytest
import torch

import fusedlr
from fusedlr import schedules as sch
from fusedlr.schedules import _base

OPTS = {"SGD": fusedlr.SGD, "Adam": fusedlr.Adam, "AdamW": fusedlr.AdamW}
TORCH_OPTS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
NAN, INF = float("nan"), float("inf")


def _param(n=4, dtype=torch.float32):
    return torch.randn(n, dtype=dtype).requires_grad_()


# -- snapshots: everything a failed call must leave as it was --------------------------------
def snapshot(opt, groups=True):
    """Params, grads, per-param state (values and the dict's keys), groups, schedule counter."""
    params = [p for g in opt.param_groups for p in g["params"]]
    out = {
        "params": [p.detach().clone() for p in params],
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in params],
        "state": {
            i: {k: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
                for k, v in opt.state[p].items()}
            for i, p in enumerate(params) if p in opt.state
        },
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "n_params": [len(g["params"]) for g in opt.param_groups],
        "counter": opt.schedule_counter.clone(),
    }
    if groups:
        out["lr"] = [float(x) for x in opt.get_last_lr()]
    else:
        del out["groups"]
    return out


def _same(a, b):
    if isinstance(a, torch.Tensor) and a.is_sparse:
        a = a.to_dense()
    if isinstance(b, torch.Tensor) and b.is_sparse:
        b = b.to_dense()
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def assert_unchanged(before, opt):
    after = snapshot(opt, groups="groups" in before)
    for key in before:
        assert _same(before[key], after[key]), f"{key} changed by a failed call"


# -- hyperparameters ---------------------------------------------------------------------------
# (optimizer, kwargs, exception, message fragment). torch=True: torch refuses it too (same type).
HYPER = [
    ("SGD", dict(lr=-1.0), ValueError, "Invalid learning rate", True),
    ("SGD", dict(lr=NAN), ValueError, "Invalid learning rate", False),
    ("SGD", dict(lr=INF), ValueError, "Invalid learning rate", False),
    ("SGD", dict(lr=-INF), ValueError, "Invalid learning rate", True),
    ("Adam", dict(lr=-1e-3), ValueError, "Invalid learning rate", True),
    ("AdamW", dict(lr=NAN), ValueError, "Invalid learning rate", False),
    ("SGD", dict(lr="0.1"), TypeError, "lr must be a number", True),
    ("SGD", dict(lr=None), TypeError, "lr must be a number", True),
    ("SGD", dict(lr=True), TypeError, "lr must be a number", False),
    ("SGD", dict(lr=[0.1]), TypeError, "lr must be a number", True),
    ("Adam", dict(lr=torch.tensor(0.1)), TypeError, "pass schedule=", False),
    ("Adam", dict(lr=sch.StepLR(3)), TypeError, "pass it as schedule=", True),
    ("SGD", dict(lr=0.1, momentum=-0.5), ValueError, "Invalid momentum value", True),
    ("SGD", dict(lr=0.1, momentum=NAN), ValueError, "Invalid momentum value", False),
    ("SGD", dict(lr=0.1, momentum="0.9"), TypeError, "momentum must be a number", True),
    ("SGD", dict(lr=0.1, weight_decay=-1e-4), ValueError, "Invalid weight_decay value", True),
    ("SGD", dict(lr=0.1, weight_decay=NAN), ValueError, "Invalid weight_decay value", False),
    ("Adam", dict(weight_decay=-0.1), ValueError, "Invalid weight_decay value", True),
    ("AdamW", dict(weight_decay=INF), ValueError, "Invalid weight_decay value", False),
    ("SGD", dict(lr=0.1, dampening=NAN), ValueError, "Invalid dampening value", False),
    ("SGD", dict(lr=0.1, dampening=None), TypeError, "dampening must be a number", False),
    ("SGD", dict(lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires", True),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "Nesterov momentum requires", True),
    ("SGD", dict(lr=0.1, nesterov=1), TypeError, "nesterov must be a bool", False),
    ("SGD", dict(lr=0.1, maximize="yes"), TypeError, "maximize must be a bool", False),
    ("Adam", dict(eps=-1e-8), ValueError, "Invalid epsilon value", True),
    ("Adam", dict(eps=NAN), ValueError, "Invalid epsilon value", False),
    ("AdamW", dict(eps="1e-8"), TypeError, "eps must be a number", True),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError, "Invalid beta parameter at index 0", True),
    ("Adam", dict(betas=(-0.1, 0.999)), ValueError, "Invalid beta parameter at index 0", True),
    ("Adam", dict(betas=(0.9, 1.0)), ValueError, "Invalid beta parameter at index 1", True),
    ("AdamW", dict(betas=(0.9, 1.5)), ValueError, "Invalid beta parameter at index 1", True),
    ("Adam", dict(betas=(NAN, 0.999)), ValueError, "Invalid beta parameter at index 0", False),
    ("Adam", dict(betas=(0.9, NAN)), ValueError, "Invalid beta parameter at index 1", False),
    ("Adam", dict(betas=0.9), TypeError, "betas must be a pair", True),
    ("Adam", dict(betas=(0.9, 0.99, 0.999)), TypeError, "betas must be a pair", False),
    ("Adam", dict(betas=("0.9", 0.999)), TypeError, "betas[0] must be a number", True),
    ("Adam", dict(amsgrad=None), TypeError, "amsgrad must be a bool", False),
    ("SGD", dict(lr=0.1, schedule=0.1), TypeError, "a constant lr goes in lr=", False),
    ("SGD", dict(lr=0.1, schedule=lambda t: 0.5), TypeError, "LambdaLR", False),
    ("SGD", dict(lr=0.1, schedule="StepLR"), TypeError, "schedule must be a fusedlr", False),
    ("Adam", dict(schedule=torch.tensor(0.5)), TypeError, "a constant lr goes in lr=", False),
    ("Adam", dict(steps_per_epoch=0), ValueError, "steps_per_epoch must be >= 1", False),
    ("Adam", dict(steps_per_epoch=2.5), TypeError, "steps_per_epoch must be an integer", False),
    ("Adam", dict(steps_per_epoch=True), TypeError, "steps_per_epoch must be an integer", False),
    ("SGD", dict(lr=0.1, skip_schedule_on_inf="no"), TypeError, "skip_schedule_on_inf", False),
]


@pytest.mark.parametrize("name,kwargs,exc,fragment,torch_refuses", HYPER,
                         ids=[f"{h[0]}-{list(h[1].items())[-1]}"[:60] for h in HYPER])
def test_hyperparameter(name, kwargs, exc, fragment, torch_refuses):
    with pytest.raises(exc, match=_re(fragment)):
        OPTS[name]([_param()], **kwargs)
    if torch_refuses:  # torch refuses it as well, with the same exception type
        tkw = {k: v for k, v in kwargs.items() if k not in ("schedule", "steps_per_epoch")}
        with pytest.raises(exc):
            TORCH_OPTS[name]([_param()], **tkw)


def test_scheduler_object_as_schedule_is_explained():
    p = _param()
    tsched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([p], lr=0.1), 2)
    with pytest.raises(TypeError, match="fusedlr.schedules class of the same name"):
        fusedlr.SGD([p], lr=0.1, schedule=tsched)


def test_torch_message_shape():
    """The message is torch's with the place added: "Invalid learning rate (SGD defaults): -1.0"."""
    with pytest.raises(ValueError) as ours:
        fusedlr.SGD([_param()], lr=-1.0)
    with pytest.raises(ValueError) as theirs:
        torch.optim.SGD([_param()], lr=-1.0)
    assert str(ours.value) == "Invalid learning rate (SGD defaults): -1.0"
    assert str(theirs.value) == "Invalid learning rate: -1.0"


@pytest.mark.parametrize("name,kwargs,exc,fragment,_t", HYPER[:38],
                         ids=[f"{h[0]}-{list(h[1].items())[-1]}"[:60] for h in HYPER[:38]])
def test_bad_group_changes_nothing(name, kwargs, exc, fragment, _t):
    """The same values in add_param_group: refused, and the optimizer is as it was."""
    p, q = _param(), _param(3)
    opt = OPTS[name]([p], lr=0.01, schedule=sch.StepLR(2, 0.5))
    p.grad = torch.randn_like(p)
    opt.step()
    before = snapshot(opt)
    with pytest.raises(exc, match=_re(fragment)):
        opt.add_param_group({"params": [q], **kwargs})
    assert_unchanged(before, opt)


@pytest.mark.parametrize("key,value,exc", [
    ("lr", -1.0, ValueError), ("lr", NAN, ValueError), ("lr", "abc", TypeError),
    ("lr", None, TypeError), ("weight_decay", -1.0, ValueError), ("eps", NAN, ValueError),
    ("betas", (1.0, 0.9), ValueError), ("betas", None, TypeError), ("amsgrad", "x", TypeError),
    ("schedule", 0.5, TypeError), ("steps_per_epoch", 0, ValueError),
])
def test_mutated_group_refused_at_step(key, value, exc):
    """A group edited by hand after construction is validated at the next step, before any write."""
    p = _param()
    opt = fusedlr.Adam([p], lr=0.01, schedule=sch.ExponentialLR(0.9))
    p.grad = torch.randn_like(p)
    opt.step()
    opt.param_groups[0][key] = value
    before = snapshot_without_groups(opt)
    with pytest.raises(exc, match="param group 0"):
        opt.step()
    assert_unchanged(before, opt)


@pytest.mark.parametrize("key,value", [("momentum", -0.1), ("nesterov", True), ("momentum", "x"),
                                       ("dampening", INF)])
def test_mutated_sgd_group_refused_at_step(key, value):
    p = _param()
    opt = fusedlr.SGD([p], lr=0.01)
    p.grad = torch.randn_like(p)
    opt.step()
    opt.param_groups[0][key] = value
    before = snapshot_without_groups(opt)
    with pytest.raises((TypeError, ValueError), match="param group 0"):
        opt.step()
    assert_unchanged(before, opt)


def snapshot_without_groups(opt):
    """For a group edited into an invalid state: everything but the groups and the lrs."""
    return snapshot(opt, groups=False)


def _re(fragment: str) -> str:
    import re

    return re.escape(fragment)


# -- params ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPTS))
def test_empty_parameter_list(name):
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        OPTS[name]([])
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        TORCH_OPTS[name]([])


@pytest.mark.parametrize("name", list(OPTS))
def test_same_tensor_in_two_groups(name):
    p = _param()
    msg = "some parameters appear in more than one parameter group"
    with pytest.raises(ValueError, match=msg):
        OPTS[name]([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match=msg):
        TORCH_OPTS[name]([{"params": [p]}, {"params": [p]}], lr=0.1)
    opt = OPTS[name]([p], lr=0.1)
    before = snapshot(opt)
    with pytest.raises(ValueError, match=msg):
        opt.add_param_group({"params": [p]})
    assert_unchanged(before, opt)


def test_same_tensor_twice_in_one_group_refused():
    """torch warns (and updates the tensor twice per step); the fused kernel would update both
    entries concurrently, so fusedlr refuses it."""
    p = _param()
    with pytest.raises(ValueError, match=r"same tensor twice \(params 0 and 2\)"):
        fusedlr.Adam([p, _param(), p])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        torch.optim.Adam([p, p])
    assert any("duplicate parameters" in str(x.message) for x in w)


@pytest.mark.parametrize("name", list(OPTS))
def test_non_leaf(name):
    leaf = _param()
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        OPTS[name]([leaf * 2])
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        TORCH_OPTS[name]([leaf * 2])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool,
                                   torch.complex64])
def test_unsupported_param_dtype(dtype):
    p = torch.zeros(3, dtype=dtype)
    with pytest.raises(TypeError, match=f"param 1 of param group 0: .*got {dtype}"):
        fusedlr.SGD([_param(), p], lr=0.1)


@pytest.mark.parametrize("bad,exc,fragment", [
    (lambda: [1.0, 2.0], TypeError, "optimizer can only optimize Tensors"),
    (lambda: [torch.zeros(3).to_sparse().requires_grad_()], TypeError, "sparse params"),
    (lambda: [torch.zeros(1).expand(5).requires_grad_()], ValueError, "share one memory location"),
    (lambda: [{"params": {_param()}}], TypeError, "ordered collections"),
    (lambda: _param(), TypeError, "params argument given to the optimizer should be an iterable"),
    (lambda: ["x"], TypeError, "optimizer can only optimize Tensors"),
    (lambda: [{"params": [_param()], "lr": sch.StepLR(2)}], TypeError, "schedule="),
])
def test_bad_params(bad, exc, fragment):
    with pytest.raises(exc, match=_re(fragment)):
        fusedlr.Adam(bad())


# -- grads -----------------------------------------------------------------------------------------
def _mismatch(kind, p):
    if kind == "shape":
        p.grad.data = torch.ones(p.numel() + 1, dtype=p.dtype)
    elif kind == "shape-same-numel":
        p.grad.data = torch.ones(1, p.numel(), dtype=p.dtype)
    elif kind == "dtype":
        p.grad.data = torch.ones(p.shape, dtype=torch.float64)
    elif kind == "sparse":
        p.grad = torch.ones(p.shape, dtype=p.dtype).to_sparse()
    elif kind == "param-resized":  # model surgery: the param and grad change size, state stays
        p.data = torch.ones(p.numel() + 2, dtype=p.dtype)
        p.grad = torch.ones_like(p)
    else:
        raise AssertionError(kind)


OPT_CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.1, weight_decay=0.1)),
]


@pytest.mark.parametrize("kind", ["shape", "shape-same-numel", "dtype", "sparse", "param-resized"])
@pytest.mark.parametrize("warm", [False, True], ids=["first-step", "later-step"])
@pytest.mark.parametrize("layout", ["one-bucket", "two-buckets"])
@pytest.mark.parametrize("name,kwargs", OPT_CONFIGS, ids=[f"{n}{k}" for n, k in OPT_CONFIGS])
def test_bad_grad_changes_nothing(name, kwargs, kind, warm, layout):
    """A grad that does not fit its param: a clear error naming it and no change at all."""
    dt2 = torch.float64 if layout == "two-buckets" else torch.float32
    params = [_param(5), _param(7, dt2), _param(3)]
    opt = OPTS[name]([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], **kwargs,
                     schedule=sch.StepLR(1, 0.5))
    for p in params:
        p.grad = torch.randn_like(p)
    if warm:
        opt.step()
        opt.step()
    if kind == "param-resized" and not warm:
        pytest.skip("without state a resized param is just a new param")
    _mismatch(kind, params[2])
    if kind == "param-resized" and kwargs == dict(lr=0.1):
        # plain SGD keeps no per-element state: a resized param just works, as in torch
        expected = params[2].detach() - 0.01 * 0.25 * params[2].grad
        opt.step()
        torch.testing.assert_close(params[2].detach(), expected)
        return
    before = snapshot(opt)
    with pytest.raises(RuntimeError, match=r"grad|sparse|elements") as info:
        opt.step()
    assert "sparse" in str(info.value) if kind == "sparse" else True
    assert_unchanged(before, opt)


def test_exception_in_closure_changes_nothing():
    p = _param()
    opt = fusedlr.Adam([p], lr=0.1, schedule=sch.ExponentialLR(0.5))
    p.grad = torch.randn_like(p)
    opt.step()

    def closure():
        opt.zero_grad(set_to_none=False)
        raise KeyError("data loader died")

    p.grad = torch.randn_like(p)
    before = snapshot(opt)
    with pytest.raises(KeyError, match="data loader died"):
        opt.step(closure)
    before["grads"] = [torch.zeros_like(p)]  # the closure zeroed the grad before raising
    assert_unchanged(before, opt)


def test_closure_raising_on_first_step_creates_no_state():
    p = _param()
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9)

    def closure():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    assert len(opt.state) == 0 and int(opt.schedule_counter) == 0


# -- schedules -------------------------------------------------------------------------------------
# A valid example per exported class (kwargs); bad values are derived from these.
VALID = {
    "StepLR": dict(step_size=3, gamma=0.5),
    "MultiStepLR": dict(milestones=[2, 5], gamma=0.5),
    "ConstantLR": dict(factor=0.5, total_iters=3),
    "LinearLR": dict(start_factor=0.25, end_factor=1.0, total_iters=4),
    "ExponentialLR": dict(gamma=0.9),
    "PolynomialLR": dict(total_iters=5, power=2.0),
    "CosineAnnealingLR": dict(T_max=5, eta_min=0.01),
    "NoamDecay": dict(d_model=16, warmup_steps=4),
    "LambdaLR": dict(lr_lambda=lambda t: 1.0 / (t + 1), total_steps=6),
    "MultiplicativeLR": dict(lr_lambda=lambda t: 0.9, total_steps=6),
    "SequentialLR": dict(schedules=[sch.ConstantLR(0.5, 2), sch.ExponentialLR(0.9)],
                         milestones=[2]),
    "ChainedScheduler": dict(schedules=[sch.ConstantLR(0.5, 2), sch.ExponentialLR(0.9)]),
    "CosineAnnealingWarmRestarts": dict(T_0=4, T_mult=2, eta_min=0.01),
    "CosineDecay": dict(decay_steps=8, alpha=0.1, exponent=1.5),
    "CosineDecayRestarts": dict(first_decay_steps=4, t_mul=2.0, m_mul=0.9, alpha=0.0),
    "CyclicLR": dict(base_lr=0.01, max_lr=0.1, step_size_up=3, step_size_down=2,
                     mode="exp_range", gamma=0.9, base_momentum=0.8, max_momentum=0.9),
    "ExponentialDecay": dict(decay_steps=3, decay_rate=0.5, staircase=True, transition_begin=2,
                             end_value=0.01),
    "InverseSqrt": dict(warmup_steps=4, timescale=2),
    "InverseTimeDecay": dict(decay_steps=3, decay_rate=0.5),
    "LinearCosineDecay": dict(decay_steps=8, num_periods=0.5, alpha=0.0, beta=0.001),
    "LinearWarmup": dict(schedule=sch.ExponentialLR(0.9), warmup_steps=3, start_lr=0.0,
                         end_lr=0.1),
    "NaturalExpDecay": dict(decay_steps=3, decay_rate=0.5),
    "NoisyLinearCosineDecay": dict(decay_steps=8, initial_variance=1.0, variance_decay=0.55,
                                   seed=3),
    "OneCycleLR": dict(max_lr=0.1, total_steps=10, pct_start=0.3),
    "PiecewiseConstant": dict(boundaries=[2, 5], values=[1.0, 0.5, 0.1]),
    "PolynomialDecay": dict(decay_steps=6, end_learning_rate=0.001, power=2.0, cycle=True),
    "WarmupCosine": dict(warmup_steps=2, total_steps=8, end_factor=0.1, exponent=0.5),
    "WarmupStableDecay": dict(warmup_steps=2, stable_steps=3, decay_steps=4, min_lr_ratio=0.1,
                              num_cycles=0.5),
    "SWALR": dict(swa_lr=0.01, anneal_epochs=3, anneal_strategy="linear"),
    "RelativeWarmup": dict(schedule=sch.ExponentialLR(0.9), warmup_steps=3, prefix=True),
    "JoinSchedules": dict(schedules=[sch.ConstantLR(0.5, 2), sch.ExponentialLR(0.9)],
                          boundaries=[2]),
    "PiecewiseInterpolate": dict(interpolate_type="linear", boundaries_and_scales={2: 0.5},
                                 init_value=0.1),
    "LinearOneCycle": dict(transition_steps=10, peak_value=0.1, pct_start=0.3, pct_final=0.8,
                           div_factor=25.0, final_div_factor=100.0),
    "LinearWithWarmup": dict(warmup_steps=2, total_steps=10),
    "CosineWithWarmup": dict(warmup_steps=2, total_steps=10, num_cycles=0.5, min_lr_rate=0.1),
    "CosineWithHardRestarts": dict(warmup_steps=2, total_steps=10, num_cycles=2),
    "PolynomialWithWarmup": dict(warmup_steps=2, total_steps=10, lr_init=0.1, lr_end=0.001,
                                 power=2.0),
    "CosineWarmupWithMinLR": dict(warmup_steps=2, total_steps=10, num_cycles=0.5,
                                  min_lr_rate=0.1, warmup_lr_rate=0.2),
}

# Per known class and argument, values that must be refused (beyond the generic ones below).
BAD_ARGS = {
    "StepLR": {"step_size": [0, -1, 2.5, "3"], "gamma": [0.0, -0.5, "0.1"]},
    "MultiStepLR": {"milestones": [[-1], [5, -2], [1.5], 3, [None]], "gamma": [0.0, -1.0]},
    "ConstantLR": {"factor": [-0.1, 1.5], "total_iters": [-1, 2.5]},
    "LinearLR": {"start_factor": [0.0, -0.5, 1.5], "end_factor": [-0.1, 1.1],
                 "total_iters": [0, -3]},
    "ExponentialLR": {"gamma": [0.0, -0.9]},
    "PolynomialLR": {"total_iters": [0, -1], "power": [-1.0]},
    "CosineAnnealingLR": {"T_max": [0, -5, 2.5], "eta_min": [-0.1]},
    "NoamDecay": {"d_model": [0, -4], "warmup_steps": [0, 1.5]},
    "LambdaLR": {"lr_lambda": [lambda t: float("nan"), lambda t: "x", lambda t: None, [], 0.5],
                 "total_steps": [0, -1, (1 << 22) + 1]},
    "MultiplicativeLR": {"lr_lambda": [lambda t: float("inf"), lambda t: [1.0]],
                         "total_steps": [0, 2.5]},
    "SequentialLR": {"schedules": [[], [0.5], [sch.StepLR(2), "x"]],
                     "milestones": [[], [2, 3], [0], [-2], ["2"]]},
    "ChainedScheduler": {"schedules": [[], [None], 5, [lambda t: 1.0]]},
    "CosineAnnealingWarmRestarts": {"T_0": [0, -1, 1.5], "T_mult": [0, 1.5],
                                    "eta_min": [-0.1]},
    "CosineDecay": {"decay_steps": [0, -1], "alpha": [-0.1, 1.5], "exponent": [0.0, -1.0]},
    "CosineDecayRestarts": {"first_decay_steps": [0], "t_mul": [0.0, -1.0],
                            "m_mul": [-0.5], "alpha": [-0.1]},
    "CyclicLR": {"base_lr": [-0.1, [], [0.1, NAN]], "max_lr": [-1.0], "step_size_up": [0, -2],
                 "step_size_down": [-1], "mode": ["linear", None], "gamma": [0.0, -0.5],
                 "scale_mode": ["epoch"], "base_momentum": [-0.1], "max_momentum": [-0.5]},
    "ExponentialDecay": {"decay_steps": [0, -3], "decay_rate": [0.0, -0.5],
                         "staircase": [None, 1], "transition_begin": [-1, 1.5],
                         "end_value": [-0.1]},
    "InverseSqrt": {"warmup_steps": [-1, 2.5], "timescale": [0, -2]},
    "InverseTimeDecay": {"decay_steps": [0], "decay_rate": [-0.5]},
    "LinearCosineDecay": {"decay_steps": [0], "num_periods": [-1.0], "alpha": [-0.5]},
    "LinearWarmup": {"schedule": [None, "x", lambda t: 1.0], "warmup_steps": [-1, 1.5],
                     "start_lr": [-0.1], "end_lr": [-0.1]},
    "NaturalExpDecay": {"decay_steps": [0, -1], "decay_rate": [-0.5]},
    "NoisyLinearCosineDecay": {"decay_steps": [0], "initial_variance": [-1.0],
                               "variance_decay": [-0.5], "seed": [1.5, "1"]},
    "OneCycleLR": {"max_lr": [-0.1, []], "total_steps": [0, -5, None],
                   "pct_start": [0.0, 1.0, 1.5, -0.1], "anneal_strategy": ["exp", None],
                   "div_factor": [0.0, -1.0], "final_div_factor": [0.0, -1.0],
                   "cycle_momentum": ["yes"]},
    "PiecewiseConstant": {"boundaries": [[5, 2], [1], [2, 2]],
                          "values": [[1.0, 0.5], [1.0, 0.5, 0.1, 0.0], [1.0, -0.5, 0.1], []]},
    "PolynomialDecay": {"decay_steps": [0, -1], "end_learning_rate": [-0.1], "power": [-1.0],
                        "cycle": ["no"]},
    "WarmupCosine": {"warmup_steps": [-1], "total_steps": [0, 1, -1], "end_factor": [-0.1],
                     "exponent": [0.0, -2.0]},
    "WarmupStableDecay": {"warmup_steps": [-1], "stable_steps": [-1], "decay_steps": [-1],
                          "min_lr_ratio": [-0.1, 1.5], "warmup_type": ["cubic", None],
                          "decay_type": ["quartic", None], "num_cycles": [-0.5, None]},
    "SWALR": {"swa_lr": [-0.1, [], [0.1, -0.2], None], "anneal_epochs": [-1, 2.5, None],
              "anneal_strategy": ["cosine", None]},
    "RelativeWarmup": {"schedule": [0.5, "x", lambda t: 1.0], "warmup_steps": [-1, 1.5, None],
                       "prefix": [1, None]},
    "JoinSchedules": {"schedules": [[], [0.5], [sch.StepLR(2), "x"]],
                      "boundaries": [[], [2, 3], [-1], ["2"], [1.5]]},
    "PiecewiseInterpolate": {"interpolate_type": ["cos", None],
                             "boundaries_and_scales": [{-1: 0.5}, {2: -0.5}, [(2, 0.5), (2, 0.1)],
                                                       [(1, 2, 3)], 5, {1.5: 0.5}],
                             "init_value": [-0.1]},
    "LinearOneCycle": {"transition_steps": [0, -3, 2.5], "peak_value": [-0.1, []],
                       "pct_start": [-0.1, 1.1], "pct_final": [-0.1, 1.5],
                       "div_factor": [0.0, -1.0], "final_div_factor": [0.0, -2.0]},
    "LinearWithWarmup": {"warmup_steps": [-1, 1.5, None], "total_steps": [-1, None]},
    "CosineWithWarmup": {"warmup_steps": [-1], "total_steps": [-1], "num_cycles": [-0.5, None],
                         "min_lr_rate": [-0.1, 1.5]},
    "CosineWithHardRestarts": {"warmup_steps": [-2], "total_steps": [2.5], "num_cycles": [-1]},
    "PolynomialWithWarmup": {"warmup_steps": [-1, 10], "total_steps": [-1, 2],
                             "lr_init": [0.0, -0.1, 0.001, None], "lr_end": [-0.1, 0.1, 0.2],
                             "power": [-1.0]},
    "CosineWarmupWithMinLR": {"warmup_steps": [-1], "total_steps": [-1],
                              "num_cycles": [-0.5], "min_lr_rate": [1.5, -0.1],
                              "warmup_lr_rate": [-0.1, 1.5]},
}
GENERIC_BAD = [NAN, INF, -INF, "x", object()]


def _exported():
    classes = {n: getattr(sch, n) for n in sch.__all__}
    return sorted(n for n, c in classes.items()
                  if isinstance(c, type) and issubclass(c, sch.Schedule) and c is not sch.Schedule)


def _valid_kwargs(name):
    if name in VALID:
        return dict(VALID[name])
    cls = getattr(sch, name)
    sig = inspect.signature(cls)
    if all(p.default is not p.empty for p in sig.parameters.values()):
        return {}
    pytest.skip(f"{name} is exported but has no valid example in tests/test_bad_input.py VALID")


@pytest.mark.parametrize("name", _exported())
def test_schedule_every_argument_generic_bad_values(name):
    """For every exported class and each argument: NaN, +-inf, a string, an object -> refused
    with TypeError/ValueError naming the class (and accepted specs still evaluate finitely)."""
    kwargs = _valid_kwargs(name)
    cls = getattr(sch, name)
    spec = cls(**kwargs)
    assert torch.isfinite(spec.values(12)).all()
    fields = cls._fields or tuple(kwargs)
    tried = 0
    for field in fields:
        for bad in GENERIC_BAD:
            with pytest.raises((TypeError, ValueError), match=name) as info:
                cls(**{**kwargs, field: bad})
            assert info.type in (TypeError, ValueError)
            tried += 1
    assert tried == len(fields) * len(GENERIC_BAD)


_BAD_CASES = [(n, f, v) for n, fs in BAD_ARGS.items() for f, vs in fs.items() for v in vs]


@pytest.mark.parametrize("name,field,bad", _BAD_CASES,
                         ids=[f"{n}-{f}-{i}" for i, (n, f, _) in enumerate(_BAD_CASES)])
def test_schedule_argument_out_of_range(name, field, bad):
    if not hasattr(sch, name):
        pytest.skip(f"{name} not exported")
    with pytest.raises((TypeError, ValueError), match=name):
        getattr(sch, name)(**{**VALID[name], field: bad})


def test_every_known_class_has_bad_cases():
    missing = [n for n in VALID if n not in BAD_ARGS]
    assert not missing


def test_sequential_count_mismatch_message():
    with pytest.raises(ValueError, match="expected 1 milestones for 2 schedules, got 2"):
        sch.SequentialLR([sch.StepLR(2), sch.StepLR(3)], [2, 4])
    with pytest.raises(ValueError, match="expected 2 milestones for 3 schedules, got 0"):
        sch.SequentialLR([sch.StepLR(2), sch.StepLR(3), sch.StepLR(4)], [])
    with pytest.raises(ValueError, match="strictly increasing"):
        sch.SequentialLR([sch.StepLR(2), sch.StepLR(3), sch.StepLR(4)], [4, 4])


def test_multistep_empty_milestones_allowed_as_torch():
    """torch's MultiStepLR accepts no milestones (a constant lr); so does fusedlr."""
    assert sch.MultiStepLR([], 0.5).values(4).tolist() == [1.0] * 4


def test_chain_depth_bound():
    spec = sch.StepLR(2)
    for _ in range(sch.MAX_CHAIN_DEPTH):
        spec = sch.ChainedScheduler([spec])
    assert torch.isfinite(sch.SequentialLR([sch.StepLR(2), spec], [3]).values(5)).all()
    with pytest.raises(ValueError, match="chains nest 9 deep; at most 8"):
        sch.ChainedScheduler([spec])


def test_table_too_long_refused_before_tabulating():
    calls = []
    with pytest.raises(ValueError, match="total_steps must be <= 4194304"):
        sch.LambdaLR(lambda t: calls.append(t) or 1.0, total_steps=(1 << 22) + 1)
    assert calls == []


def test_program_over_device_budget(monkeypatch):
    """Tables that together exceed the device budget: refused at construction, and a group
    whose schedule would overflow it is not added (the optimizer stays usable)."""
    monkeypatch.setattr(_base, "MAX_PROGRAM_DOUBLES", 4096)
    big = sch.LambdaLR([1.0] * 3000)
    with pytest.raises(ValueError, match="device budget"):
        fusedlr.SGD([{"params": [_param()], "schedule": big},
                     {"params": [_param()], "schedule": sch.LambdaLR([0.5] * 3000)}], lr=0.1)
    p, q = _param(), _param()
    opt = fusedlr.SGD([p], lr=0.1, schedule=big)
    p.grad = torch.randn_like(p)
    opt.step()
    before = snapshot(opt)
    with pytest.raises(ValueError, match="device budget"):
        opt.add_param_group({"params": [q], "schedule": sch.MultiplicativeLR([0.5] * 3000)})
    assert_unchanged(before, opt)
    opt.step()  # still usable
    assert int(opt.schedule_counter) == 2


def test_onecycle_past_total_steps():
    """torch raises past total_steps; fusedlr must raise or clamp, never extrapolate."""
    if not hasattr(sch, "OneCycleLR"):
        pytest.skip("OneCycleLR is not exported yet")
    spec = sch.OneCycleLR(max_lr=1.0, total_steps=10)
    try:
        vals = spec.values(16).tolist()
    except (ValueError, RuntimeError):
        return
    assert all(math.isfinite(v) for v in vals)
    # torch allows t = total_steps (its last value); past it fusedlr holds the final lr
    assert vals[11:] == [vals[9]] * 5, "extrapolates past the end"
    assert vals[9] == pytest.approx(1.0 / 25 / 1e4)


@pytest.mark.parametrize("bad", [{"name": "NoSuch", "args": {}}, {"name": "StepLR"}, 5,
                                 {"name": "StepLR", "args": {"step_size": -1}},
                                 {"name": "Kind", "args": {}}])
def test_from_dict_garbage(bad):
    with pytest.raises((TypeError, ValueError)):
        sch.from_dict(bad)


@pytest.mark.parametrize("call", [
    lambda s: s.values(-1), lambda s: s.values(2.5), lambda s: s.values(3, base_lr=NAN),
    lambda s: s.values(3, start=-2), lambda s: s.values("3"),
])
def test_values_arguments(call):
    with pytest.raises((TypeError, ValueError)):
        call(sch.StepLR(2))
