"""The lr on the host without a device read (``get_host_lr`` / ``get_host_momentum``).

Oracle: torch's own optimizer + ``torch.optim.lr_scheduler`` run side by side; the lr torch's
group holds when its ``step()`` runs is the lr the fusedlr kernel used at that step. That the
host form reads nothing from the device is shown by corrupting the device state afterwards:
the host answer stays right while the device answer changes.
"""

import math
import random
import warnings

import pytest
import torch

import fusedlr
from fusedlr import schedules as S

# (fusedlr spec, torch scheduler factory) pairs with equal lr sequences.
CASES = {
    "StepLR": (lambda: S.StepLR(3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    "CosineAnnealingLR": (lambda: S.CosineAnnealingLR(7, eta_min=1e-3),
                          lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, 1e-3)),
    "LinearLR": (lambda: S.LinearLR(0.1, 1.0, 5),
                 lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 5)),
    "OneCycleLR": (lambda: S.OneCycleLR(0.3, total_steps=20),
                   lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.3, total_steps=20)),
}


def _pair(name, lr_scale=None):
    torch.manual_seed(random.randrange(1 << 30))
    spec, make_torch = CASES[name]
    p = torch.randn(7, dtype=torch.float64)
    q = p.clone()
    group = {"params": [p]}
    tgroup = {"params": [q]}
    if lr_scale is not None:
        group["lr_scale"] = lr_scale
    ours = fusedlr.SGD([group], lr=0.1, momentum=0.9, schedule=spec())
    ref = torch.optim.SGD([tgroup], lr=0.1 * (lr_scale or 1.0), momentum=0.9)
    return ours, ref, make_torch(ref), p, q


