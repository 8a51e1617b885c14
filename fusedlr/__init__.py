"""fusedlr: fused SGD / Adam / AdamW for PyTorch with learning-rate schedules on the device."""

__version__ = "0.1.0"

from fusedlr import cpu_tuning, schedules  # noqa: E402
from fusedlr.convert import from_torch  # noqa: E402
from fusedlr.diagnostics import DoubleScheduleWarning, HostLRUnknownError, HostLRWarning  # noqa: E402
from fusedlr.interop import to_torch_state_dict  # noqa: E402
from fusedlr.optim import SGD, Adam, AdamW  # noqa: E402
from fusedlr.plateau import ReduceLROnPlateau  # noqa: E402
from fusedlr.schedule_free import AdamWScheduleFree, SGDScheduleFree  # noqa: E402

cpu_tuning.check_env()

__all__ = [
    "SGD", "Adam", "AdamW", "ReduceLROnPlateau", "SGDScheduleFree", "AdamWScheduleFree",
    "__version__", "cpu_tuning", "schedules", "to_torch_state_dict",
    "from_torch",
    "DoubleScheduleWarning", "HostLRUnknownError", "HostLRWarning",
]

# Tools that need matplotlib (plots, the LR range test) load on first use, so importing
# fusedlr stays light: ``fusedlr.plot`` / ``fusedlr.find_lr`` / ``fusedlr.parse_schedule``.
_LAZY = {
    "plot": ("fusedlr.plotting", "plot"),
    "find_lr": ("fusedlr.lr_finder", "find_lr"),
    "LRFinderResult": ("fusedlr.lr_finder", "LRFinderResult"),
    "parse_schedule": ("fusedlr.spec_parser", "parse_schedule"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fusedlr' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
