"""Command line: ``python -m fusedlr <command>`` (also the ``fusedlr`` console script)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fusedlr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, CUDA build and CPU vector ISA")
    args = parser.parse_args(argv)
    if args.command == "info":
        from fusedlr.info import format_info

        print(format_info())
    return 0


if __name__ == "__main__":
    sys.exit(main())