@pytest.mark.parametrize("name", sorted(CASES))
def test_host_lr_is_the_lr_the_kernel_used(name):
    ours, ref, sched, p, q = _pair(name)
    assert ours.get_host_lr("next") == pytest.approx([ref.param_groups[0]["lr"]], rel=1e-12)
    for _ in range(17):
        used = ref.param_groups[0]["lr"]
        used_momentum = ref.param_groups[0]["momentum"]
        g = torch.randn_like(p)
        p.grad, q.grad = g, g.clone()
        ours.step()
        ref.step()
        sched.step()
        assert ours.get_host_lr() == pytest.approx([used], rel=1e-12, abs=1e-15)
        assert ours.get_host_lr("last") == ours.get_host_lr()
        assert ours.get_host_momentum() == pytest.approx([used_momentum], rel=1e-12)
        nxt = ours.get_host_lr("next")
        assert nxt == pytest.approx([ref.param_groups[0]["lr"]], rel=1e-12, abs=1e-15)
        assert nxt == [float(v) for v in ours.get_last_lr()]  # the device's own evaluation
    torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_group_lr_scale_multiplies_the_lr_on_the_device():
    """timm's layer-decay convention: the group's lr times its ``lr_scale``, absolute schedules
    included (timm multiplies the scheduled value, eta_min included). Oracle: torch's scheduler;
    for the multiplicative StepLR, over a group whose base lr already holds the product; for the
    absolute OneCycleLR, its
    lr scaled just for torch's step and restored before its scheduler steps."""
    scale = random.uniform(0.2, 0.9)
    for name, relative in (("StepLR", True), ("OneCycleLR", False)):
        ours, ref, sched, p, q = _pair(name, lr_scale=scale)
        for _ in range(9):
            g = torch.randn_like(p)
            p.grad, q.grad = g, g.clone()
            group = ref.param_groups[0]
            if not relative:
                group["lr"] *= scale
            used = group["lr"]
            ours.step()
            ref.step()
            if not relative:
                group["lr"] /= scale
            sched.step()
            assert ours.get_host_lr() == pytest.approx([used], rel=1e-12)
            assert [float(v) for v in ours.get_last_lr()] == ours.get_host_lr("next")
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_host_lr_reads_nothing_from_the_device():
    p = torch.randn(5)
    opt = fusedlr.AdamW([p], lr=0.01, schedule=S.WarmupCosine(4, 30), steps_per_epoch=2)
    for _ in range(11):
        p.grad = torch.randn_like(p)
        opt.step()
    expected = S.WarmupCosine(4, 30).values(6, 0.01).tolist()
    assert opt.get_host_lr() == pytest.approx([expected[10 // 2]], rel=1e-12)
    assert opt.get_host_lr("next") == pytest.approx([expected[11 // 2]], rel=1e-12)
    before = opt.get_host_lr(), opt.get_host_lr("next"), opt.get_host_momentum()
    ds = next(iter(opt._devices.values()))
    ds.counter.fill_(1000)  # corrupt every tensor a device evaluation would read
    ds.lr_scale.fill_(7.0)
    ds.hparams.mul_(3.0) if ds.hparams is not opt._host_rows else None
    assert float(opt.get_last_lr()[0]) != before[1][0]  # the device answer moved...
    assert (opt.get_host_lr(), opt.get_host_lr("next"), opt.get_host_momentum()) == before


def test_before_the_first_step_last_is_step_zero():
    p = torch.randn(3)
    opt = fusedlr.SGD([p], lr=0.5, schedule=S.LinearLR(0.2, 1.0, 4))
    assert opt.host_step_count == 0
    assert opt.get_host_lr() == opt.get_host_lr("next") == pytest.approx([0.1])


def test_schedule_none_group_follows_its_lr():
    """A group without schedule uses group['lr'] as it stands: 'last' keeps the lr the step
    used, 'next' sees an edit made since (what torch's scheduler does after step())."""
    p = torch.randn(3)
    opt = fusedlr.SGD([p], lr=0.5)
    p.grad = torch.randn_like(p)
    opt.step()
    opt.param_groups[0]["lr"] = 0.25
    assert opt.get_host_lr() == [0.5]
    assert opt.get_host_lr("next") == [0.25]


def test_plateau_makes_the_host_lr_unknowable():
    p = torch.randn(3)
    opt = fusedlr.SGD([p], lr=0.5, schedule=S.ExponentialLR(0.9))
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    for metric in (1.0, 2.0, 3.0):
        p.grad = torch.randn_like(p)
        opt.step()
        plateau.step(torch.tensor(metric))
    assert "ReduceLROnPlateau" in opt.host_lr_unknown_reason
    with pytest.raises(fusedlr.HostLRUnknownError, match="ReduceLROnPlateau"):
        opt.get_host_lr()
    with pytest.warns(fusedlr.HostLRWarning, match="ReduceLROnPlateau"):
        got = opt.get_host_lr("next", fallback="device")
    assert got == [float(v) for v in opt.get_last_lr()]
    assert got[0] == pytest.approx(0.5 * 0.9**3 * 0.25, rel=1e-12)  # two reductions
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per optimizer
        last = opt.get_host_lr("last", fallback="device")
    assert last[0] == pytest.approx(0.5 * 0.9**2 * 0.25, rel=1e-12)


def test_skip_schedule_on_inf_is_unknowable_until_synced():
    p = torch.randn(3)
    opt = fusedlr.SGD([p], lr=0.5, schedule=S.StepLR(1, 0.5), skip_schedule_on_inf=True)
    for inf in (0.0, 1.0, 0.0):
        p.grad = torch.randn_like(p)
        opt.found_inf = torch.tensor([inf])
        opt.step()
    assert "skip_schedule_on_inf" in opt.host_lr_unknown_reason
    with pytest.raises(fusedlr.HostLRUnknownError):
        opt.get_host_lr()
    assert opt.sync_host_counter() == 2  # the overflow step did not count
    assert opt.host_lr_unknown_reason is None
    assert opt.get_host_lr() == [0.5 * 0.5**1]
    assert opt.get_host_lr("next") == [0.5 * 0.5**2]


def test_counting_found_inf_keeps_the_mirror_exact():
    p = torch.randn(3)
    opt = fusedlr.SGD([p], lr=0.5, schedule=S.StepLR(1, 0.5))
    for inf in (0.0, 1.0, 0.0):
        p.grad = torch.randn_like(p)
        opt.found_inf = torch.tensor([inf])
        opt.step()
    assert opt.host_lr_unknown_reason is None
    assert opt.get_host_lr() == [0.5 * 0.5**2]


def test_compiled_steps_are_unknowable_until_synced():
    p = torch.randn(9)
    opt = fusedlr.SGD([p], lr=0.5, schedule=S.ExponentialLR(0.8))
    p.grad = torch.randn_like(p)
    opt.step()  # eager warm-up
    step = torch.compile(opt.step, fullgraph=True)
    for _ in range(3):
        step()
    assert "torch.compile" in opt.host_lr_unknown_reason
    with pytest.raises(fusedlr.HostLRUnknownError, match="sync_host_counter"):
        opt.get_host_lr()
    assert opt.sync_host_counter() == 4
    assert opt.get_host_lr() == pytest.approx([0.5 * 0.8**3], rel=1e-12)


def test_resume_restores_the_mirror():
    p = torch.randn(4)
    opt = fusedlr.AdamW([p], lr=0.01, schedule=S.CosineAnnealingLR(13))
    for _ in range(6):
        p.grad = torch.randn_like(p)
        opt.step()
    fresh = fusedlr.AdamW([p.clone()], lr=0.01, schedule=S.CosineAnnealingLR(13))
    fresh.load_state_dict(opt.state_dict())
    assert fresh.host_step_count == 6
    assert fresh.get_host_lr() == opt.get_host_lr()
    assert fresh.get_host_lr("next") == opt.get_host_lr("next")


def test_bad_arguments_name_the_argument():
    opt = fusedlr.SGD([torch.randn(2)], lr=0.1)
    with pytest.raises(ValueError, match="which must be one of"):
        opt.get_host_lr("previous")
    with pytest.raises(ValueError, match="fallback must be one of"):
        opt.get_host_lr(fallback="guess")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_sync_on_cuda():
    p = torch.randn(1000, device="cuda")
    opt = fusedlr.AdamW([p], lr=0.01, schedule=S.WarmupCosine(3, 20))
    for _ in range(2):
        p.grad = torch.randn_like(p)
        opt.step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            p.grad = torch.randn_like(p)
            opt.step()
            lr = opt.get_host_lr()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert lr == pytest.approx(S.WarmupCosine(3, 20).values(7, 0.01)[6:].tolist(), rel=1e-12)
    assert math.isfinite(lr[0])


def test_lr_scale_is_left_to_the_scheduler_of_an_unscheduled_group():
    """schedule=None: group['lr'] as it stands (timm's scheduler writes lr * lr_scale there)."""
    p = torch.randn(3, dtype=torch.float64)
    q = p.clone()
    opt = fusedlr.SGD([{"params": [p], "lr_scale": 0.5}], lr=0.1)
    ref = torch.optim.SGD([q], lr=0.1)
    p.grad = torch.randn_like(p)
    q.grad = p.grad.clone()
    opt.step()
    ref.step()
    assert opt.get_host_lr() == [0.1]
    torch.testing.assert_close(p, q, rtol=1e-15, atol=1e-15)  # fma or not: an ulp


def test_set_schedule_counter_moves_device_and_host():
    p = torch.randn(3)
    opt = fusedlr.SGD([p], lr=0.5, schedule=S.StepLR(2, 0.5))
    opt.set_schedule_counter(5)
    assert int(opt.schedule_counter) == opt.host_step_count == 5
    assert opt.get_host_lr("next") == [float(v) for v in opt.get_last_lr()] == [0.5 * 0.5**2]
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match="count must be an int >= 0"):
            opt.set_schedule_counter(bad)
    assert opt.host_step_count == 5


def test_host_lr_follows_every_change_of_what_it_is_computed_from():
    """The host evaluation is cached for a block of steps; a new schedule, an edited row, a new
    group and loaded plateau factors must each show at once."""
    p, q = torch.randn(3), torch.randn(2)
    opt = fusedlr.SGD([{"params": [p]}], lr=0.5, schedule=S.StepLR(3, 0.5))
    for _ in range(4):
        p.grad = torch.randn_like(p)
        opt.step()
    assert opt.get_host_lr() == [0.25]
    opt.param_groups[0]["schedule"] = S.ExponentialLR(0.5)
    assert opt.get_host_lr("next") == [0.5 * 0.5**4]
    opt.param_groups[0]["lr_scale"] = 0.5
    assert opt.get_host_lr("next") == [0.25 * 0.5**4]
    opt.add_param_group({"params": [q], "lr": 0.1, "schedule": None})
    assert opt.get_host_lr("next") == [0.25 * 0.5**4, 0.1]
    sd = opt.state_dict()
    sd["fusedlr"]["lr_scale"] = torch.tensor([0.5, 2.0], dtype=torch.float64)
    opt.load_state_dict(sd)
    assert opt.get_host_lr("next") == [0.125 * 0.5**4, 0.2]
    assert opt.get_host_lr("next") == [float(v) for v in opt.get_last_lr()]
