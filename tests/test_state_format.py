"""Backward compatibility of saved runs and of the program format.

``tests/data/format1_state_dict.pt`` was written by the code of commit 5e759ec (before the
issue-13 kinds and parameters; ``tests/data/make_format1_state_dict.py``): a fusedlr.SGD
state_dict with one param group per schedule kind that existed then, the lrs that code gave for
the next 12 steps, and each spec's packed program with its first 40 values. The current code
must load the state_dict and continue with exactly those lrs, rebuild every saved schedule
unchanged, and evaluate every old program to the values the old C++ gave (kinds are never
renumbered and an existing kind's parameters keep their meaning).
"""

from __future__ import annotations

import pathlib

import pytest
import torch

import fusedlr
from fusedlr import ops
from fusedlr.schedules import from_dict

DATA = pathlib.Path(__file__).parent / "data" / "format1_state_dict.pt"


@pytest.fixture(scope="module")
def saved():
    return torch.load(DATA, weights_only=True)


def _fresh(saved):
    groups = [{"params": [torch.zeros(3, dtype=torch.float64)], "lr": lr}
              for lr in saved["group_lrs"]]
    return fusedlr.SGD(groups, lr=0.1, momentum=0.9)


def test_old_state_dict_loads_and_continues_with_the_recorded_lrs(saved):
    opt = _fresh(saved)
    opt.load_state_dict(saved["state_dict"])
    for step, want in enumerate(saved["next_lrs"]):
        got = [float(x) for x in opt.get_last_lr()]
        assert got == pytest.approx(want, rel=1e-15, abs=0.0), step
        opt.step()


def test_old_schedules_rebuild_to_equal_specs_and_round_trip(saved):
    for group in saved["state_dict"]["param_groups"]:
        spec = from_dict(group["schedule"])
        again = from_dict(spec.to_dict())
        assert again == spec
        assert again.values(30, 0.1).tolist() == spec.values(30, 0.1).tolist()


def test_old_programs_evaluate_as_they_did(saved):
    for i, entry in enumerate(saved["programs"]):
        rows = ops.schedule_values(entry["program"], int(entry["root"]), 0.1, 0, 40)
        assert rows[:, 0].tolist() == entry["values"].tolist(), i


def test_new_programs_of_old_specs_evaluate_as_the_old_ones(saved):
    """The spec saved in group i, packed by today's code, gives the old program's values."""
    for group, entry in zip(saved["state_dict"]["param_groups"], saved["programs"], strict=True):
        spec = from_dict(group["schedule"])
        assert spec.values(40, 0.1).tolist() == entry["values"].tolist(), spec
