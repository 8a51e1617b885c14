"""torch.optim state_dicts into fusedlr, fusedlr.to_torch_state_dict back out, mid-run."""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import schedules as sch

# float64 params: both sides compute the same formulas, so trajectories agree to ~1e-12.
TOL = dict(rtol=1e-11, atol=1e-13)

CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.02, weight_decay=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), amsgrad=True)),
    ("AdamW", dict(lr=0.02, weight_decay=0.1)),
    ("AdamW", dict(lr=0.02, weight_decay=0.1, amsgrad=True, maximize=True)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


class Problem:
    """Params of a least-squares fit with grads from fixed batches: a real trajectory."""

    shapes = [(6, 4), (4,), (3, 6)]

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.init = [torch.randn(s, generator=g, dtype=torch.float64) for s in self.shapes]
        self.batches = [
            (torch.randn(8, 4, generator=g, dtype=torch.float64),
             torch.randn(8, 3, generator=g, dtype=torch.float64))
            for _ in range(40)
        ]

    def params(self):
        return [x.clone().requires_grad_() for x in self.init]

    def run(self, opt, params, steps):
        for k in steps:
            x, y = self.batches[k]
            w1, b1, w2 = params
            h = torch.tanh((x + b1) @ w1.T)  # (8, 6)
            loss = ((h @ w2.T) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def _assert_same(a, b, **tol):
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), **(tol or TOL))


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_torch_state_dict_into_fusedlr_continues_the_trajectory(name, kwargs):
    prob = Problem()
    tp = prob.params()
    topt = getattr(torch.optim, name)(tp, **kwargs, foreach=False)
    prob.run(topt, tp, range(7))
    sd = topt.state_dict()

    fp = [p.detach().clone().requires_grad_() for p in tp]
    fopt = getattr(fusedlr, name)(fp, lr=123.0)  # hyperparameters come from the state_dict
    fopt.load_state_dict(sd)
    assert fopt.param_groups[0]["lr"] == kwargs["lr"]
    prob.run(topt, tp, range(7, 15))
    prob.run(fopt, fp, range(7, 15))
    _assert_same(fp, tp)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_to_torch_state_dict_continues_in_torch(name, kwargs):
    prob = Problem()
    fp = prob.params()
    fopt = getattr(fusedlr, name)(fp, **kwargs)
    prob.run(fopt, fp, range(6))
    sd = fusedlr.to_torch_state_dict(fopt)

    tcls = getattr(torch.optim, name)
    tp = [p.detach().clone().requires_grad_() for p in fp]
    topt = tcls(tp, lr=123.0)
    assert set(sd["param_groups"][0]) == set(topt.state_dict()["param_groups"][0])
    topt.load_state_dict(sd)
    for st in sd["state"].values():
        if name != "SGD":
            assert st["step"].dtype == torch.float32 and st["step"].device.type == "cpu"
            assert ("max_exp_avg_sq" in st) == kwargs.get("amsgrad", False)
        else:
            assert (st["momentum_buffer"] is None) == ("momentum" not in kwargs)
    prob.run(topt, tp, range(6, 14))
    prob.run(fopt, fp, range(6, 14))
    _assert_same(fp, tp)


