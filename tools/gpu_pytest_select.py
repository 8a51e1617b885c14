"""pytest plugin: ``--cuda-marked`` keeps only the CUDA tests (tools/gpu_check.sh uses it).

    PYTHONPATH=.:tools python -m pytest -p gpu_pytest_select --cuda-marked tests/test_x.py ...

A test is a CUDA test when a ``skipif`` mark on it (its own, its parameter's or its module's
``pytestmark``) gives a reason that names CUDA or a GPU, or when its parameter id says ``cuda``.
The others are deselected (reported as such), so a GPU run spends no time on CPU variants.
"""

from __future__ import annotations

import re

_CUDA = re.compile(r"cuda|gpu", re.IGNORECASE)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--cuda-marked",
        action="store_true",
        help="keep only tests skipped without CUDA (or parametrized on cuda)",
    )


def is_cuda_test(item) -> bool:
    for mark in item.iter_markers("skipif"):
        if _CUDA.search(str(mark.kwargs.get("reason", ""))):
            return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "cuda" in callspec.id.lower()


def pytest_collection_modifyitems(config, items) -> None:
    if not config.getoption("--cuda-marked"):
        return
    keep = [i for i in items if is_cuda_test(i)]
    drop = [i for i in items if not is_cuda_test(i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
