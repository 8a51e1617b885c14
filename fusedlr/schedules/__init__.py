"""Learning-rate schedules evaluated on the device, in closed form.

Every schedule is a declarative spec (data, not a lambda): pass it as
``schedule=`` to a fusedlr optimizer or a param group. ``spec.values(n)`` shows
the first n values, computed by the same C++ code the kernels run.
"""

from ._base import MAX_CHAIN_DEPTH, ProgramBuilder, Schedule, from_dict
from .composite import ChainedScheduler, JoinSchedules, RelativeWarmup, SequentialLR
from .convert import ConversionError, ConversionWarning, TorchSchedule, from_torch
from .cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from .hf import from_hf
from .hf_like import (
    CosineWarmupWithMinLR,
    CosineWithHardRestarts,
    CosineWithWarmup,
    LinearWithWarmup,
    PolynomialWithWarmup,
)
from .modern import InverseSqrt, WarmupCosine, WarmupStableDecay
from .optax_like import LinearOneCycle, PiecewiseInterpolate
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
    SWALR,
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
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CosineDecay",
    "CosineDecayRestarts",
    "CosineWarmupWithMinLR",
    "CosineWithHardRestarts",
    "CosineWithWarmup",
    "CyclicLR",
    "ExponentialDecay",
    "ExponentialLR",
    "InverseSqrt",
    "InverseTimeDecay",
    "JoinSchedules",
    "LambdaLR",
    "LinearCosineDecay",
    "LinearLR",
    "LinearOneCycle",
    "LinearWarmup",
    "LinearWithWarmup",
    "MAX_CHAIN_DEPTH",
    "MultiStepLR",
    "MultiplicativeLR",
    "NaturalExpDecay",
    "NoamDecay",
    "NoisyLinearCosineDecay",
    "OneCycleLR",
    "PiecewiseConstant",
    "PiecewiseInterpolate",
    "PolynomialDecay",
    "PolynomialLR",
    "PolynomialWithWarmup",
    "ProgramBuilder",
    "RelativeWarmup",
    "SWALR",
    "Schedule",
    "SequentialLR",
    "StepLR",
    "WarmupCosine",
    "WarmupStableDecay",
    "from_dict",
    "from_hf",
]
