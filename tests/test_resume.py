"""Exact resume in a fresh process, and checkpoints that must be refused without side effects."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

import fusedlr
from fusedlr import schedules as sch

sys.path.insert(0, os.path.dirname(__file__))
import _resume_worker as worker  # noqa: E402

N, M = 6, 7
CASES = [
    dict(opt="SGD", kwargs=dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
         schedule="warmup"),
    dict(opt="SGD", kwargs=dict(lr=0.05, momentum=0.9, dampening=0.1), schedule="restarts",
         plateau=True, steps_per_epoch=2),
    dict(opt="Adam", kwargs=dict(lr=0.01, amsgrad=True, weight_decay=1e-3), schedule="warmup",
         plateau=True),
    dict(opt="AdamW", kwargs=dict(lr=0.01, weight_decay=0.1), schedule="restarts",
         plateau=True),
    dict(opt="AdamW", kwargs=dict(lr=0.01), schedule="warmup", dtype="bfloat16",
         master_weights=True),
    dict(opt="Adam", kwargs=dict(lr=0.01), schedule="none", dtype="float64"),
]


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path):
    expected, cases = [], []
    for i, case in enumerate(CASES):
        model, opt, plateau = worker.build(case, seed=0)
        worker.train(model, opt, plateau, range(N))
        case = dict(case, n=N, m=M, checkpoint=str(tmp_path / f"ckpt{i}.pt"),
                    output=str(tmp_path / f"out{i}.pt"))
        torch.save(worker.checkpoint(model, opt, plateau), case["checkpoint"])
        cases.append(case)
        worker.train(model, opt, plateau, range(N, N + M))  # the uninterrupted run
        expected.append([p.detach().clone() for p in model.parameters()])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"threads": torch.get_num_threads(), "cases": cases}))
    proc = subprocess.run(
        [sys.executable, worker.__file__, str(spec)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for case, exp in zip(cases, expected, strict=True):
        got = torch.load(case["output"])
        for a, b in zip(got, exp, strict=True):
            assert a.dtype == b.dtype
            assert torch.equal(a, b), (case["opt"], case["schedule"], (a - b).abs().max())


def test_plateau_and_restarts_are_exercised():
    """The resume cases cross the warmup boundary and change the plateau factor on both sides."""
    case = dict(CASES[3], n=N, m=M)
    model, opt, plateau = worker.build(case, seed=0)
    scales = []
    for k in range(N + M):
        worker.train(model, opt, plateau, [k])
        scales.append(float(next(iter(opt._devices.values())).lr_scale[0]))
    if plateau is None:
        pytest.skip("fusedlr.ReduceLROnPlateau not available")
    assert len(set(scales[:N])) > 1 and len(set(scales[N:])) > 1, scales


# -- checkpoints that do not fit: a clear error, nothing changed ----------------------------------
def _trained(cls=fusedlr.Adam, shapes=((4, 3), (3,)), groups=1, **kwargs):
    params = [torch.randn(s, requires_grad=True) for s in shapes]
    if groups == 1:
        spec = [{"params": params}]
    else:
        spec = [{"params": params[:1]}, {"params": params[1:]}]
    opt = cls(spec, lr=0.1, schedule=sch.LinearLR(0.5, 1.0, 4), **kwargs)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    return params, opt


def _snapshot(params, opt):
    return (
        [p.detach().clone() for p in params],
        {id(p): {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                 for k, v in opt.state[p].items()} for p in params},
        opt.schedule_counter.clone(),
        [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        [next(iter(opt._devices.values())).lr_scale.clone()],
    )


def _assert_unchanged(before, after):
    (p0, s0, c0, g0, l0), (p1, s1, c1, g1, l1) = before, after
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))
    assert s0.keys() == s1.keys()
    for k in s0:
        assert s0[k].keys() == s1[k].keys()
        for key in s0[k]:
            a, b = s0[k][key], s1[k][key]
            assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(c0, c1) and g0 == g1 and torch.equal(l0[0], l1[0])


BAD = {
    "number of groups": (dict(groups=2), "param groups"),
    "shapes": (dict(shapes=((4, 2), (3,))), "shape"),
    "param count": (dict(shapes=((4, 3), (3,), (2,))), "params"),
    "optimizer type (SGD)": (dict(cls=fusedlr.SGD, momentum=0.9), "saved by SGD"),
}


@pytest.mark.parametrize("what", list(BAD))
def test_bad_checkpoint_fails_clearly_and_changes_nothing(what):
    make, match = BAD[what]
    _, other = _trained(**make)
    sd = other.state_dict()
    params, opt = _trained()
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    _assert_unchanged(before, _snapshot(params, opt))
    for p in params:  # and it still steps
        p.grad = torch.ones_like(p)
    opt.step()


def test_bad_checkpoint_of_another_type_without_fusedlr_entry():
    """A state_dict stripped of the 'fusedlr' entry is recognised by its group keys."""
    _, sgd = _trained(cls=fusedlr.SGD, momentum=0.9)
    sd = copy.deepcopy(sgd.state_dict())
    del sd["fusedlr"]
    params, opt = _trained()
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match="another optimizer type"):
        opt.load_state_dict(sd)
    _assert_unchanged(before, _snapshot(params, opt))


def test_bad_state_entry_deep_in_the_dict_changes_nothing():
    """The last param's state is wrong: the earlier ones must not have been loaded either."""
    _, good = _trained()
    sd = copy.deepcopy(good.state_dict())
    sd["state"][1]["exp_avg"] = torch.zeros(5)
    sd["param_groups"][0]["lr"] = 0.7
    params, opt = _trained()
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(sd)
    _assert_unchanged(before, _snapshot(params, opt))
