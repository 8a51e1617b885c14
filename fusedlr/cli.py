"""The ``fusedlr`` command line (``python -m fusedlr``).

Commands: ``plot``, ``demo``, ``find-lr``, ``info``. A bad argument or a malformed
schedule spec prints one line to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

EXIT_USAGE = 2

EXAMPLE_SPEC = "SequentialLR([LinearLR(0.01, 1.0, 500), CosineAnnealingLR(9500)], [500])"


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fusedlr", description="fused SGD/Adam/AdamW with on-device lr schedules")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{plot,demo,find-lr,info}")

    p = sub.add_parser(
        "plot", help="plot schedules (written in fusedlr.schedules constructor syntax) to a PNG",
        description="Plots schedule specs, e.g. fusedlr plot "
        f"\"{EXAMPLE_SPEC}\" --steps 10000 -o lr.png. Values come from the C++ the kernels run.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a schedule, e.g. 'StepLR(30, 0.1)'")
    p.add_argument("--steps", type=_positive_int, required=True, help="steps to plot")
    p.add_argument("--base-lr", type=_positive_float, default=1.0,
                   help="the group lr the schedules scale (default 1.0)")
    p.add_argument("--log-y", action="store_true", help="logarithmic lr axis")
    p.add_argument("-o", "--output", default="lr.png", help="PNG path (default lr.png)")

    d = sub.add_parser(
        "demo", help="train a small MLP on scikit-learn digits with torch and with fusedlr",
        description="Trains the same MLP on scikit-learn's digits twice (same seed and "
        "batches): torch.optim.SGD + lr_scheduler, and fusedlr.SGD(schedule=...). Prints "
        "per-epoch loss, accuracy and lr and the optimizer time per step; writes "
        "demo_loss.png and demo_lr.png.",
    )
    d.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default 15, or 3 with --quick; at least 2)")
    d.add_argument("--out", default=".", help="directory for the PNGs (default .)")
    d.add_argument("--quick", action="store_true", help="a short run (3 epochs)")
    d.add_argument("--seed", type=int, default=0, help="seed of weights, split and batches")
    d.add_argument("--threads", type=_positive_int, default=1,
                   help="torch CPU threads (default 1: the model is tiny)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--schedule-free", action="store_true",
                   help="train with schedule-free SGD instead: fusedlr.SGDScheduleFree and, "
                   "when installed, the schedulefree package's (accuracy at the averaged x)")

    f = sub.add_parser(
        "find-lr", help="LR range test on the demo model and data",
        description="Smith's LR range test with fusedlr.SGD (momentum 0.9) on the demo MLP "
        "and scikit-learn digits; prints the estimators (steepest descent, minimum/10, fastai's "
        "valley) and the suggested lr, and writes the plot.",
    )
    f.add_argument("--start-lr", type=_positive_float, default=1e-4,
                   help="first lr (default 1e-4: the demo's loss is flat below)")
    f.add_argument("--end-lr", type=_positive_float, default=10.0, help="last lr (default 10)")
    f.add_argument("--num-steps", type=_positive_int, default=100,
                   help="batches, one lr each (default 100)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--method", choices=("steep", "minimum", "valley"), default="steep",
                   help="the estimator that gives the suggested lr (default steep)")
    f.add_argument("-o", "--output", default="find_lr.png", help="PNG path (default find_lr.png)")

    sub.add_parser("info", help="versions, CUDA build and CPU vector ISA")
    return parser


def _check_output(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    if not path.lower().endswith(".png"):
        raise UsageError(f"output must be a .png file, got {path!r}")


def cmd_plot(args) -> int:
    from fusedlr.spec_parser import parse_schedule

    _check_output(args.output)
    specs = []
    for text in args.specs:
        try:
            specs.append(parse_schedule(text))
        except ValueError as e:
            raise UsageError(f"{e}: {text!r}") from None
    from fusedlr.plotting import plot

    plot(specs, args.steps, base_lr=args.base_lr, path=args.output, log_y=args.log_y)
    print(f"wrote {args.output} ({len(specs)} schedule{'s' if len(specs) > 1 else ''}, "
          f"{args.steps} steps)")
    return 0


def cmd_demo(args) -> int:
    from fusedlr.demo import run_demo

    if args.schedule_free:
        from fusedlr.demo_schedule_free import run_schedule_free_demo

        epochs = args.epochs or (3 if args.quick else 10)
        print(run_schedule_free_demo(epochs=epochs, seed=args.seed, threads=args.threads).report)
        return 0
    if args.epochs is not None and args.epochs < 2:
        raise UsageError("--epochs must be at least 2 (one warmup epoch, then cosine)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out!r} is not a directory")
    result = run_demo(epochs=args.epochs, out_dir=args.out, quick=args.quick, seed=args.seed,
                      progress=not args.no_progress, threads=args.threads)
    print(result.report)
    print("wrote " + ", ".join(result.files))
    return 0


_FIND_LR_LABELS = {"steep": "steep", "minimum": "minimum/10", "valley": "valley"}
_FIND_LR_METHODS = {
    "steep": "steepest descent of the smoothed loss",
    "minimum": "a tenth of the lr at the minimum of the smoothed loss",
    "valley": "fastai's valley",
}


def cmd_find_lr(args) -> int:
    from fusedlr.demo import find_lr_demo

    _check_output(args.output)
    if args.end_lr <= args.start_lr:
        raise UsageError(f"--end-lr ({args.end_lr:g}) must be above --start-lr ({args.start_lr:g})")
    if args.num_steps < 2:
        raise UsageError("--num-steps must be at least 2")
    r = find_lr_demo(args.output, num_steps=args.num_steps, start_lr=args.start_lr,
                     end_lr=args.end_lr, seed=args.seed, method=args.method)
    print(f"LR range test, fusedlr.SGD(momentum=0.9) on the demo MLP / digits: {len(r.lrs)} of "
          f"{args.num_steps} steps, lr {r.lrs[0]:.3g} .. {r.lrs[-1]:.3g}"
          + (" (stopped early: loss diverged)" if r.stopped_early else ""))
    if r.suggested_lr is None:
        print("no suggestion: the smoothed loss never fell measurably below its starting level")
    else:
        print("estimators: " + " | ".join(
            f"{_FIND_LR_LABELS[k]} {v:.3g}" for k, v in r.suggestions.items() if v is not None))
        print(f"suggested lr: {r.suggested_lr:.3g} ({r.method}: "
              f"{_FIND_LR_METHODS[r.method]})")
    print(f"wrote {args.output}")
    return 0


def cmd_info(args) -> int:
    from fusedlr.info import format_info

    print(format_info())
    return 0


COMMANDS = {"plot": cmd_plot, "demo": cmd_demo, "find-lr": cmd_find_lr, "info": cmd_info}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"fusedlr: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:  # an optional dependency (matplotlib, tqdm, scikit-learn)
        print(f"fusedlr: error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fusedlr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fusedlr info | head -1`
        return 0
