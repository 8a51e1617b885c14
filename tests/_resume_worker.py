"""Shared by tests/test_resume.py and its subprocess: build, train, checkpoint, resume.

Run as ``python tests/_resume_worker.py SPEC.json``: for every case in the spec, builds a fresh
model (other initial weights) and optimizer, loads the case's checkpoint with ``torch.load``,
trains the remaining steps and saves the final params to the case's output path.
"""

from __future__ import annotations

import json
import sys

import torch

import fusedlr
from fusedlr import schedules as sch


def make_schedule(kind: str):
    if kind == "none":
        return None
    if kind == "warmup":  # linear warmup into a cosine decay
        return sch.SequentialLR([sch.LinearLR(0.1, 1.0, 3), sch.CosineAnnealingLR(8, 1e-4)], [3])
    if kind == "restarts":
        if hasattr(sch, "CosineAnnealingWarmRestarts"):
            return sch.SequentialLR(
                [sch.LinearLR(0.1, 1.0, 2), sch.CosineAnnealingWarmRestarts(3, 2)], [2]
            )
        # TODO(issue 7): CosineAnnealingWarmRestarts not exported yet; a restart-free stand-in.
        return sch.SequentialLR([sch.LinearLR(0.1, 1.0, 2), sch.CosineAnnealingLR(4)], [2])
    raise ValueError(kind)


def plateau_class():
    return getattr(fusedlr, "ReduceLROnPlateau", None)


def build(case: dict, seed: int):
    torch.manual_seed(seed)
    dtype = getattr(torch, case.get("dtype", "float32"))
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2)
    ).to(dtype)
    params = list(model.parameters())
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": case["kwargs"]["lr"] / 2}]
    opt = getattr(fusedlr, case["opt"])(
        groups, **case["kwargs"], schedule=make_schedule(case["schedule"]),
        steps_per_epoch=case.get("steps_per_epoch", 1),
        master_weights=case.get("master_weights", False),
    )
    plateau = None
    if case.get("plateau") and plateau_class() is not None:
        plateau = plateau_class()(opt, patience=1, factor=0.5)
    return model, opt, plateau


def train(model, opt, plateau, steps) -> None:
    dtype = next(model.parameters()).dtype
    for k in steps:
        g = torch.Generator().manual_seed(1000 + k)
        x = torch.randn(16, 6, generator=g).to(dtype)
        y = torch.randn(16, 2, generator=g).to(dtype)
        opt.zero_grad()
        loss = (model(x) - y).float().pow(2).mean()
        loss.backward()
        opt.step()
        if plateau is not None:
            plateau.step(loss.detach() + (k % 3))  # bumpy: the plateau fires now and then


def checkpoint(model, opt, plateau) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "plateau": plateau.state_dict() if plateau is not None else None,
    }


def resume(case: dict) -> None:
    model, opt, plateau = build(case, seed=1)  # other weights: everything must come from disk
    ckpt = torch.load(case["checkpoint"], weights_only=False)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if plateau is not None:
        plateau.load_state_dict(ckpt["plateau"])
    train(model, opt, plateau, range(case["n"], case["n"] + case["m"]))
    torch.save([p.detach() for p in model.parameters()], case["output"])


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    for case in spec["cases"]:
        resume(case)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
