"""Command line: ``python -m fusedlr <command>`` (also the ``fusedlr`` console script).

Commands: ``plot``, ``demo``, ``find-lr``, ``info``; see ``fusedlr.cli``.
"""

from __future__ import annotations

import sys

from fusedlr.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
