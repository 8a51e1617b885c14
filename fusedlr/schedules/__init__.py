"""Learning-rate schedules evaluated on the device, in closed form.

Every schedule is a declarative spec (data, not a lambda): pass it as
``schedule=`` to a fusedlr optimizer or a param group. ``spec.values(n)`` shows
the first n values, computed by the same C++ code the kernels run.
"""

from ._base import MAX_CHAIN_DEPTH, ProgramBuilder, Schedule, from_dict
from .composite import ChainedScheduler, SequentialLR
from .convert import ConversionError, ConversionWarning, TorchSchedule, from_torch
from .cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from .modern import InverseSqrt, WarmupCosine, WarmupStableDecay
from .tables import LambdaLR, MultiplicativeLR
from .tf_keras import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LinearCosineDecay,
    LinearWarmup,
    NaturalExpDecay,
    NoisyLinearCosineDecay,
    PiecewiseConstant,
    PolynomialDecay,
)
from .torch_like import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    NoamDecay,
    PolynomialLR,
    StepLR,
)

__all__ = [
    "ConversionError", "ConversionWarning", "TorchSchedule", "from_torch",
    "MAX_CHAIN_DEPTH",
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CosineDecay",
    "CosineDecayRestarts",
    "CyclicLR",
    "ExponentialDecay",
    "ExponentialLR",
    "InverseSqrt",
    "InverseTimeDecay",
    "LambdaLR",
    "LinearCosineDecay",
    "LinearLR",
    "LinearWarmup",
    "MultiStepLR",
    "MultiplicativeLR",
    "NaturalExpDecay",
    "NoamDecay",
    "NoisyLinearCosineDecay",
    "OneCycleLR",
    "PiecewiseConstant",
    "PolynomialDecay",
    "PolynomialLR",
    "ProgramBuilder",
    "Schedule",
    "SequentialLR",
    "StepLR",
    "WarmupCosine",
    "WarmupStableDecay",
    "from_dict",
]
