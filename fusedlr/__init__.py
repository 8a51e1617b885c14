"""fusedlr: fused SGD / Adam / AdamW for PyTorch with learning-rate schedules on the device."""

__version__ = "0.1.0"

from fusedlr import schedules  # noqa: E402
from fusedlr.interop import to_torch_state_dict  # noqa: E402
from fusedlr.optim import SGD, Adam, AdamW  # noqa: E402

__all__ = ["SGD", "Adam", "AdamW", "__version__", "schedules", "to_torch_state_dict"]
