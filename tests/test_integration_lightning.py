"""Lightning integration (fusedlr/integrations/lightning.py), with a real Trainer on the CPU.

Oracle: the same tiny LightningModule with ``torch.optim`` + a ``torch.optim.lr_scheduler``
returned from ``configure_optimizers`` (Lightning steps it), logged by Lightning's own
``LearningRateMonitor``. The fusedlr run uses the recipe (a fusedlr optimizer with its schedule,
no lr_scheduler) and fusedlr's ``LearningRateMonitor``. Data and initial weights are fresh random
draws; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

if importlib.util.find_spec("lightning") is None:
    pytest.importorskip("pytorch_lightning", reason="Lightning is not installed")

import fusedlr  # noqa: E402
from fusedlr import schedules as S  # noqa: E402
from fusedlr.integrations import lightning as fl  # noqa: E402

pl = fl.pl  # the Lightning package the integration uses
sched = torch.optim.lr_scheduler

CONFIG = {"n_in": 6, "hidden": 16, "n_out": 4, "batch": 8}
LR = 3e-2
# Per-step loss agreement of an fp32 run with torch.optim (foreach=False): fusedlr's lr is the
# same closed form in float64, but the fused update rounds differently from torch's
# single-tensor loop by an ulp or so per step. Measured over 12-24 steps: at most 2e-7 relative
# (losses and weights); 1e-5 leaves a 50x margin and still catches a wrong lr at any step.
FP32_RTOL = 1e-5


class TinyClassifier(pl.LightningModule):
    """MLP ``n_in -> hidden -> n_out`` (tanh) with cross-entropy, built from ``CONFIG``; the
    optimizer (configuration) comes from ``make_optimizer(module)``."""

    def __init__(self, make_optimizer, init_state=None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(CONFIG["n_in"], CONFIG["hidden"]), nn.Tanh(),
                                 nn.Linear(CONFIG["hidden"], CONFIG["n_out"]))
        if init_state is not None:
            self.net.load_state_dict(init_state)
        self.make_optimizer = make_optimizer
        self.losses: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.losses.append(loss.detach().double())
        return loss

    def configure_optimizers(self):
        return self.make_optimizer(self)


class MemoryLogger(pl.loggers.Logger):
    """Keeps every ``log_metrics`` call in memory."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, dict]] = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))

    def series(self, key: str) -> dict[int, float]:
        """step -> value of ``key``; a step logged twice must carry the same value."""
        out: dict[int, float] = {}
        for step, metrics in self.calls:
            if key in metrics:
                assert out.setdefault(step, metrics[key]) == metrics[key], (key, step)
        return out

    def keys(self, prefix: str = "lr-") -> set[str]:
        return {k for _, metrics in self.calls for k in metrics if k.startswith(prefix)}


def random_loader(batches: int) -> DataLoader:
    n = batches * CONFIG["batch"]
    data = TensorDataset(torch.randn(n, CONFIG["n_in"]), torch.randint(CONFIG["n_out"], (n,)))
    return DataLoader(data, batch_size=CONFIG["batch"], shuffle=False)


def random_init_state() -> dict:
    return {k: v.clone() for k, v in TinyClassifier(None).net.state_dict().items()}


def fit(module, loader, root, *, callbacks=(), ckpt_path=None, checkpointing=False, **kwargs):
    """Trains ``module``; returns (trainer, logger, DoubleScheduleWarnings, every warning)."""
    logger = MemoryLogger()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=list(callbacks),
                         enable_checkpointing=checkpointing, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1,
                         default_root_dir=root, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path)
    doubles = [w for w in caught if issubclass(w.category, fusedlr.DoubleScheduleWarning)]
    return trainer, logger, doubles, caught


def assert_same_series(ours: MemoryLogger, oracle: MemoryLogger, keys, rtol=1e-12):
    for key in keys:
        got, want = ours.series(key), oracle.series(key)
        assert got.keys() == want.keys(), (key, sorted(got), sorted(want))
        for step in want:
            assert got[step] == pytest.approx(want[step], rel=rtol, abs=1e-300), (key, step)


