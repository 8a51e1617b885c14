"""fusedlr with timm: names through timm's factory, layer decay (``lr_scale``) on the device.

Model: a ViT built from a config (``pretrained=False``, nothing downloaded), 2 blocks of width
32 on 32x32 images, float64. The oracle is timm's own path: ``create_optimizer_v2(model,
'adamw' | 'sgd', layer_decay=...)`` (torch's optimizer over timm's param groups) stepped with a
timm scheduler, which writes ``lr * lr_scale * schedule(t)`` into each group. float64 on both
sides: the same formulas to rounding, so trajectories agree to ~1e-12 relative; a missing
``lr_scale`` (factors 0.42 .. 1 here) or a schedule one step off would differ by far more.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm")

from timm.optim import Lookahead, create_optimizer_v2, get_optimizer_class  # noqa: E402
from timm.scheduler import CosineLRScheduler, StepLRScheduler  # noqa: E402

import fusedlr  # noqa: E402
from fusedlr import schedules as S  # noqa: E402
from fusedlr.integrations import timm as ft  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-12)
WARMUP, DECAY = 3, 8
LR, WD, LAYER_DECAY = 2e-3, 0.05, 0.75


def _vit(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                              patch_size=8, depth=2, embed_dim=32, num_heads=2, num_classes=5)
    return model.double()


def _batches(seed: int, n: int):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64),
             torch.randint(0, 5, (4,), generator=g)) for _ in range(n)]


def _train(model, opt, batches, timm_scheduler=None):
    """timm's train loop (per-update scheduling): returns, per step, each group's lr as the
    optimizer reports it (torch: group['lr'] that the timm scheduler wrote; fusedlr: the host
    mirror of the lr the kernel used)."""
    used = []
    for k, (x, y) in enumerate(batches):
        if timm_scheduler is not None:
            used.append([g["lr"] for g in opt.param_groups])
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        if timm_scheduler is not None:
            timm_scheduler.step_update(num_updates=k + 1)
        else:
            used.append(opt.get_host_lr("last"))
    return used


def _assert_same_params(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), **TOL)


def test_registered_names_resolve_to_fusedlr_classes_in_timms_factory(caplog):
    names = ft.register()
    assert names == ["fusedlrsgd", "fusedlrmomentum", "fusedlradam", "fusedlradamw"]
    with caplog.at_level(logging.WARNING):
        assert ft.register() == names  # again: no "already registered, overwriting"
    assert not caplog.records
    assert get_optimizer_class("fusedlradamw") is fusedlr.AdamW
    model = _vit(0)
    for name, cls in [("fusedlradamw", fusedlr.AdamW), ("fusedlradam", fusedlr.Adam),
                      ("FusedLRSGD", fusedlr.SGD), ("fusedlrmomentum", fusedlr.SGD)]:
        opt = create_optimizer_v2(model, name, lr=LR, weight_decay=WD)
        assert type(opt) is cls, name
        assert not isinstance(opt, (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD))
    sgd = create_optimizer_v2(model, "fusedlrsgd", lr=0.1)  # timm's defaults for 'sgd'
    assert sgd.param_groups[0]["nesterov"] is True and sgd.param_groups[0]["momentum"] == 0.9
    momentum = create_optimizer_v2(model, "fusedlrmomentum", lr=0.1)
    assert momentum.param_groups[0]["nesterov"] is False


def test_names_with_an_underscore_are_read_correctly_or_refused():
    model = _vit(0)
    for name in ("fusedlr_adamw", "FUSEDLR_ADAMW", "fusedlradamw", "adamw"):
        assert type(ft.create_optimizer(model, name, lr=LR)) is fusedlr.AdamW, name
    assert type(ft.create_optimizer(model, "fusedlr_sgd", lr=LR)) is fusedlr.SGD
    wrapped = ft.create_optimizer(model, "lookahead_fusedlr_adamw", lr=LR)
    assert isinstance(wrapped, Lookahead) and type(wrapped._base_optimizer) is fusedlr.AdamW
    for bad in ("fusedlr_lamb", "lamb", "fused_adamw", "torch_adamw", ""):
        with pytest.raises(ValueError, match=rf"opt={bad!r}: fusedlr provides 'sgd'"):
            ft.create_optimizer(model, bad, lr=LR)
    with pytest.raises(TypeError, match="opt must be a string"):
        ft.create_optimizer(model, fusedlr.AdamW, lr=LR)
    with pytest.raises(ValueError, match="prefix must be .*timm splits optimizer names on '_'"):
        ft.register(prefix="fusedlr_")
    with pytest.raises(ValueError, match="prefix must be a non-empty string"):
        ft.register(prefix="Fused")


def test_layer_decay_on_the_device_matches_timms_cosine_scheduler_on_torch_adamw():
    steps = WARMUP + DECAY + 2  # two steps past the end of the cosine
    batches = _batches(seed=1, n=steps)

    ref_model = _vit(seed=2)
    ref = create_optimizer_v2(ref_model, "adamw", lr=LR, weight_decay=WD,
                              layer_decay=LAYER_DECAY, foreach=False)
    cosine = CosineLRScheduler(ref, t_initial=DECAY, warmup_t=WARMUP, warmup_lr_init=0.0,
                               warmup_prefix=True, t_in_epochs=False)
    want = _train(ref_model, ref, batches, cosine)

    model = _vit(seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fusedlr.DoubleScheduleWarning)
        opt = ft.create_optimizer(model, "adamw", lr=LR, weight_decay=WD,
                                  layer_decay=LAYER_DECAY,
                                  schedule=S.WarmupCosine(WARMUP, WARMUP + DECAY))
        got = _train(model, opt, batches)

    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert len(scales) >= 3 and scales[-1] == 1.0 and scales[0] < 0.5  # layer decay is real
    assert [g["lr"] for g in opt.param_groups] == [LR] * len(opt.param_groups)  # base lr kept
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), **TOL)
    _assert_same_params(model, ref_model)


def test_fusedlrsgd_with_a_step_schedule_matches_timms_sgd_and_step_scheduler():
    batches = _batches(seed=3, n=7)
    ref_model = _vit(seed=4)
    ref = create_optimizer_v2(ref_model, "sgd", lr=0.05, weight_decay=1e-3,
                              layer_decay=0.5, foreach=False)
    want = _train(ref_model, ref, batches,
                  StepLRScheduler(ref, decay_t=3, decay_rate=0.5, t_in_epochs=False))

    ft.register()
    model = _vit(seed=4)
    opt = create_optimizer_v2(model, "fusedlrsgd", lr=0.05, weight_decay=1e-3, layer_decay=0.5,
                              schedule=S.StepLR(3, 0.5))
    got = _train(model, opt, batches)

    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), **TOL)
    _assert_same_params(model, ref_model)


def test_a_timm_scheduler_on_a_scheduled_group_warns_double_schedule():
    model = _vit(seed=0)
    opt = ft.create_optimizer(model, "adamw", lr=LR, layer_decay=LAYER_DECAY,
                              schedule=S.WarmupCosine(2, 10))
    scheduler = CosineLRScheduler(opt, t_initial=10, t_in_epochs=False)
    x, y = _batches(seed=5, n=1)[0]
    F.cross_entropy(model(x), y).backward()
    with pytest.warns(fusedlr.DoubleScheduleWarning, match="param group 0"):
        opt.step()
        scheduler.step_update(1)
        opt.step()


def test_unscheduled_groups_driven_by_a_timm_scheduler_match_torch_adamw():
    """schedule=None: group['lr'] as it stands, which timm's scheduler sets to lr * lr_scale *
    schedule(t); the device must not apply lr_scale a second time."""
    batches = _batches(seed=6, n=6)
    runs = []
    for opt_name in ("adamw", "fusedlradamw"):
        ft.register()
        model = _vit(seed=7)
        opt = create_optimizer_v2(model, opt_name, lr=LR, weight_decay=WD,
                                  layer_decay=LAYER_DECAY, foreach=False)
        scheduler = CosineLRScheduler(opt, t_initial=4, warmup_t=2, warmup_lr_init=1e-4,
                                      t_in_epochs=False)
        _train(model, opt, batches, scheduler)
        runs.append(model)
    _assert_same_params(runs[1], runs[0])


def test_importing_fusedlr_does_not_import_timm():
    code = ("import sys, fusedlr, fusedlr.integrations; "
            "assert 'timm' not in sys.modules, 'timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
