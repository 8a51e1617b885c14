"""HF transformers Trainer with fusedlr (fusedlr.integrations.transformers), on tiny GPT-2
models built from a config (nothing downloaded), against Trainer's own optimizer and
scheduler (the oracle: torch.optim.AdamW / SGD + HF's get_scheduler LambdaLR)."""

import importlib.util
import math
import os
import random
import subprocess
import sys
import warnings

import pytest
import torch

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.optimization import get_scheduler  # noqa: E402

import fusedlr  # noqa: E402
from fusedlr import schedules as S  # noqa: E402
from fusedlr.integrations.transformers import (  # noqa: E402
    DeviceScheduleView,
    FusedLRTrainer,
    FusedLRTrainerMixin,
    hf_schedule,
    trainer_schedule,
)

NO_DOUBLE_SCHEDULE = pytest.mark.filterwarnings(
    "error::fusedlr.DoubleScheduleWarning", "error::fusedlr.HostLRWarning"
)
SEED = random.SystemRandom().randrange(2**31)  # fresh inputs each run; printed on failure


# -- helpers ---------------------------------------------------------------------------------------
class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the labels are the inputs (causal LM)."""

    def __init__(self, n=48, seq=16, vocab=64, seed=SEED):
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, seq), generator=gen)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_gpt2(dtype=torch.float32, seed=SEED):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=16,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config).to(dtype)


def training_args(out, **overrides):
    kwargs = dict(output_dir=str(out), max_steps=24, per_device_train_batch_size=4,
                  learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=0.15,
                  weight_decay=0.05, max_grad_norm=1.0, logging_steps=1, report_to="none",
                  save_strategy="no", use_cpu=True, seed=SEED % 1000, disable_tqdm=True,
                  log_level="error")
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def logged(trainer, key):
    """{global step: value} of a key Trainer logged every step."""
    return {h["step"]: h[key] for h in trainer.state.log_history if key in h and "step" in h}


def hf_lrs(name, warmup, steps, kwargs, lr):
    """The lrs HF's own scheduler sets at steps 0 .. steps, by stepping it on torch's SGD."""
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=lr)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=steps,
                          scheduler_specific_kwargs=dict(kwargs))
    lrs = []
    for _ in range(steps + 1):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return torch.tensor(lrs, dtype=torch.float64)


def indices(model, group):
    """Positions in model.parameters() of the group's params."""
    ids = {id(p) for p in group["params"]}
    return [i for i, p in enumerate(model.parameters()) if id(p) in ids]


# -- the schedule mapping: every HF type against HF's own scheduler ------------------------------
# (name, lr_scheduler_kwargs, closed form expected)
HF_TYPES = [
    ("linear", {}, True),
    ("cosine", {}, True),
    ("cosine", {"num_cycles": 1.25}, True),
    ("cosine_with_restarts", {}, True),
    ("cosine_with_restarts", {"num_cycles": 3}, True),
    ("polynomial", {}, True),
    ("polynomial", {"power": 2.5, "lr_end": 1e-4}, True),
    ("constant", {}, True),
    ("constant_with_warmup", {}, True),
    ("inverse_sqrt", {}, True),
    ("inverse_sqrt", {"timescale": 13}, True),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}, True),
    ("cosine_with_min_lr", {"min_lr": 2e-4}, True),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.05}, True),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.05, "warmup_lr_rate": 0.2}, True),
    ("warmup_stable_decay", {"num_decay_steps": 7}, True),
    ("warmup_stable_decay", {"num_decay_steps": 9, "min_lr_ratio": 0.1, "warmup_type": "cosine",
                             "decay_type": "1-sqrt"}, True),
    ("warmup_stable_decay", {"num_decay_steps": 6, "decay_type": "linear",
                             "num_stable_steps": 4}, True),
]


