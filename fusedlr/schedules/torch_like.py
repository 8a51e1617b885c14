"""Schedules named and parametrised as ``torch.optim.lr_scheduler`` (minus optimizer,
last_epoch and verbose), in closed form. ``t`` is the number of scheduler steps taken
(torch's ``last_epoch``); ``base`` is the group's lr.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._base import (
    Kind,
    ProgramBuilder,
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_per_group_float,
    per_group,
)


class StepLR(Schedule):
    r"""Decays by ``gamma`` every ``step_size`` steps (torch ``StepLR``).

    .. math:: \eta_t = \eta_0 \cdot \gamma^{\lfloor t / \text{step\_size} \rfloor}

    >>> StepLR(step_size=2, gamma=0.5).values(5).tolist()
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    _fields = ("step_size", "gamma")

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = check_int("step_size", step_size, 1, owner="StepLR")
        self.gamma = check_float("gamma", gamma, 0.0, owner="StepLR", strict_min=True)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.STEP, self.step_size, self.gamma)


class MultiStepLR(Schedule):
    r"""Decays by ``gamma`` at each milestone (torch ``MultiStepLR``; a repeated milestone
    decays once per repetition, as torch's Counter does).

    .. math:: \eta_t = \eta_0 \cdot \gamma^{|\{m \in \text{milestones} : m \le t\}|}

    Milestones may come in any order, as torch takes them (a Counter); they are kept sorted
    (``milestones`` reads back sorted, with repetitions).

    >>> MultiStepLR([1, 3], gamma=0.1).values(4).tolist()
    [1.0, 0.1, 0.1, 0.010000000000000002]
    >>> MultiStepLR([3, 1, 3], gamma=0.5).milestones
    (1, 3, 3)
    """

    _fields = ("milestones", "gamma")

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1):
        ms = tuple(
            check_int(f"milestones[{i}]", m, 0, owner="MultiStepLR")
            for i, m in enumerate(_as_seq(milestones, "milestones", "MultiStepLR"))
        )
        self.milestones = tuple(sorted(ms))
        self.gamma = check_float("gamma", gamma, 0.0, owner="MultiStepLR", strict_min=True)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        data = b.block(self.milestones)
        return b.node(Kind.MULTISTEP, self.gamma, data, len(self.milestones))


class ConstantLR(Schedule):
    r"""Multiplies by ``factor`` for the first ``total_iters`` steps (torch ``ConstantLR``).

    .. math:: \eta_t = \eta_0 \cdot (\text{factor} \text{ if } t < T \text{ else } 1)

    ``total_iters=0`` keeps the factor forever, as torch's recursive scheduler does (it
    applies the factor at step 0 and never reaches its restore step).

    >>> ConstantLR(factor=0.5, total_iters=2).values(3).tolist()
    [0.5, 0.5, 1.0]
    """

    _fields = ("factor", "total_iters")

    def __init__(self, factor: float = 1.0 / 3, total_iters: int = 5):
        self.factor = check_float("factor", factor, 0.0, 1.0, owner="ConstantLR")
        self.total_iters = check_int("total_iters", total_iters, 0, owner="ConstantLR")

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        total = self.total_iters if self.total_iters > 0 else float("inf")
        return b.node(Kind.CONSTANT_LR, self.factor, total)


class LinearLR(Schedule):
    r"""Moves the factor linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then holds it (torch ``LinearLR``).

    .. math:: \eta_t = \eta_0 \left(s + (e - s) \frac{\min(t, T)}{T}\right)

    >>> LinearLR(start_factor=0.5, end_factor=1.0, total_iters=2).values(4).tolist()
    [0.5, 0.75, 1.0, 1.0]
    """

    _fields = ("start_factor", "end_factor", "total_iters")

    def __init__(
        self, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
    ):
        self.start_factor = check_float(
            "start_factor", start_factor, 0.0, 1.0, owner="LinearLR", strict_min=True
        )
        self.end_factor = check_float("end_factor", end_factor, 0.0, 1.0, owner="LinearLR")
        self.total_iters = check_int("total_iters", total_iters, 1, owner="LinearLR")

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.LINEAR_LR, self.start_factor, self.end_factor, self.total_iters)


class ExponentialLR(Schedule):
    r"""Decays by ``gamma`` every step (torch ``ExponentialLR``).

    .. math:: \eta_t = \eta_0 \gamma^t

    >>> ExponentialLR(gamma=0.5).values(3).tolist()
    [1.0, 0.5, 0.25]
    """

    _fields = ("gamma",)

    def __init__(self, gamma: float):
        self.gamma = check_float("gamma", gamma, 0.0, owner="ExponentialLR", strict_min=True)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.EXPONENTIAL, self.gamma)


