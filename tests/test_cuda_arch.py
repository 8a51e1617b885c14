"""fusedlr._cuda_arch: arch names, the default arch list of the build, and which compiled code a
GPU of a given capability runs (CUDA's binary compatibility rules). Pure functions: no GPU."""

from __future__ import annotations

import itertools

import pytest

from fusedlr._cuda_arch import (
    Arch,
    archs_from_gencode,
    default_arch_list,
    describe,
    kernel_for,
    no_kernel_message,
    parse_arch,
    runs_on,
    sorted_names,
)

# torch 2.14.1+cu130's torch.cuda.get_arch_list() and nvcc 13.0's --list-gpu-code, as printed.
TORCH_CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
NVCC_13 = [
    "sm_75",
    "sm_80",
    "sm_86",
    "sm_87",
    "sm_88",
    "sm_89",
    "sm_90",
    "sm_100",
    "sm_110",
    "sm_103",
    "sm_120",
    "sm_121",
]
# torch 2.7+cu126 style list: older archs nvcc 13 no longer compiles, PTX listed too.
TORCH_CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90"]
OLD_DEFAULT = ["sm_80", "sm_90", "compute_90"]  # what TORCH_CUDA_ARCH_LIST=8.0;9.0+PTX builds


@pytest.mark.parametrize(
    "name, arch",
    [
        ("sm_75", Arch("sm", 7, 5)),
        ("sm_100", Arch("sm", 10, 0)),
        ("sm_121", Arch("sm", 12, 1)),
        ("sm_90a", Arch("sm", 9, 0, "a")),
        ("sm_100f", Arch("sm", 10, 0, "f")),
        ("compute_120", Arch("compute", 12, 0)),
        ("compute_90a", Arch("compute", 9, 0, "a")),
    ],
)
def test_parse_arch(name, arch):
    assert parse_arch(name) == arch
    assert arch.name == name


@pytest.mark.parametrize(
    "bad", ["sm_9", "sm90", "9.0", "gfx90a", "sm_90x", "SM_90", "", " sm_90", "compute_", None, 90]
)
def test_parse_arch_refuses(bad):
    with pytest.raises(ValueError, match=r"arch must be a name like 'sm_90'.*got"):
        parse_arch(bad)


def test_sorted_names_orders_by_capability_sass_first():
    names = ["compute_90", "sm_120", "sm_90a", "sm_100", "sm_90", "sm_75", "sm_90"]
    assert sorted_names(names) == ["sm_75", "sm_90", "sm_90a", "sm_100", "sm_120", "compute_90"]


# -- the default arch list ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "torch_archs, nvcc_archs, expected",
    [
        (TORCH_CU130, NVCC_13, "7.5;8.0;8.6;9.0;10.0;12.0+PTX"),
        (TORCH_CU130, None, "7.5;8.0;8.6;9.0;10.0;12.0+PTX"),  # nvcc cannot say: no filter
        (TORCH_CU126, NVCC_13, "7.5;8.0;8.6;9.0+PTX"),  # CUDA 13 dropped sm_50 .. sm_70
        (TORCH_CU126, None, "5.0;6.0;7.0;7.5;8.0;8.6;9.0+PTX"),
        (["sm_120", "sm_90", "sm_100"], NVCC_13, "9.0;10.0;12.0+PTX"),  # numeric, not string order
        (["sm_90a", "sm_90"], NVCC_13, "9.0+PTX"),  # arch-specific variants become generic
        (["sm_90a", "sm_100a"], NVCC_13, "9.0;10.0+PTX"),
        (["sm_80", "compute_80"], NVCC_13, "8.0+PTX"),
        (["sm_80", "sm_90"], ["sm_80"], "8.0+PTX"),  # torch's newest not compilable here
    ],
)
def test_default_arch_list(torch_archs, nvcc_archs, expected):
    assert default_arch_list(torch_archs, nvcc_archs) == expected


@pytest.mark.parametrize(
    "torch_archs, nvcc_archs", [([], NVCC_13), (["sm_50", "sm_60"], NVCC_13), ([], None)]
)
def test_default_arch_list_refuses_an_empty_result(torch_archs, nvcc_archs):
    with pytest.raises(ValueError, match="no CUDA arch to build by default.*TORCH_CUDA_ARCH_LIST"):
        default_arch_list(torch_archs, nvcc_archs)