def params_of(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# -- (a) + (b): the recipe against torch.optim.AdamW + a step-interval torch scheduler ---------
def _warmup(total: int) -> int:
    return max(1, total // 4)


def fusedlr_adamw_recipe(module):
    total = module.trainer.estimated_stepping_batches
    warm = _warmup(total)
    return fusedlr.AdamW(module.parameters(), lr=LR, weight_decay=0.05, schedule=S.SequentialLR(
        [S.LinearLR(0.1, 1.0, warm), S.CosineAnnealingLR(total - warm)], [warm]))


def torch_adamw_with_scheduler(module):
    total = module.trainer.estimated_stepping_batches
    warm = _warmup(total)
    opt = torch.optim.AdamW(module.parameters(), lr=LR, weight_decay=0.05, foreach=False)
    lr_sched = sched.SequentialLR(opt, [sched.LinearLR(opt, 0.1, 1.0, warm),
                                        sched.CosineAnnealingLR(opt, total - warm)], [warm])
    return {"optimizer": opt, "lr_scheduler": {"scheduler": lr_sched, "interval": "step"}}


@pytest.mark.parametrize("trainer_kwargs, loss_rtol", [
    pytest.param({}, FP32_RTOL, id="fp32"),
    pytest.param({"precision": "64-true"}, 1e-12, id="fp64"),  # DESIGN.md's fp64 bar
    pytest.param({"accumulate_grad_batches": 2, "gradient_clip_val": 0.5}, FP32_RTOL,
                 id="fp32-accumulate2-clip"),
])
def test_recipe_matches_torch_scheduler_and_logs_kernel_lr(tmp_path, trainer_kwargs, loss_rtol):
    loader, init = random_loader(6), random_init_state()
    max_epochs = 2

    oracle = TinyClassifier(torch_adamw_with_scheduler, init)
    native_monitor, ours_on_torch = pl.callbacks.LearningRateMonitor(), fl.LearningRateMonitor()
    _, oracle_log, _, _ = fit(oracle, loader, tmp_path / "torch", max_epochs=max_epochs,
                              callbacks=[native_monitor, ours_on_torch], **trainer_kwargs)

    fused = TinyClassifier(fusedlr_adamw_recipe, init)
    trainer, log, doubles, caught = fit(fused, loader, tmp_path / "fusedlr",
                                        max_epochs=max_epochs,
                                        callbacks=[fl.LearningRateMonitor()], **trainer_kwargs)
    assert not [w for w in caught if issubclass(w.category, fusedlr.HostLRWarning)]  # no read
    opt = trainer.optimizers[0]
    total = trainer.estimated_stepping_batches
    assert opt.host_step_count == total == int(opt.schedule_counter) == len(oracle_log.series(
        "lr-AdamW"))

    # (a) same training: per-step loss and final weights.
    torch.testing.assert_close(torch.stack(fused.losses), torch.stack(oracle.losses),
                               rtol=loss_rtol, atol=0.0)
    for got, want in zip(params_of(fused), params_of(oracle), strict=True):
        torch.testing.assert_close(got, want, rtol=loss_rtol, atol=loss_rtol * 1e-1)

    # (b) the logged lr is the kernel's: torch's scheduler lr at every step (Lightning's own
    # monitor on the oracle run), and fusedlr's schedule evaluated on the host.
    assert log.keys() == oracle_log.keys() == {"lr-AdamW"}
    assert_same_series(log, oracle_log, ["lr-AdamW"])
    expected = opt.param_groups[0]["schedule"].values(total, LR).tolist()
    assert log.series("lr-AdamW") == dict(enumerate(expected))
    metric = trainer.callback_metrics["lr-AdamW"]  # float32 as Lightning's, but kept on the host
    assert metric.device.type == "cpu" and torch.equal(metric, torch.tensor(expected[-1]))
    # For a torch optimizer, fusedlr's monitor is Lightning's.
    assert ours_on_torch.lrs == native_monitor.lrs

    # (d) the recipe does not double-schedule.
    assert doubles == []


# -- (b) momentum, several named param groups, weight decay --------------------------------------
def fusedlr_sgd_one_cycle(module):
    total = module.trainer.estimated_stepping_batches
    return fusedlr.SGD([
        {"params": module.net[0].parameters(), "schedule": S.OneCycleLR(0.2, total_steps=total)},
        {"params": module.net[2].parameters(), "name": "head", "weight_decay": 1e-3,
         "schedule": S.OneCycleLR(0.05, total_steps=total)},
    ], lr=0.01, momentum=0.9)


def torch_sgd_one_cycle(module):
    total = module.trainer.estimated_stepping_batches
    opt = torch.optim.SGD([
        {"params": module.net[0].parameters()},
        {"params": module.net[2].parameters(), "name": "head", "weight_decay": 1e-3},
    ], lr=0.01, momentum=0.9, foreach=False)
    one_cycle = sched.OneCycleLR(opt, max_lr=[0.2, 0.05], total_steps=total)
    return [opt], [{"scheduler": one_cycle, "interval": "step"}]


def test_monitor_logs_kernel_momentum_per_named_group(tmp_path):
    loader, init = random_loader(5), random_init_state()
    monitor_args = {"logging_interval": "step", "log_momentum": True, "log_weight_decay": True}

    oracle = TinyClassifier(torch_sgd_one_cycle, init)
    _, oracle_log, _, _ = fit(oracle, loader, tmp_path / "torch", max_epochs=3,
                              callbacks=[pl.callbacks.LearningRateMonitor(**monitor_args)])
    fused = TinyClassifier(fusedlr_sgd_one_cycle, init)
    _, log, doubles, _ = fit(fused, loader, tmp_path / "fusedlr", max_epochs=3,
                             callbacks=[fl.LearningRateMonitor(**monitor_args)])

    keys = {f"lr-SGD/{g}{suffix}" for g in ("pg1", "head")
            for suffix in ("", "-momentum", "-weight_decay")}
    assert log.keys() == oracle_log.keys() == keys
    assert_same_series(log, oracle_log, sorted(keys))
    assert len(log.series("lr-SGD/head-momentum")) == 15
    torch.testing.assert_close(torch.stack(fused.losses), torch.stack(oracle.losses),
                               rtol=FP32_RTOL, atol=0.0)
    assert doubles == []


# -- epochs: steps_per_epoch from optimizer_steps_per_epoch, logging_interval="epoch" ----------
def fusedlr_adam_step_per_epoch(module):
    return fusedlr.Adam(module.parameters(), lr=LR, schedule=S.StepLR(1, 0.5),
                        steps_per_epoch=fl.optimizer_steps_per_epoch(module.trainer))


def torch_adam_step_per_epoch(module):
    opt = torch.optim.Adam(module.parameters(), lr=LR, foreach=False)
    return {"optimizer": opt, "lr_scheduler": sched.StepLR(opt, 1, 0.5)}  # interval: epoch


def test_epoch_schedule_with_incomplete_accumulation(tmp_path):
    # 5 batches, accumulate 2: Lightning steps after batches 2, 4 and 5, three steps an epoch.
    loader, init = random_loader(5), random_init_state()
    kwargs = {"max_epochs": 3, "accumulate_grad_batches": 2}

    oracle = TinyClassifier(torch_adam_step_per_epoch, init)
    _, oracle_log, _, _ = fit(oracle, loader, tmp_path / "torch",
                              callbacks=[pl.callbacks.LearningRateMonitor("epoch")], **kwargs)
    fused = TinyClassifier(fusedlr_adam_step_per_epoch, init)
    trainer, log, doubles, _ = fit(fused, loader, tmp_path / "fusedlr",
                                   callbacks=[fl.LearningRateMonitor("epoch")], **kwargs)

    assert trainer.optimizers[0].param_groups[0]["steps_per_epoch"] == 3
    assert trainer.optimizers[0].host_step_count == 9
    assert oracle_log.series("lr-Adam") == {0: LR, 3: LR / 2, 6: LR / 4}
    assert_same_series(log, oracle_log, ["lr-Adam"], rtol=0)
    torch.testing.assert_close(torch.stack(fused.losses), torch.stack(oracle.losses),
                               rtol=FP32_RTOL, atol=0.0)
    assert doubles == []


# -- (c) resume through trainer.fit(ckpt_path=...) -------------------------------------------
def test_checkpoint_resume_is_bit_exact(tmp_path):
    loader, init = random_loader(4), random_init_state()
    full = TinyClassifier(fusedlr_adamw_recipe, init)
    every_epoch = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1,
                                               every_n_epochs=1)
    _, full_log, doubles, _ = fit(full, loader, tmp_path / "full", max_epochs=4,
                                  callbacks=[every_epoch, fl.LearningRateMonitor()],
                                  checkpointing=True)
    ckpt = tmp_path / "ckpt" / "epoch=1-step=8.ckpt"
    assert ckpt.exists(), sorted(p.name for p in (tmp_path / "ckpt").iterdir())

    resumed = TinyClassifier(fusedlr_adamw_recipe, random_init_state())  # other weights
    trainer, log, doubles_resumed, _ = fit(resumed, loader, tmp_path / "resumed", max_epochs=4,
                                           callbacks=[fl.LearningRateMonitor()], ckpt_path=ckpt)

    for got, want in zip(resumed.parameters(), full.parameters(), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(torch.stack(resumed.losses), torch.stack(full.losses[8:]))
    opt = trainer.optimizers[0]
    assert opt.host_step_count == int(opt.schedule_counter) == 16
    full_lr = full_log.series("lr-AdamW")
    assert log.series("lr-AdamW") == {k: v for k, v in full_lr.items() if k >= 8}
    assert doubles == doubles_resumed == []

    # The checkpoint's schedule is restored (as a torch scheduler's state is); a longer run sets
    # a new one after the restore, and it continues from the restored count.
    longer = NewScheduleOnResume(fusedlr_adamw_recipe, random_init_state())
    _, log, doubles, _ = fit(longer, loader, tmp_path / "longer", max_epochs=6,
                             callbacks=[fl.LearningRateMonitor()], ckpt_path=ckpt)
    expected = S.CosineAnnealingLR(24).values(24, LR).tolist()
    assert log.series("lr-AdamW") == {k: expected[k] for k in range(8, 24)}
    assert doubles == []


class NewScheduleOnResume(TinyClassifier):
    def on_train_start(self):  # runs after Lightning restored the optimizer
        total = self.trainer.estimated_stepping_batches
        self.trainer.optimizers[0].param_groups[0]["schedule"] = S.CosineAnnealingLR(total)


# -- (d) double scheduling --------------------------------------------------------------------
def fusedlr_scheduled_plus_torch_scheduler(module):
    opt = fusedlr.AdamW(module.parameters(), lr=LR, schedule=S.CosineAnnealingLR(8))
    return [opt], [{"scheduler": sched.LambdaLR(opt, lambda k: 0.9**k), "interval": "step"}]


def fusedlr_unscheduled_plus_torch_scheduler(module):
    opt = fusedlr.AdamW(module.parameters(), lr=LR, schedule=None)
    return [opt], [{"scheduler": sched.LambdaLR(opt, lambda k: 0.9**k), "interval": "step"}]


def test_fusedlr_schedule_plus_lightning_scheduler_warns(tmp_path):
    loader, init = random_loader(4), random_init_state()
    _, _, doubles, _ = fit(TinyClassifier(fusedlr_scheduled_plus_torch_scheduler, init), loader,
                           tmp_path / "double", max_steps=3)
    assert len(doubles) == 1
    message = str(doubles[0].message)
    assert "param group 0" in message and "lr_scheduler" in message

    # schedule=None: torch's scheduler alone drives group['lr'], no warning, and the monitor
    # logs what torch's scheduler set for each step.
    _, log, doubles, _ = fit(TinyClassifier(fusedlr_unscheduled_plus_torch_scheduler, init),
                             loader, tmp_path / "single", max_steps=4,
                             callbacks=[fl.LearningRateMonitor()])
    assert doubles == []
    assert log.series("lr-AdamW") == pytest.approx({k: LR * 0.9**k for k in range(4)}, rel=1e-15)


# -- the host cannot know the lr: the device is read, with one HostLRWarning ------------------
class PlateauOnTrainLoss(TinyClassifier):
    """Attaches a fusedlr.ReduceLROnPlateau and steps it with a constant metric each epoch:
    the second epoch end reduces the lr (patience 0)."""

    def configure_optimizers(self):
        opt = fusedlr.SGD(self.parameters(), lr=LR, schedule=S.ConstantLR(1.0, 0))
        self.plateau = fusedlr.ReduceLROnPlateau(opt, factor=0.5, patience=0)
        return opt

    def on_train_epoch_end(self):
        self.plateau.step(torch.tensor(1.0))


def test_monitor_reads_device_when_host_lr_unknown(tmp_path):
    loader = random_loader(3)
    _, log, doubles, caught = fit(PlateauOnTrainLoss(None), loader, tmp_path, max_epochs=3,
                                  callbacks=[fl.LearningRateMonitor("step")])
    host_warnings = [w for w in caught if issubclass(w.category, fusedlr.HostLRWarning)]
    assert len(host_warnings) == 1 and "ReduceLROnPlateau" in str(host_warnings[0].message)
    assert log.series("lr-SGD") == pytest.approx(
        {k: LR if k < 6 else LR / 2 for k in range(9)}, rel=1e-15)
    assert doubles == []


# -- mixed precision: Lightning refuses to clip for fused optimizers; clip_gradients does ------
class FusedClipping(TinyClassifier):
    """The recipe's module with fusedlr's clip_gradients as its clipping hook."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None):
        fl.clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)


def _mixed(precision: str) -> dict:
    if precision == "16-mixed":  # Lightning maps it to bf16 on the CPU: ask for fp16 explicitly
        return {"plugins": [pl.plugins.precision.MixedPrecision("16-mixed", "cpu")]}
    return {"precision": precision}


# The loss is computed in autocast's 16-bit type: a 1-ulp difference of an fp32 weight can flip
# a 16-bit rounding, so the runs agree to that type's precision (fp16 2^-11, bf16 2^-8).
@pytest.mark.parametrize("precision, loss_rtol", [("16-mixed", 2e-3), ("bf16-mixed", 1e-2)])
@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_mixed_precision_clipping(tmp_path, precision, loss_rtol, algorithm):
    loader, init = random_loader(4), random_init_state()
    clip = {"max_epochs": 2, "gradient_clip_val": 0.05, "gradient_clip_algorithm": algorithm}
    oracle = TinyClassifier(torch_adamw_with_scheduler, init)
    fit(oracle, loader, tmp_path / "torch", **clip, **_mixed(precision))

    with pytest.raises(RuntimeError, match="does not allow for gradient clipping"):
        fit(TinyClassifier(fusedlr_adamw_recipe, init), loader, tmp_path / "refused", **clip,
            **_mixed(precision))

    fused = FusedClipping(fusedlr_adamw_recipe, init)
    trainer, _, doubles, _ = fit(fused, loader, tmp_path / "fusedlr", **clip,
                                 **_mixed(precision))
    torch.testing.assert_close(torch.stack(fused.losses), torch.stack(oracle.losses),
                               rtol=loss_rtol, atol=0.0)
    for got, want in zip(params_of(fused), params_of(oracle), strict=True):
        torch.testing.assert_close(got, want, rtol=loss_rtol, atol=loss_rtol * 1e-1)
    assert doubles == []
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    assert (scaler is not None) == (precision == "16-mixed")


# -- API edges ----------------------------------------------------------------------------------
def test_bad_input_and_helpers(tmp_path):
    module = FusedClipping(fusedlr_adamw_recipe)
    module.trainer = pl.Trainer(logger=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="gradient_clip_val must be >= 0"):
        fl.clip_gradients(module, None, -1.0)
    with pytest.raises(TypeError, match="gradient_clip_val must be a number"):
        fl.clip_gradients(module, None, "1")
    with pytest.raises(ValueError, match="gradient_clip_algorithm must be one of"):
        fl.clip_gradients(module, None, 1.0, "l2")
    with pytest.raises(TypeError, match="trainer must be a"):
        fl.optimizer_steps_per_epoch(object())
    with pytest.raises(pl.utilities.exceptions.MisconfigurationException,
                       match="logging_interval"):
        fl.LearningRateMonitor(logging_interval="batch")
    fused = fusedlr.AdamW([nn.Parameter(torch.zeros(1))])
    assert fl.is_fusedlr_optimizer(fused)
    assert fl.is_fusedlr_optimizer(pl.core.optimizer.LightningOptimizer(fused))
    assert not fl.is_fusedlr_optimizer(torch.optim.AdamW([nn.Parameter(torch.zeros(1))]))


def test_fusedlr_does_not_import_lightning():
    code = ("import sys, fusedlr, fusedlr.integrations; "
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'lightning_fabric')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
