"""Schedules of current LLM practice, named after HF transformers / optax helpers: the
warmup-stable-decay (MiniCPM) schedule, inverse square root and warmup + cosine.

Each is a factor of the group's lr (the peak lr), as HF's LambdaLR-based helpers are.
"""

from __future__ import annotations

from ._base import Kind, ProgramBuilder, Schedule, check_choice, check_float, check_int

_SHAPES = {"linear": 0, "cosine": 1, "1-sqrt": 2}


class WarmupStableDecay(Schedule):
    r"""Warmup, a stable plateau, then a decay (HF ``get_wsd_schedule``, MiniCPM's WSD).

    With :math:`r` = ``min_lr_ratio``, :math:`W, S, D` the phase lengths:

    .. math:: \eta_t = \eta_0 \cdot \begin{cases}
              \max(0, f_w(t / \max(1, W)) (1 - r) + r) & t < W \\
              1 & t < W + S \\
              \max(0, f_d((t - W - S) / \max(1, D)) (1 - r) + r) & t < W + S + D \\
              r & \text{afterwards} \end{cases}

    warmup :math:`f_w(q)`: ``linear`` :math:`q`, ``cosine`` :math:`(1 - \cos \pi q) / 2`,
    ``1-sqrt`` :math:`1 - \sqrt{1 - q}`; decay :math:`f_d(q)`: ``linear`` :math:`1 - q`,
    ``cosine`` :math:`(1 + \cos \pi q) / 2`, ``1-sqrt`` :math:`1 - \sqrt q`. As HF, the
    warmup starts from :math:`r`, not 0, and ``decay_type`` defaults to ``'cosine'``. The
    cosine decay is HF's :math:`(1 + \cos(2 \pi c q)) / 2` with :math:`c` = ``num_cycles``
    (0.5: the half cosine above; HF's ``num_cycles`` applies to the cosine decay only).

    >>> WarmupStableDecay(2, 1, 2, decay_type='linear').values(6).tolist()
    [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]
    """

    _fields = ("warmup_steps", "stable_steps", "decay_steps", "min_lr_ratio", "warmup_type",
               "decay_type", "num_cycles")

    def __init__(self, warmup_steps: int, stable_steps: int, decay_steps: int,
                 min_lr_ratio: float = 0.0, warmup_type: str = "linear",
                 decay_type: str = "cosine", num_cycles: float = 0.5):
        owner = "WarmupStableDecay"
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0, owner=owner)
        self.stable_steps = check_int("stable_steps", stable_steps, 0, owner=owner)
        self.decay_steps = check_int("decay_steps", decay_steps, 0, owner=owner)
        self.min_lr_ratio = check_float("min_lr_ratio", min_lr_ratio, 0.0, 1.0, owner=owner)
        self.warmup_type = check_choice("warmup_type", warmup_type, _SHAPES, owner=owner)
        self.decay_type = check_choice("decay_type", decay_type, _SHAPES, owner=owner)
        self.num_cycles = check_float("num_cycles", num_cycles, 0.0, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        given = self.num_cycles != 0.5  # 0.5 packs as the old node
        return b.node(Kind.WARMUP_STABLE_DECAY, self.warmup_steps, self.stable_steps,
                      self.decay_steps, self.min_lr_ratio, _SHAPES[self.warmup_type],
                      _SHAPES[self.decay_type], self.num_cycles if given else 0.0, float(given))


class InverseSqrt(Schedule):
    r"""Linear warmup, then inverse square root decay (HF ``get_inverse_sqrt_schedule``).

    .. math:: \eta_t = \eta_0 \cdot \begin{cases} t / \max(1, W) & t < W \\
              1 / \sqrt{(t + \tau - W) / \tau} & t \ge W \end{cases}

    with :math:`\tau` = ``timescale``, by default ``warmup_steps`` (or 10000 when that is 0),
    as HF.

    >>> InverseSqrt(warmup_steps=2).values(5).tolist()
    [0.0, 0.5, 1.0, 0.8164965809277261, 0.7071067811865475]
    """

    _fields = ("warmup_steps", "timescale")

    def __init__(self, warmup_steps: int, timescale: int | None = None):
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0, owner="InverseSqrt")
        self.timescale = (
            None if timescale is None else check_int("timescale", timescale, 1, owner="InverseSqrt")
        )

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        timescale = self.timescale if self.timescale is not None else (self.warmup_steps or 10_000)
        return b.node(Kind.INVERSE_SQRT, self.warmup_steps, timescale)


class WarmupCosine(Schedule):
    r"""Linear warmup from 0 to the group's lr, then cosine decay to ``end_factor`` times it
    (optax ``warmup_cosine_decay_schedule(0, peak, warmup_steps, total_steps, end_value)``).

    .. math:: \eta_t = \begin{cases} \eta_0 \, t / W & t < W \\
              \eta_0 \left((1 - \alpha) \frac{1 + \cos(\pi k / (N - W))}{2} + \alpha\right),
              \ k = \min(t - W, N - W) & t \ge W \end{cases}

    with :math:`\alpha` = ``end_factor`` and ``N = total_steps`` (optax's ``decay_steps``,
    which counts the warmup). Past ``total_steps`` it holds :math:`\alpha \eta_0`, as optax.
    ``total_steps`` must exceed ``warmup_steps`` (optax raises for an empty cosine phase).
    ``exponent`` :math:`e` raises the cosine factor as optax's:
    :math:`(1 - \alpha) \left(\frac{1 + \cos(\pi k / (N - W))}{2}\right)^{e} + \alpha`.

    >>> [round(x, 12) for x in WarmupCosine(2, 4, end_factor=0.1).values(6).tolist()]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """

    _fields = ("warmup_steps", "total_steps", "end_factor", "exponent")

    def __init__(self, warmup_steps: int, total_steps: int, end_factor: float = 0.0,
                 exponent: float = 1.0):
        owner = "WarmupCosine"
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0, owner=owner)
        self.total_steps = check_int("total_steps", total_steps, 1, owner=owner)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(
                f"{owner}: total_steps ({self.total_steps}) must exceed warmup_steps "
                f"({self.warmup_steps}): the cosine phase would be empty"
            )
        self.end_factor = check_float("end_factor", end_factor, 0.0, owner=owner)
        self.exponent = check_float("exponent", exponent, 0.0, owner=owner, strict_min=True)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        given = self.exponent != 1.0  # exponent 1 packs as the old node
        return b.node(Kind.WARMUP_COSINE, self.warmup_steps, self.total_steps, self.end_factor,
                      self.exponent if given else 0.0, float(given))
