"""Writes ``format1_state_dict.pt``: a fusedlr.SGD state_dict (state_dict format 1) with one
param group per schedule kind that existed before the issue-13 kinds (commit 5e759ec), saved
after 5 steps, plus the lrs that code gave for the next 12 steps; and, per spec, the packed
program that code built and its first 40 values at base lr 0.1.

It was run once on that commit (``PYTHONPATH=. python tests/data/make_format1_state_dict.py``);
``tests/test_state_format.py`` loads the file with the current code and checks that every group
continues with the recorded lrs, and evaluates each saved program with the current C++: a change
to an existing kind's arguments or parameter encoding that alters a saved run or an old program
fails. Do not regenerate it with newer code.
"""

import pathlib
import subprocess

import torch

import fusedlr
from fusedlr import schedules as S

SPECS = [
    S.StepLR(2, gamma=0.5),
    S.MultiStepLR([1, 3, 3, 9], gamma=0.5),
    S.ConstantLR(0.5, total_iters=7),
    S.LinearLR(0.25, 1.0, total_iters=9),
    S.ExponentialLR(0.9),
    S.PolynomialLR(total_iters=11, power=2.0),
    S.CosineAnnealingLR(6, eta_min=1e-3),
    S.NoamDecay(64, 4),
    S.LambdaLR(lambda t: 1.0 / (t + 1), total_steps=12),
    S.MultiplicativeLR(lambda t: 0.9, total_steps=12),
    S.SequentialLR([S.LinearLR(0.5, 1.0, 3), S.ExponentialLR(0.8)], [3]),
    S.ChainedScheduler([S.ConstantLR(0.5, 8), S.ExponentialLR(0.9)]),
    S.CosineAnnealingWarmRestarts(3, T_mult=2),
    S.CyclicLR(0.01, 0.1, step_size_up=3, mode="triangular2"),
    S.OneCycleLR(0.1, total_steps=20),
    S.ExponentialDecay(3, 0.9, staircase=True),
    S.ExponentialDecay(4, 0.7),
    S.NaturalExpDecay(3, 0.5),
    S.InverseTimeDecay(3, 0.5),
    S.PolynomialDecay(4, 1e-4, power=2.0, cycle=True),
    S.CosineDecay(9, alpha=0.1),
    S.CosineDecayRestarts(3),
    S.LinearCosineDecay(10),
    S.NoisyLinearCosineDecay(10, seed=3),
    S.PiecewiseConstant([2, 8], [0.1, 0.05, 0.01]),
    S.LinearWarmup(S.CosineAnnealingLR(9), 3, 0.0, 0.1),
    S.WarmupStableDecay(2, 3, 8, decay_type="cosine", min_lr_ratio=0.1),
    S.WarmupStableDecay(2, 2, 9, warmup_type="cosine", decay_type="1-sqrt"),
    S.InverseSqrt(3),
    S.WarmupCosine(2, 14, end_factor=0.1),
]


def main():
    groups = [
        {"params": [torch.linspace(-1.0, 1.0, 3, dtype=torch.float64)], "lr": 0.1 + 0.01 * i,
         "schedule": spec}
        for i, spec in enumerate(SPECS)
    ]
    opt = fusedlr.SGD(groups, lr=0.1, momentum=0.9)
    for _ in range(5):
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.ones_like(p)
        opt.step()
    saved = opt.state_dict()
    expected = []
    for _ in range(12):
        expected.append([float(x) for x in opt.get_last_lr()])
        opt.step()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=pathlib.Path(__file__).parent).stdout.strip()
    out = pathlib.Path(__file__).with_name("format1_state_dict.pt")
    programs = []
    for spec in SPECS:
        program, root = spec.program()
        programs.append({"program": program, "root": root, "values": spec.values(40, 0.1)})
    torch.save({"commit": commit, "state_dict": saved, "next_lrs": expected,
                "group_lrs": [g["lr"] for g in groups], "programs": programs}, out)
    print(f"wrote {out} at {commit}")


if __name__ == "__main__":
    main()
