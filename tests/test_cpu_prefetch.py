"""The CPU kernels' software prefetch: results independent of the distance, and its settings.

The prefetch (``csrc/cpu/prefetch.h``, used by ``csrc/cpu/update_kernels.h``) only asks for
cache lines ahead of each loop; it must not change a single bit of any result. Every kernel
family (SGD with and without momentum, Adam with amsgrad, AdamW, one-pass master weights,
schedule-free SGD and AdamW) is stepped with prefetch off and at several distances (one element,
within a line, the default, the largest: 8192, past most of these arrays) on sizes that end
inside a vector, inside a line and past a 16K work item, and must give bit-identical params and
state; the default-distance run is also checked against torch.optim so the comparison is between
right answers. The ISAs this CPU has (AVX2, AVX-512, the portable one) each run the same check
in a subprocess. A prefetch cannot change results, so these tests catch a prefetch that breaks
the loops, not one that does nothing: ``tests/cpp/prefetch_test.cpp`` checks the lines it asks
for, and ``benchmarks/bench_stream.py`` what it is worth.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import fusedlr
from fusedlr import _C, cpu_tuning, schedules

SIZES = (1, 7, 17, 4097, 16384 * 2 + 5, 65537)
DISTANCES = (1, 7, 16, 512, 8192)


@pytest.fixture(autouse=True)
def _restore_distance():
    before = cpu_tuning.prefetch_distance()
    yield
    _C.set_cpu_prefetch_distance(before)


def _make(kind, params):
    sched = schedules.StepLR(2, gamma=0.5)
    if kind == "sgd":
        return fusedlr.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                           schedule=sched)
    if kind == "sgd_plain":
        return fusedlr.SGD(params, lr=0.05, schedule=sched)
    if kind == "adam_amsgrad":
        return fusedlr.Adam(params, lr=1e-2, amsgrad=True, weight_decay=1e-3, schedule=sched)
    if kind == "adamw":
        return fusedlr.AdamW(params, lr=1e-2, weight_decay=0.1, schedule=sched)
    if kind == "adamw_master":
        return fusedlr.AdamW(params, lr=1e-2, weight_decay=0.1, schedule=sched,
                             master_weights=True)
    if kind == "sgd_master":
        return fusedlr.SGD(params, lr=0.05, momentum=0.9, schedule=sched, master_weights=True)
    if kind == "sf_sgd":
        return fusedlr.SGDScheduleFree(params, lr=0.1, warmup_steps=2)
    if kind == "sf_adamw":
        return fusedlr.AdamWScheduleFree(params, lr=1e-2, warmup_steps=2, weight_decay=0.01)
    raise AssertionError(kind)


def _torch_reference(kind, params):
    """The torch.optim equivalent of the prefetch-off run, where one exists."""
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    elif kind == "sgd_plain":
        opt = torch.optim.SGD(params, lr=0.05)
    elif kind == "adam_amsgrad":
        opt = torch.optim.Adam(params, lr=1e-2, amsgrad=True, weight_decay=1e-3)
    elif kind == "adamw":
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    else:
        return None
    return opt, torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)


def _run(kind, dtype, distance, seed, steps=4):
    """Params and state after `steps` steps with the prefetch distance set to `distance`."""
    _C.set_cpu_prefetch_distance(distance)
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen).to(dtype) for n in SIZES]
    opt = _make(kind, params)
    schedule_free = kind.startswith("sf_")
    if schedule_free:
        opt.train()
    grads = [[torch.randn(n, generator=gen).to(dtype) for n in SIZES] for _ in range(steps)]
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        opt.step()
    if schedule_free:  # the eval switch is a span kernel too
        opt.eval()
    out = [p.detach().clone() for p in params]
    for p in params:
        for value in opt.state[p].values():
            if torch.is_tensor(value):
                out.append(value.detach().clone())
    return out, params, grads


KINDS_DTYPES = [
    ("sgd", torch.float32), ("sgd", torch.float64), ("sgd", torch.bfloat16),
    ("sgd_plain", torch.float32),
    ("adam_amsgrad", torch.float32), ("adam_amsgrad", torch.float16),
    ("adamw", torch.float32), ("adamw", torch.bfloat16), ("adamw", torch.float64),
    ("adamw_master", torch.bfloat16), ("sgd_master", torch.float16),
    ("sf_sgd", torch.float32), ("sf_adamw", torch.float32), ("sf_adamw", torch.bfloat16),
]


@pytest.mark.parametrize("kind,dtype", KINDS_DTYPES)
def test_distance_changes_no_bit(kind, dtype):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    off, _, _ = _run(kind, dtype, 0, seed)
    for distance in DISTANCES:
        on, _, _ = _run(kind, dtype, distance, seed)
        assert len(on) == len(off)
        for a, b in zip(on, off, strict=True):
            assert torch.equal(a, b), (kind, dtype, distance, seed)


@pytest.mark.parametrize("kind", ["sgd", "sgd_plain", "adam_amsgrad", "adamw"])
def test_prefetch_run_matches_torch(kind):
    """The default-distance run against torch.optim + StepLR (float64: 1e-12)."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    ours, _, grads = _run(kind, torch.float64, 512, seed)
    gen = torch.Generator().manual_seed(seed)
    ref = [torch.randn(n, generator=gen).double() for n in SIZES]
    opt, sched = _torch_reference(kind, ref)
    for gs in grads:
        for p, g in zip(ref, gs, strict=True):
            p.grad = g.clone()
        opt.step()
        sched.step()
    for a, b in zip(ours[: len(SIZES)], ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_set_and_get():
    assert _C.cpu_prefetch_limit() == 8192
    for value in (0, 1, 333, _C.cpu_prefetch_limit()):
        cpu_tuning.set_prefetch_distance(value)
        assert cpu_tuning.prefetch_distance() == value == _C.cpu_prefetch_distance()


@pytest.mark.parametrize("bad", [-1, 8193, 1 << 20, 2**40])
def test_out_of_range_refused_unchanged(bad):
    cpu_tuning.set_prefetch_distance(96)
    with pytest.raises(ValueError, match=r"elements must be in \[0, 8192\]"):
        cpu_tuning.set_prefetch_distance(bad)
    with pytest.raises(ValueError, match=r"elements must be in \[0, 8192\]"):
        _C.set_cpu_prefetch_distance(bad if bad < 2**40 else -5)
    assert cpu_tuning.prefetch_distance() == 96


def test_integer_types_accepted():
    np = pytest.importorskip("numpy")
    for value, want in ((np.int64(256), 256), (np.uint16(8192), 8192), (torch.tensor(3), 3)):
        cpu_tuning.set_prefetch_distance(value)
        assert cpu_tuning.prefetch_distance() == want


@pytest.mark.parametrize("bad", [1.5, True, "8", None, torch.tensor(2.0)])
def test_wrong_type_refused(bad):
    cpu_tuning.set_prefetch_distance(64)
    with pytest.raises(TypeError, match="elements must be an int"):
        cpu_tuning.set_prefetch_distance(bad)
    assert cpu_tuning.prefetch_distance() == 64


def _python(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          timeout=300)


@pytest.mark.parametrize("raw", ["abc", "-1", "8193", " 64", "6_4", "1e3", "+5", "000000512",
                                 "\u0665"])
def test_malformed_env_refused_at_import(raw):
    r = _python("import fusedlr", FUSEDLR_CPU_PREFETCH=raw)
    assert r.returncode != 0
    assert "FUSEDLR_CPU_PREFETCH must be an integer number of elements in [0, 8192]" in r.stderr
    assert repr(raw) in r.stderr


def test_env_is_read_at_import_only():
    """The value is fixed at import: changing the environment afterwards changes nothing."""
    code = ("import os, fusedlr; os.environ['FUSEDLR_CPU_PREFETCH'] = 'abc'; "
            "os.environ['FUSEDLR_CPU_PREFETCH'] = '100'; "
            "print(fusedlr.cpu_tuning.prefetch_distance())")
    r = _python(code, FUSEDLR_CPU_PREFETCH="300")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["300"]


def test_env_sets_start_value_and_info_shows_it():
    code = ("import fusedlr, fusedlr.info as i; print(fusedlr.cpu_tuning.prefetch_distance()); "
            "print(i.info()['CPU prefetch distance (elements)'])")
    for raw, want in (("0", 0), ("2048", 2048), ("00008192", 8192), ("", 512)):
        r = _python(code, FUSEDLR_CPU_PREFETCH=raw)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(want), str(want)]


def _isas():
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    have = ["default"]
    if " avx2" in flags and " fma" in flags and " f16c" in flags:
        have.append("avx2")
    if all(f" {x}" in flags for x in ("avx512f", "avx512bw", "avx512vl", "avx512dq")):
        have.append("avx512")
    return have


WORKER = """
import sys, torch
sys.path.insert(0, {tests!r})
import test_cpu_prefetch as t
from fusedlr import _C
assert _C.cpu_isa() == {isa!r}, _C.cpu_isa()
for kind, dtype in [("adamw", torch.float32), ("sgd", torch.bfloat16),
                    ("adamw_master", torch.bfloat16), ("sf_adamw", torch.float32)]:
    off, _, _ = t._run(kind, dtype, 0, {seed})
    for d in (1, 16, 512):
        on, _, _ = t._run(kind, dtype, d, {seed})
        assert all(torch.equal(a, b) for a, b in zip(on, off)), (kind, dtype, d)
print("ok")
"""


@pytest.mark.parametrize("isa", _isas())
def test_each_isa_in_a_subprocess(isa):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    code = WORKER.format(tests=os.path.dirname(__file__), isa=isa, seed=seed)
    r = _python(code, FUSEDLR_CPU_ISA=isa)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