@pytest.mark.filterwarnings("ignore:Both num_training_steps and num_stable_steps")  # HF's
@pytest.mark.parametrize(("name", "kwargs", "closed"), HF_TYPES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(HF_TYPES)])
def test_schedule_equals_hf_scheduler_over_the_whole_run(name, kwargs, closed):
    rng = random.Random(f"{SEED}-{name}-{kwargs}")
    lr = 10 ** rng.uniform(-3, -1)  # above polynomial's lr_end (HF requires it)
    for _ in range(6):
        steps = rng.choice([1, 2, 3]) * rng.randrange(12, 120)  # restarts: cycles divide often
        warmup = rng.choice([0, rng.randrange(1, steps // 2 + 1), round(rng.random() * 0.3, 2)])
        if name == "cosine_with_restarts" and kwargs.get("num_cycles", 1) > 1:
            warmup = steps % 3  # 3 cycles divide steps - warmup: the closed form applies
        n_warmup = warmup if isinstance(warmup, int) else math.ceil(steps * warmup)  # HF's
        spec = hf_schedule(name, steps, warmup, kwargs, lr_init=lr)
        want = hf_lrs(name, n_warmup, steps, kwargs, lr)
        got = spec.values(steps + 1, lr)
        where = f"seed={SEED} steps={steps} warmup={warmup} lr={lr} spec={spec!r}"
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12 * lr, msg=where)
        negative_stable = (name == "warmup_stable_decay" and "num_stable_steps" not in kwargs
                           and steps - n_warmup - kwargs["num_decay_steps"] < 0)  # HF's S < 0
        assert isinstance(spec, S.LambdaLR) != (closed and not negative_stable), where


def test_degenerate_lengths_fall_back_to_hf_lambda():
    # warmup >= steps (HF: max(1, .) denominators), and HF's float modulo in
    # cosine_with_restarts ((1/49) * 49 < 1 drops most restarts): reproduced via the table.
    for name, steps, warmup, kwargs in [("cosine", 5, 5, {}), ("cosine", 4, 9, {}),
                                        ("linear", 6, 6, {}), ("constant_with_warmup", 3, 7, {}),
                                        ("cosine_with_restarts", 49, 0, {"num_cycles": 49})]:
        spec = hf_schedule(name, steps, warmup, kwargs)
        torch.testing.assert_close(spec.values(steps + 1), hf_lrs(name, warmup, steps, kwargs, 1.0),
                                   rtol=1e-12, atol=1e-12)


def test_polynomial_group_with_another_lr_follows_hf():
    # HF's lr_end is absolute for optimizer.defaults["lr"]; a group with another lr gets
    # lr_end scaled by its lr / lr_init (HF's LambdaLR multiplies the same factor).
    spec = hf_schedule("polynomial", 30, 4, {"lr_end": 1e-4, "power": 2.0}, lr_init=1e-2,
                       group_lr=5e-3)
    want = 5e-3 * hf_lrs("polynomial", 4, 30, {"lr_end": 1e-4, "power": 2.0}, 1e-2) / 1e-2
    torch.testing.assert_close(spec.values(31, 5e-3), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["reduce_lr_on_plateau", "greedy"])
def test_metric_driven_schedules_are_refused(name):
    with pytest.raises(ValueError, match="driven by evaluation metrics"):
        hf_schedule(name, 100, 10)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: hf_schedule("cosine", 0), "num_training_steps must be an int >= 1"),
    (lambda: hf_schedule("cosine", 10.0), "num_training_steps must be an int >= 1"),
    (lambda: hf_schedule("cosine", 10, -1), "num_warmup_steps must be an int >= 0 or a ratio"),
    (lambda: hf_schedule("cosine", 10, 2.5), "num_warmup_steps must be an int >= 0 or a ratio"),
    (lambda: hf_schedule("cosine", 10, "5"), "num_warmup_steps must be an int >= 0 or a ratio"),
    (lambda: hf_schedule("polynomial", 10), "lr_init is required"),
    (lambda: hf_schedule("cosine", 10, lr_init=-1.0), "lr_init must be a finite number > 0"),
    (lambda: hf_schedule("cosine", 10, scheduler_kwargs=[1]), "scheduler_kwargs must be a dict"),
    (lambda: hf_schedule("cosine_with_min_lr", 10), "min_lr or min_lr_rate"),  # HF's own check
    (lambda: hf_schedule("cosine_annealing", 10), "cosine_annealing"),  # HF's list of names
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_trainer_schedule_reads_training_arguments(tmp_path):
    args = training_args(tmp_path, lr_scheduler_type="cosine_with_min_lr", warmup_steps=0.1,
                         lr_scheduler_kwargs='{"min_lr": 3e-4}')
    assert trainer_schedule(args, 50) == S.from_hf("cosine_with_min_lr", 5, 50, lr_init=3e-3,
                                                   min_lr=3e-4)


# -- Trainer --------------------------------------------------------------------------------------
@NO_DOUBLE_SCHEDULE
def test_trainer_matches_native_adamw_and_cosine(tmp_path):
    # float64 model: the same math as torch.optim.AdamW (foreach=False) + HF's LambdaLR, so the
    # params agree to rounding (op order differs, ~1e-16 per op, grown by 24 Adam steps);
    # Trainer accumulates the logged loss in float32, hence its looser tolerance.
    native_model, fused_model = tiny_gpt2(torch.float64), tiny_gpt2(torch.float64)
    native = Trainer(model=native_model, args=training_args(tmp_path / "n", optim="adamw_torch"),
                     train_dataset=Tokens())
    fused = FusedLRTrainer(model=fused_model, args=training_args(tmp_path / "f"),
                           train_dataset=Tokens())
    native.train()
    fused.train()

    opt = fused.optimizer.optimizer  # inside accelerate's AcceleratedOptimizer
    assert type(opt) is fusedlr.AdamW and isinstance(fused.lr_scheduler, DeviceScheduleView)
    for group, ref in zip(opt.param_groups, native.optimizer.param_groups, strict=True):
        assert indices(fused_model, group) == indices(native_model, ref)  # decay / no decay
        assert group["weight_decay"] == ref["weight_decay"]
        assert (group["betas"], group["eps"]) == (ref["betas"], ref["eps"])
        assert group["lr"] == 3e-3 and "initial_lr" not in group  # the view wrote nothing
    for p, q in zip(fused_model.parameters(), native_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    loss_f, loss_n = logged(fused, "loss"), logged(native, "loss")
    assert sorted(loss_f) == list(range(1, 25))
    for step, value in loss_n.items():
        assert loss_f[step] == pytest.approx(value, rel=1e-6), step
    lr_f, lr_n = logged(fused, "learning_rate"), logged(native, "learning_rate")
    assert lr_f.keys() == lr_n.keys()
    for step, value in lr_n.items():  # native Trainer logs the lr its step used, as we do
        assert lr_f[step] == pytest.approx(value, rel=1e-12, abs=1e-15), step
    # clipping (max_grad_norm=1.0) ran inside the fusedlr step; the logged norm is the same
    assert opt.max_grad_norm == 1.0
    gn_f, gn_n = logged(fused, "grad_norm"), logged(native, "grad_norm")
    assert gn_f.keys() == gn_n.keys() and len(gn_n) == 24
    for step, value in gn_n.items():
        assert gn_f[step] == pytest.approx(value, rel=1e-9), step


def test_clipping_moves_into_the_step(tmp_path):
    """A max_grad_norm every step clips at: Trainer's clip_grad_norm_ + torch AdamW against
    FusedLRTrainer, whose optimizer clips in its step (Trainer's pass skipped); same params, the
    same logged grad_norm (the pre-clip norm)."""
    native_model, fused_model = tiny_gpt2(torch.float64), tiny_gpt2(torch.float64)
    args = dict(max_grad_norm=0.05, max_steps=10)
    native = Trainer(model=native_model,
                     args=training_args(tmp_path / "n", optim="adamw_torch", **args),
                     train_dataset=Tokens())
    fused = FusedLRTrainer(model=fused_model, args=training_args(tmp_path / "f", **args),
                           train_dataset=Tokens())
    native.train()
    fused.train()
    opt = fused.optimizer.optimizer
    assert opt.max_grad_norm == 0.05
    gn_f, gn_n = logged(fused, "grad_norm"), logged(native, "grad_norm")
    assert min(gn_n.values()) > 0.05  # every step clipped
    for step, value in gn_n.items():
        assert gn_f[step] == pytest.approx(value, rel=1e-9), step
    for p, q in zip(fused_model.parameters(), native_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)


class KernelLR(TrainerCallback):
    """Records, before each optimizer step, the lr the kernel is about to use (device read)."""

    def __init__(self):
        self.trainer = None
        self.lrs = {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        fused = self.trainer.optimizer.optimizer
        self.lrs[state.global_step + 1] = [float(x) for x in fused.get_last_lr()]


class MyTrainer(FusedLRTrainerMixin, Trainer):
    """A user's own Trainer subclass, with the mixin first."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


@NO_DOUBLE_SCHEDULE
def test_logged_lr_is_the_kernel_lr_of_each_step(tmp_path):
    steps, lr = 18, 2e-3
    kwargs = {"lr_end": 1e-5, "power": 1.5}
    args = training_args(tmp_path, max_steps=steps, learning_rate=lr, warmup_steps=4,
                         lr_scheduler_type="polynomial", lr_scheduler_kwargs=kwargs,
                         gradient_accumulation_steps=2)
    probe = KernelLR()
    trainer = MyTrainer(model=tiny_gpt2(), args=args, train_dataset=Tokens(), callbacks=[probe])
    probe.trainer = trainer
    trainer.train()

    fused = trainer.optimizer.optimizer
    schedule = fused.param_groups[0]["schedule"]
    kernel = schedule.values(steps, lr)  # the kernels' C++, step t uses entry t
    hf = hf_lrs("polynomial", 4, steps, kwargs, lr)
    lrs = logged(trainer, "learning_rate")
    assert sorted(lrs) == list(range(1, steps + 1))
    for step, value in lrs.items():
        assert value == probe.lrs[step][0] == probe.lrs[step][1] == kernel[step - 1], step
        assert value == pytest.approx(float(hf[step - 1]), rel=1e-12, abs=1e-15), step
    assert fused.host_step_count == steps == int(fused.schedule_counter)  # one per optimizer step
    assert fused.host_lr_unknown_reason is None


@NO_DOUBLE_SCHEDULE
def test_sgd_with_warmup_stable_decay_matches_native(tmp_path):
    kwargs = {"num_decay_steps": 8, "min_lr_ratio": 0.1}
    common = dict(optim="sgd", optim_args="momentum=0.9,nesterov=True", learning_rate=0.05,
                  lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs=kwargs,
                  warmup_steps=3, max_steps=20)
    native_model, fused_model = tiny_gpt2(torch.float64), tiny_gpt2(torch.float64)
    Trainer(model=native_model, args=training_args(tmp_path / "n", **common),
            train_dataset=Tokens()).train()
    trainer = MyTrainer(model=fused_model, args=training_args(tmp_path / "f", **common),
                        train_dataset=Tokens())
    trainer.train()
    opt = trainer.optimizer.optimizer
    assert type(opt) is fusedlr.SGD
    assert (opt.param_groups[0]["momentum"], opt.param_groups[0]["nesterov"]) == (0.9, True)
    assert opt.param_groups[0]["schedule"] == S.WarmupStableDecay(3, 9, 8, 0.1)
    for p, q in zip(fused_model.parameters(), native_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@NO_DOUBLE_SCHEDULE
def test_resume_from_checkpoint_is_bit_exact(tmp_path):
    save = dict(save_strategy="steps", save_steps=10, max_steps=20)
    full_model = tiny_gpt2()
    full = FusedLRTrainer(model=full_model, args=training_args(tmp_path / "a", **save),
                          train_dataset=Tokens())
    full.train()
    checkpoint = tmp_path / "a" / "checkpoint-10"
    assert (checkpoint / "scheduler.pt").is_file()

    resumed_model = tiny_gpt2(seed=SEED + 1)  # other init: the checkpoint must restore it all
    resumed = FusedLRTrainer(model=resumed_model, args=training_args(tmp_path / "b", **save),
                             train_dataset=Tokens())
    resumed.train(resume_from_checkpoint=str(checkpoint))

    for p, q in zip(resumed_model.parameters(), full_model.parameters(), strict=True):
        assert torch.equal(p, q)
    a, b = full.optimizer.optimizer, resumed.optimizer.optimizer
    for p, q in zip(resumed_model.parameters(), full_model.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(b.state[p][key], a.state[q][key]), key
    assert b.host_step_count == 20 == int(b.schedule_counter)
    lr_full, lr_resumed = logged(full, "learning_rate"), logged(resumed, "learning_rate")
    assert lr_resumed == lr_full  # steps 1-10 come from the checkpoint's trainer_state.json
    assert resumed.lr_scheduler.last_epoch == 20


@NO_DOUBLE_SCHEDULE
def test_resume_with_more_steps_follows_the_new_arguments(tmp_path):
    # As HF: the schedule is rebuilt from the current arguments, at the restored step count.
    FusedLRTrainer(model=tiny_gpt2(), args=training_args(tmp_path / "a", save_strategy="steps",
                                                         save_steps=6, max_steps=6),
                   train_dataset=Tokens()).train()
    args = training_args(tmp_path / "b", max_steps=15, lr_scheduler_type="linear", warmup_steps=2)
    trainer = FusedLRTrainer(model=tiny_gpt2(), args=args, train_dataset=Tokens())
    trainer.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-6"))
    hf = hf_lrs("linear", 2, 15, {}, 3e-3)
    lrs = logged(trainer, "learning_rate")
    assert sorted(lrs) == list(range(1, 16))  # 1-6 from the checkpoint's trainer_state.json
    for step, value in lrs.items():
        if step <= 6:
            continue
        assert value == pytest.approx(float(hf[step - 1]), rel=1e-12, abs=1e-15), step


def test_default_trainer_with_a_scheduled_fusedlr_optimizer_warns(tmp_path):
    # Trainer(optimizers=(fusedlr optimizer, None)) adds its LambdaLR ('linear') on top.
    model = tiny_gpt2()
    opt = fusedlr.AdamW(model.parameters(), lr=3e-3, schedule=S.WarmupCosine(2, 10))
    trainer = Trainer(model=model, args=training_args(tmp_path, max_steps=3),
                      train_dataset=Tokens(), optimizers=(opt, None))
    with pytest.warns(fusedlr.DoubleScheduleWarning, match="param group 0"):
        trainer.train()


@NO_DOUBLE_SCHEDULE
def test_recipe_keeps_a_schedule_the_optimizer_already_has(tmp_path):
    model = tiny_gpt2()
    schedule = S.WarmupCosine(2, 10)
    opt = fusedlr.AdamW(model.parameters(), lr=3e-3, schedule=schedule)
    trainer = FusedLRTrainer(model=model, args=training_args(tmp_path, max_steps=6),
                             train_dataset=Tokens(), optimizers=(opt, None))
    trainer.train()
    assert opt.param_groups[0]["schedule"] == schedule  # (a copy: accelerate reloads the state)
    kernel = schedule.values(6, 3e-3)
    assert logged(trainer, "learning_rate") == {s: float(kernel[s - 1]) for s in range(1, 7)}


@NO_DOUBLE_SCHEDULE
def test_optimizer_cls_and_kwargs_with_a_fusedlr_class(tmp_path):
    args = training_args(tmp_path, max_steps=4, lr_scheduler_type="constant_with_warmup",
                         warmup_steps=2)
    trainer = FusedLRTrainer(model=tiny_gpt2(), args=args, train_dataset=Tokens(),
                             optimizer_cls_and_kwargs=(fusedlr.Adam, {"lr": 1e-3, "eps": 1e-6}))
    trainer.train()
    opt = trainer.optimizer.optimizer
    assert type(opt) is fusedlr.Adam and opt.param_groups[0]["eps"] == 1e-6
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]  # Trainer's groups
    assert logged(trainer, "learning_rate") == {1: 0.0, 2: 5e-4, 3: 1e-3, 4: 1e-3}


def test_unsupported_optimizers_are_refused(tmp_path):
    model = tiny_gpt2()
    trainer = FusedLRTrainer(model=model, args=training_args(tmp_path, optim="adagrad"),
                             train_dataset=Tokens())
    with pytest.raises(ValueError, match="optim='adagrad' is not supported"):
        trainer.train()
    torch_opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = FusedLRTrainer(model=model, args=training_args(tmp_path), train_dataset=Tokens(),
                             optimizers=(torch_opt, None))
    with pytest.raises(TypeError, match="expected a fusedlr optimizer"):
        trainer.train()


def test_view_counts_and_saves_plain_data():
    param = torch.nn.Parameter(torch.zeros(3))
    opt = fusedlr.SGD([param], lr=0.1, schedule=S.StepLR(2, 0.5))
    view = DeviceScheduleView(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            param.grad = torch.ones(3)
            opt.step()
            view.step()
    assert view.get_last_lr() == [0.05] and view.get_lr() == [0.025]
    assert view.state_dict() == {"last_epoch": 4, "_step_count": 5}
    assert opt.param_groups[0]["lr"] == 0.1 and "initial_lr" not in opt.param_groups[0]
    with pytest.raises(ValueError, match="epoch must be None"):
        view.step(5)


def test_importing_fusedlr_does_not_import_transformers():
    code = ("import sys, fusedlr, fusedlr.integrations; "
            "sys.exit('transformers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bench_trainer_quick_runs(capsys):
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "bench_trainer.py")
    spec = importlib.util.spec_from_file_location("bench_trainer", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| step |" in out and "| optimizer |" in out and "Final training loss" in out