def test_to_torch_state_dict_is_a_copy_with_torch_defaults():
    p = torch.zeros(3, requires_grad=True)
    opt = fusedlr.AdamW([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    sd = fusedlr.to_torch_state_dict(opt)
    group = sd["param_groups"][0]
    assert group["foreach"] is None and group["fused"] is None
    assert group["capturable"] is False and group["differentiable"] is False
    assert group["decoupled_weight_decay"] is True
    assert "schedule" not in group and "steps_per_epoch" not in group
    sd["state"][0]["exp_avg"].add_(1.0)
    assert not torch.equal(sd["state"][0]["exp_avg"], opt.state[p]["exp_avg"])
    assert fusedlr.interop.torch_optimizer_class(opt) is torch.optim.AdamW
    with pytest.raises(TypeError, match="fusedlr optimizer"):
        fusedlr.to_torch_state_dict(torch.optim.SGD([p]))


def test_sgd_momentum_buffer_none_until_momentum_starts():
    """A momentum buffer that no update has initialised yet is saved as None (torch's form):
    torch then initialises it from the next grad, as fusedlr would."""
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = fusedlr.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = torch.ones(3)  # b never gets a grad
    opt.step()
    sd = fusedlr.to_torch_state_dict(opt)
    assert sd["state"][0]["momentum_buffer"] is not None
    assert 1 not in sd["state"] or sd["state"][1]["momentum_buffer"] is None
    # loaded from torch with an empty buffer: still not started
    opt2 = fusedlr.SGD([a, b], lr=0.1, momentum=0.9)
    opt2.load_state_dict({"state": {1: {"momentum_buffer": None}},
                          "param_groups": sd["param_groups"]})
    sd2 = fusedlr.to_torch_state_dict(opt2)
    assert sd2["state"].get(1, {"momentum_buffer": None})["momentum_buffer"] is None


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_to_torch_lr_is_the_next_scheduled_lr(name):
    prob = Problem()
    fp = prob.params()
    sched = sch.SequentialLR([sch.LinearLR(0.1, 1.0, 4), sch.CosineAnnealingLR(10)], [4])
    kwargs = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.02)
    fopt = getattr(fusedlr, name)([{"params": fp[:2]}, {"params": fp[2:], "lr": 0.01}],
                                  **kwargs, schedule=sched)
    prob.run(fopt, fp, range(5))
    factor = 1.0
    if hasattr(fusedlr, "ReduceLROnPlateau"):
        plateau = fusedlr.ReduceLROnPlateau(fopt, patience=0, factor=0.5)
        plateau.step(1.0)
        plateau.step(2.0)  # worse: halves every group's lr
        factor = 0.5
    sd = fusedlr.to_torch_state_dict(fopt)
    expected = [base * sched.values(6)[5].item() * factor for base in (kwargs["lr"], 0.01)]
    assert [g["lr"] for g in sd["param_groups"]] == pytest.approx(expected, rel=1e-12)
    # the next step agrees (one step: torch has no schedule to carry on with)
    tp = [p.detach().clone().requires_grad_() for p in fp]
    topt = getattr(torch.optim, name)([{"params": tp[:2]}, {"params": tp[2:]}])
    topt.load_state_dict(sd)
    prob.run(topt, tp, [5])
    prob.run(fopt, fp, [5])
    _assert_same(fp, tp)


@pytest.mark.parametrize("name,kwargs", [CASES[1], CASES[4], CASES[6]],
                         ids=["SGD", "Adam", "AdamW"])
def test_round_trip_torch_fusedlr_torch_mid_run(name, kwargs):
    prob = Problem()
    ref = prob.params()
    ropt = getattr(torch.optim, name)(ref, **kwargs, foreach=False)
    prob.run(ropt, ref, range(20))

    tp = prob.params()
    topt = getattr(torch.optim, name)(tp, **kwargs, foreach=False)
    prob.run(topt, tp, range(6))
    fp = [p.detach().clone().requires_grad_() for p in tp]
    fopt = getattr(fusedlr, name)(fp)
    fopt.load_state_dict(topt.state_dict())
    prob.run(fopt, fp, range(6, 13))
    tp2 = [p.detach().clone().requires_grad_() for p in fp]
    topt2 = getattr(torch.optim, name)(tp2)
    topt2.load_state_dict(fusedlr.to_torch_state_dict(fopt))
    prob.run(topt2, tp2, range(13, 20))
    _assert_same(tp2, ref)
    # and the state matches what torch would hold
    for p, q in zip(tp2, ref, strict=True):
        for k, v in ropt.state[q].items():
            w = topt2.state[p][k]
            if v is None:
                assert w is None
            else:
                torch.testing.assert_close(w, v, **TOL)


def test_low_precision_state_goes_to_torch_in_the_param_dtype():
    p = torch.randn(5, dtype=torch.bfloat16, requires_grad=True)
    opt = fusedlr.Adam([p], lr=0.01, master_weights=True)
    p.grad = torch.ones_like(p)
    opt.step()
    sd = fusedlr.to_torch_state_dict(opt)
    assert "master" not in sd["state"][0]
    q = p.detach().clone().requires_grad_()
    topt = torch.optim.Adam([q], fused=True)
    topt.load_state_dict(sd)
    assert topt.state[q]["exp_avg"].dtype == torch.bfloat16  # torch's convention on load
    q.grad = torch.ones_like(q)
    topt.step()


# -- refusing state_dicts of another type --------------------------------------------------------
def test_torch_state_dict_of_another_optimizer_type_is_refused():
    p = torch.zeros(3, requires_grad=True)
    for src, dst, match in [
        (torch.optim.SGD([p], lr=0.1), fusedlr.Adam([p]), "another optimizer type"),
        (torch.optim.Adam([p]), fusedlr.SGD([p], lr=0.1), "another optimizer type"),
        (torch.optim.AdamW([p]), fusedlr.Adam([p]), "load it into fusedlr.AdamW"),
        (torch.optim.Adam([p], weight_decay=0.1), fusedlr.AdamW([p]),
         "load it into fusedlr.Adam"),
    ]:
        before = [dict(g) for g in dst.param_groups]
        with pytest.raises(ValueError, match=match):
            dst.load_state_dict(src.state_dict())
        assert [dict(g) for g in dst.param_groups] == before
