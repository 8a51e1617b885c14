"""The archs the built extension reports (``_C.cuda_archs()``, ``fusedlr info``) and the check that
refuses, when a param group is added, a CUDA param on a GPU the build has no kernel for."""

from __future__ import annotations

import glob
import os
import shlex
import sys
import types

import pytest
import torch

import fusedlr
from fusedlr import _C, _arch_check, info, optim, schedule_free
from fusedlr._cuda_arch import archs_from_gencode, kernel_for, parse_arch, sorted_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_DEFAULT = ["sm_80", "sm_90", "compute_90"]


def test_extension_reports_its_archs():
    archs = _C.cuda_archs()
    assert isinstance(archs, list) and all(isinstance(a, str) for a in archs)
    assert archs == sorted_names(archs)  # canonical: unique, SASS first, by capability
    if _C.cuda_compiled():
        assert any(parse_arch(a).kind == "sm" for a in archs), archs
    else:
        assert archs == []


def _build_ninja():
    """The ninja file of the in-place build that produced fusedlr._C, or None."""
    tag = sys.implementation.cache_tag
    found = glob.glob(os.path.join(ROOT, "build", f"temp.*{tag}*", "build.ninja"))
    so = _C.__file__
    if len(found) != 1 or os.path.dirname(so) != os.path.join(ROOT, "fusedlr"):
        return None
    if os.path.getmtime(found[0]) > os.path.getmtime(so):  # written after this _C was linked
        return None
    return found[0]


def test_extension_archs_match_the_gencode_flags_it_was_built_with():
    path = _build_ninja()
    if path is None:
        pytest.skip("no in-place build (build/temp.*/build.ninja) beside this fusedlr._C")
    with open(path) as f:
        lines = [line for line in f if line.startswith("cuda_post_cflags = ")]
    if bool(lines) != _C.cuda_compiled():
        pytest.skip(f"{path} is from another build (CUDA {bool(lines)}) than this fusedlr._C")
    flags = shlex.split(lines[0].split("=", 1)[1]) if lines else []
    assert _C.cuda_archs() == archs_from_gencode(flags)


# -- the construction-time check -----------------------------------------------------------------
@pytest.fixture
def fake_gpus(monkeypatch):
    """cuda:0 is a T4 (7.5), cuda:1 an A100 (8.0); the build holds the old default archs."""
    caps = {0: (7, 5), 1: (8, 0)}
    names = {0: "Tesla T4", 1: "NVIDIA A100-SXM4-40GB"}
    queries = []

    def capability(i):
        queries.append(i)
        return caps[i]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", names.__getitem__)
    monkeypatch.setattr(_arch_check, "_C", types.SimpleNamespace(cuda_archs=lambda: OLD_DEFAULT))
    _arch_check.missing_kernel.cache_clear()
    yield queries
    _arch_check.missing_kernel.cache_clear()


def _on(index):
    """A stand-in for a param on cuda:index (the check reads only ``.device``)."""
    return types.SimpleNamespace(device=torch.device("cuda", index))


def test_gpu_without_kernel_is_refused(fake_gpus):
    with pytest.raises(RuntimeError) as err:
        _arch_check.check_cuda_kernels([torch.zeros(1), _on(1), _on(0)], 3)
    msg = str(err.value)
    assert msg.startswith("param 2 of param group 3: cuda:0 (Tesla T4, compute capability 7.5)")
    assert "SASS sm_80, sm_90; PTX compute_90" in msg
    assert 'TORCH_CUDA_ARCH_LIST="7.5" pip install --no-build-isolation -e .' in msg


def test_check_asks_each_gpu_once(fake_gpus):
    for _ in range(3):
        _arch_check.check_cuda_kernels([_on(1), _on(1)], 0)
        with pytest.raises(RuntimeError):
            _arch_check.check_cuda_kernels([_on(0)], 0)
    assert sorted(fake_gpus) == [0, 1]


def test_cpu_params_ask_nothing(monkeypatch):
    def refuse(index):
        raise AssertionError("a CPU param must not query a GPU")

    monkeypatch.setattr(_arch_check, "missing_kernel", refuse)
    _arch_check.check_cuda_kernels([torch.zeros(3), torch.zeros(2, dtype=torch.float64)], 0)
    fusedlr.SGD([torch.zeros(3, requires_grad=True)], lr=0.1)


@pytest.mark.parametrize(
    "module, make",
    [
        (optim, lambda ps: fusedlr.SGD(ps, lr=0.1, momentum=0.9)),
        (optim, lambda ps: fusedlr.AdamW(ps, lr=1e-3)),
        (schedule_free, lambda ps: fusedlr.SGDScheduleFree(ps, lr=0.1)),
        (schedule_free, lambda ps: fusedlr.AdamWScheduleFree(ps, lr=1e-3)),
    ],
)
def test_optimizers_check_every_group_before_adding_it(monkeypatch, module, make):
    seen = []

    def check(params, index):
        seen.append((index, len(params)))
        if index == 1:
            raise RuntimeError("param 0 of param group 1: cuda:0 (...) has no fusedlr kernel")

    monkeypatch.setattr(module, "check_cuda_kernels", check)
    p, q = torch.zeros(4, requires_grad=True), torch.zeros(5, requires_grad=True)
    opt = make([p])
    with pytest.raises(RuntimeError, match="has no fusedlr kernel"):
        opt.add_param_group({"params": [q, torch.zeros(2, requires_grad=True)]})
    assert seen == [(0, 1), (1, 2)]
    assert len(opt.param_groups) == 1  # refused before anything changed
    getattr(opt, "train", lambda: None)()  # schedule-free optimizers step in train mode
    p.grad = torch.ones(4)
    opt.step()


# -- fusedlr info --------------------------------------------------------------------------------
def test_info_lists_the_archs():
    assert info.info()["CUDA archs"] == (" ".join(_C.cuda_archs()) or "-")


def test_info_names_the_code_each_gpu_runs(monkeypatch):
    caps = [(7, 5), (9, 0), (12, 0)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(caps))
    monkeypatch.setattr(torch.cuda, "get_device_capability", caps.__getitem__)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"GPU{i}")
    arg_bytes = {1: 32764, 2: 4096}  # what the launcher's device query would answer
    monkeypatch.setattr(info, "_C", types.SimpleNamespace(
        cuda_archs=lambda: OLD_DEFAULT, cuda_kernel_arg_bytes=arg_bytes.__getitem__))
    rows = info._device_rows()
    assert rows == {
        "cuda:0": "GPU0, capability 7.5: no kernel in this build (set TORCH_CUDA_ARCH_LIST)",
        "cuda:1": "GPU1, capability 9.0: runs sm_90, 32764-byte kernel arguments",
        "cuda:2": "GPU2, capability 12.0: runs compute_90, 4096-byte kernel arguments",
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.skipif(not _C.cuda_compiled(), reason="fusedlr was built without CUDA kernels")
def test_this_gpu_has_a_kernel():
    cap = torch.cuda.get_device_capability()
    assert kernel_for(cap, _C.cuda_archs()) is not None, (cap, _C.cuda_archs())
    assert _arch_check.missing_kernel(torch.cuda.current_device()) is None
    p = torch.zeros(8, device="cuda", requires_grad=True)
    fusedlr.Adam([p], lr=1e-3)