def _torch_gencode(monkeypatch, arch_list):
    """The -gencode flags torch's extension build derives from an arch list (what setup.py
    records in the extension)."""
    from torch.utils.cpp_extension import _get_cuda_arch_flags

    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", arch_list)
    return _get_cuda_arch_flags()


def test_default_arch_list_gives_every_gpu_of_torch_its_sass(monkeypatch):
    built = archs_from_gencode(_torch_gencode(monkeypatch, default_arch_list(TORCH_CU130, NVCC_13)))
    assert built == [*TORCH_CU130, "compute_120"]
    for capability in itertools.product(range(7, 13), range(10)):
        torch_sass = [n for n in TORCH_CU130 if runs_on(n, capability)]
        if torch_sass:  # torch has a kernel for this GPU: fusedlr's is SASS too, the same one
            assert kernel_for(capability, built) == torch_sass[-1]


@pytest.mark.parametrize(
    "arch_list, expected",
    [
        ("8.0;9.0+PTX", OLD_DEFAULT),
        ("7.5 8.6", ["sm_75", "sm_86"]),  # torch also accepts spaces
        ("Ampere", ["sm_80", "sm_86", "compute_86"]),  # and its named archs
        ("9.0a+PTX", ["sm_90a", "compute_90a"]),
    ],
)
def test_archs_from_torch_gencode_flags(monkeypatch, arch_list, expected):
    assert archs_from_gencode(_torch_gencode(monkeypatch, arch_list)) == expected


def test_archs_from_gencode_parses_nvcc_forms_and_ignores_other_flags():
    flags = [
        "-O3",
        "-gencode=arch=compute_90,code=sm_90",
        "-gencode",
        "-std=c++17",
        "-gencode=arch=compute_90a,code=[sm_90a,compute_90a]",
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_80,code=sm_80",
        "--generate-code=arch=compute_75,code=sm_75",
    ]
    assert archs_from_gencode(flags) == ["sm_80", "sm_90", "sm_90a", "compute_90a"]
    assert archs_from_gencode([]) == []


# -- binary compatibility ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "arch, capability, runs",
    [
        ("sm_75", (7, 5), True),
        ("sm_75", (7, 2), False),  # SASS: never on an older minor
        ("sm_80", (8, 6), True),  # ... and on every newer minor of its major
        ("sm_80", (8, 9), True),
        ("sm_86", (8, 0), False),
        ("sm_80", (9, 0), False),  # ... but never across majors
        ("sm_90", (10, 0), False),
        ("sm_100", (12, 0), False),
        ("sm_120", (12, 1), True),
        ("sm_90a", (9, 0), True),  # arch-specific SASS: its own capability only
        ("sm_100a", (10, 3), False),
        ("sm_100f", (10, 3), True),  # family-specific: its major, same or newer minor
        ("sm_100f", (10, 0), True),
        ("sm_103f", (10, 0), False),
        ("sm_100f", (12, 0), False),
        ("compute_90", (9, 0), True),  # PTX: JIT on every capability at least its own
        ("compute_90", (12, 1), True),
        ("compute_90", (8, 9), False),
        ("compute_75", (10, 0), True),
        ("compute_90a", (9, 0), True),
        ("compute_90a", (10, 0), False),
        ("compute_100f", (10, 3), True),
        ("compute_100f", (12, 0), False),
    ],
)
def test_runs_on(arch, capability, runs):
    assert runs_on(arch, capability) is runs
    assert runs_on(parse_arch(arch), list(capability)) is runs