class PolynomialLR(Schedule):
    r"""Polynomial decay to zero over ``total_iters`` steps, then zero (torch ``PolynomialLR``).

    .. math:: \eta_t = \eta_0 \left(1 - \frac{\min(t, T)}{T}\right)^{p}

    >>> PolynomialLR(total_iters=2, power=1.0).values(4).tolist()
    [1.0, 0.5, 0.0, 0.0]
    """

    _fields = ("total_iters", "power")

    def __init__(self, total_iters: int = 5, power: float = 1.0):
        self.total_iters = check_int("total_iters", total_iters, 1, owner="PolynomialLR")
        self.power = check_float("power", power, 0.0, owner="PolynomialLR")

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.POLYNOMIAL, self.total_iters, self.power)


class CosineAnnealingLR(Schedule):
    r"""Cosine annealing from the group's lr to ``eta_min`` (absolute) over ``T_max`` steps
    (torch ``CosineAnnealingLR``, closed form). Past ``T_max`` the cosine continues
    (rising again), as torch's recursive scheduler does.

    .. math:: \eta_t = \eta_{min} + (\eta_0 - \eta_{min}) \frac{1 + \cos(\pi t / T_{max})}{2}

    >>> [round(x, 12) for x in CosineAnnealingLR(T_max=2).values(5).tolist()]
    [1.0, 0.5, 0.0, 0.5, 1.0]
    """

    _fields = ("T_max", "eta_min")

    def __init__(self, T_max: int, eta_min: float = 0.0):  # noqa: N803 (torch's name)
        self.T_max = check_int("T_max", T_max, 1, owner="CosineAnnealingLR")
        self.eta_min = check_float("eta_min", eta_min, 0.0, owner="CosineAnnealingLR")

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.COSINE_ANNEALING, self.T_max, self.eta_min)


class NoamDecay(Schedule):
    r"""The Transformer schedule of Vaswani et al. (2017), as Paddle's ``NoamDecay``
    (the group's lr is Paddle's ``learning_rate`` multiplier).

    .. math:: \eta_t = \eta_0 \, d^{-0.5} \min(a_t, t \cdot w^{-1.5}),
              \quad a_t = t^{-0.5} \ (a_0 = 1)

    so the lr is 0 at t = 0 and peaks at t = warmup_steps.

    >>> NoamDecay(d_model=4, warmup_steps=4).values(3).tolist()
    [0.0, 0.0625, 0.125]
    """

    _fields = ("d_model", "warmup_steps")

    def __init__(self, d_model: int, warmup_steps: int):
        self.d_model = check_int("d_model", d_model, 1, owner="NoamDecay")
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 1, owner="NoamDecay")

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.NOAM, self.d_model, self.warmup_steps)


class SWALR(Schedule):
    r"""Anneals the lr to ``swa_lr`` over ``anneal_epochs`` steps, then holds it (torch
    ``torch.optim.swa_utils.SWALR``, for stochastic weight averaging).

    .. math:: \eta_t = s \, \alpha_t + \eta_0 (1 - \alpha_t), \quad
              u = \min(1, t / A) \ (u = 1 \text{ if } A = 0), \quad
              \alpha_t = \tfrac{1 - \cos \pi u}{2} \text{ (cos)} \text{ or } u \text{ (linear)}

    with :math:`s` = ``swa_lr`` (absolute; one value or one per param group), :math:`A` =
    ``anneal_epochs`` and :math:`\eta_0` the lr the schedule starts from: the group's lr (inside
    a ChainedScheduler, the previous child's output). torch computes this recursively, each step
    recovering :math:`\eta_0` by inverting its previous blend from the group's current lr; the
    closed form is that recursion without its rounding. So ``A = 0`` gives ``swa_lr`` from the
    start and ``A = 1`` gives :math:`\eta_0` then ``swa_lr``, as torch.

    torch's usual loop steps SWALR only after ``swa_start``, so it anneals from the lr another
    scheduler left; here ``SequentialLR([S, SWALR(...)], [swa_start])`` anneals from the group's
    lr (every SequentialLR child starts from it).

    >>> [round(x, 12) for x in SWALR(0.1, anneal_epochs=2).values(4).tolist()]
    [1.0, 0.55, 0.1, 0.1]
    """

    _fields = ("swa_lr", "anneal_epochs", "anneal_strategy")

    def __init__(self, swa_lr, anneal_epochs: int = 10, anneal_strategy: str = "cos"):
        owner = "SWALR"
        self.swa_lr = check_per_group_float("swa_lr", swa_lr, 0.0, owner=owner)
        self.anneal_epochs = check_int("anneal_epochs", anneal_epochs, 0, owner=owner)
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"),
                                            owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        swa_lr = per_group(self.swa_lr, group, "swa_lr", "SWALR")
        return b.node(Kind.SWALR, swa_lr, self.anneal_epochs,
                      float(self.anneal_strategy == "linear"))


def _as_seq(value, name: str, owner: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        try:
            value = tuple(value)
        except TypeError:
            raise TypeError(f"{owner}: {name} must be a sequence, got {value!r}") from None
    return tuple(value)