@pytest.mark.parametrize(
    "capability, built, expected",
    [
        ((7, 5), OLD_DEFAULT, None),  # T4 on the old default: the first step() failed
        ((8, 0), OLD_DEFAULT, "sm_80"),
        ((8, 6), OLD_DEFAULT, "sm_80"),
        ((8, 9), OLD_DEFAULT, "sm_80"),
        ((9, 0), OLD_DEFAULT, "sm_90"),
        ((10, 0), OLD_DEFAULT, "compute_90"),  # Blackwell: JIT only
        ((12, 0), OLD_DEFAULT, "compute_90"),
        ((8, 6), ["sm_80", "sm_86", "compute_86"], "sm_86"),  # the closest SASS
        ((8, 9), ["sm_80", "sm_86", "compute_86"], "sm_86"),
        ((8, 6), ["sm_80", "compute_86"], "sm_80"),  # SASS before PTX
        ((12, 0), ["compute_80", "compute_90"], "compute_90"),  # the newest usable PTX
        ((8, 9), ["compute_80", "compute_90"], "compute_80"),
        ((9, 0), ["sm_90a"], "sm_90a"),
        ((9, 0), ["sm_90", "sm_90a"], "sm_90a"),
        ((10, 3), ["sm_100a", "compute_100a"], None),
        ((10, 3), ["sm_100f"], "sm_100f"),
        ((11, 0), [*TORCH_CU130, "compute_120"], None),  # Thor: not among torch's archs either
        ((12, 1), [*TORCH_CU130, "compute_120"], "sm_120"),
        ((9, 0), [], None),  # a CPU-only build
    ],
)
def test_kernel_for(capability, built, expected):
    assert kernel_for(capability, built) == expected


BUILT_LISTS = [
    [],
    OLD_DEFAULT,
    [*TORCH_CU130, "compute_120"],
    ["sm_90a", "compute_90a"],
    ["compute_75"],
    ["sm_100f", "sm_120", "compute_100f"],
    ["sm_75", "sm_86"],
]


@pytest.mark.parametrize("built", BUILT_LISTS)
def test_kernel_for_agrees_with_runs_on(built):
    for capability in itertools.product(range(3, 14), range(10)):
        usable = [n for n in built if runs_on(n, capability)]
        got = kernel_for(capability, built)
        if not usable:
            assert got is None
            continue
        assert got in usable
        if any(n.startswith("sm_") for n in usable):
            assert got.startswith("sm_")
        a = parse_arch(got)
        assert all(parse_arch(n)[1:3] <= a[1:3] for n in usable if parse_arch(n).kind == a.kind)


@pytest.mark.parametrize(
    "capability", [(9,), (9, 0, 0), "9.0", 90, None, (9, -1), (True, 0), (9.0, 0)]
)
def test_capability_is_checked(capability):
    with pytest.raises(ValueError, match=r"capability must be a \(major, minor\) pair"):
        kernel_for(capability, OLD_DEFAULT)
    with pytest.raises(ValueError, match="capability must be"):
        runs_on("sm_90", capability)


def test_built_names_are_checked():
    with pytest.raises(ValueError, match="arch must be a name"):
        kernel_for((9, 0), ["9.0"])


# -- what the user is told ---------------------------------------------------------------------
def test_describe():
    assert describe(OLD_DEFAULT) == "SASS sm_80, sm_90; PTX compute_90"
    assert describe(["sm_75"]) == "SASS sm_75"
    assert describe(["compute_90"]) == "PTX compute_90"
    assert describe([]) == "no CUDA code (a CPU-only build)"


def test_no_kernel_message():
    assert no_kernel_message("cuda:0", "NVIDIA A100", (8, 0), OLD_DEFAULT) is None
    msg = no_kernel_message("cuda:1", "Tesla T4", (7, 5), OLD_DEFAULT)
    assert msg.startswith("cuda:1 (Tesla T4, compute capability 7.5) has no fusedlr kernel")
    assert "SASS sm_80, sm_90; PTX compute_90" in msg
    assert 'TORCH_CUDA_ARCH_LIST="7.5" pip install --no-build-isolation -e .' in msg
    assert "FUSEDLR_CUDA=1" not in msg


def test_no_kernel_message_on_a_cpu_only_build():
    msg = no_kernel_message("cuda:0", "NVIDIA H200", (9, 0), [])
    assert "no CUDA code (a CPU-only build)" in msg
    assert 'FUSEDLR_CUDA=1 TORCH_CUDA_ARCH_LIST="9.0" pip install' in msg
