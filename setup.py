"""Build of fusedlr: one torch extension, ``fusedlr._C``.

CUDA kernels are compiled when torch is a CUDA build and an nvcc of the same
CUDA major version is found; no GPU is needed to build. Overrides:

- ``FUSEDLR_CUDA=1`` forces the CUDA build (fails clearly if it cannot), ``FUSEDLR_CUDA=0``
  builds CPU-only.
- ``CUDA_HOME`` names the toolkit root; otherwise it is read from ``nvcc --dryrun``
  (nvcc may be a wrapper script, so torch's own guess can be wrong).
- ``TORCH_CUDA_ARCH_LIST``; by default every arch the installed torch is built for
  (``torch.cuda.get_arch_list()``) that nvcc compiles, plus PTX of the newest. The extension
  records what it contains (``fusedlr._C.cuda_archs()``, ``python -m fusedlr info``).
- ``FUSEDLR_PTXAS_VERBOSE=1`` passes ``-Xptxas -v`` (register / spill report).
- ``FUSEDLR_SANITIZE=1`` builds with AddressSanitizer and UBSan (CPU code).
- ``FUSEDLR_FAKE_CUDA=0`` leaves out the fake-runtime build of the CUDA host code
  (``csrc/fake_cuda``: kernels.cu and update_cuda.cpp compiled for the CPU, for tests), which is
  built whenever the CUDA toolkit's headers are found, with or without the CUDA build.

Install with ``pip install --no-build-isolation -e .`` (an isolated build would fetch another
torch).
"""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_cuda_arch():
    """fusedlr/_cuda_arch.py, loaded by path: the fusedlr package cannot be imported before it
    is built."""
    path = os.path.join(HERE, "fusedlr", "_cuda_arch.py")
    spec = importlib.util.spec_from_file_location("_fusedlr_cuda_arch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_arch = _load_cuda_arch()


def _log(msg):
    print(f"fusedlr setup: {msg}", file=sys.stderr)


def _nvcc_root(nvcc):
    """The toolkit root nvcc really uses: the TOP= line of a dry run."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cu")
        open(src, "w").close()
        try:
            out = subprocess.run(
                [nvcc, "--dryrun", "-v", "-c", src, "-o", os.path.join(tmp, "probe.o")],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.realpath(match.group(1).strip()) if match else None


def _nvcc_version(nvcc):
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"release (\d+)\.(\d+)", out.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _nvcc_archs(nvcc):
    """The SASS targets nvcc compiles (``nvcc --list-gpu-code``); None if it cannot say."""
    try:
        out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = re.findall(r"^sm_\w+$", out.stdout, re.MULTILINE)
    return names if out.returncode == 0 and names else None


def _torch_archs(torch):
    """The archs torch was built for. Older torch returns [] from ``get_arch_list()`` on a machine
    without a GPU; the build flags it reads are there regardless."""
    archs = torch.cuda.get_arch_list()
    flags = getattr(torch._C, "_cuda_getArchFlags", None)
    if not archs and flags is not None:
        archs = (flags() or "").split()
    return archs


def find_cuda_home():
    """CUDA_HOME from the environment, or from nvcc on PATH; None if there is none."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:
            return root
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    return _nvcc_root(nvcc)


def decide_cuda(torch_cuda_version):
    """(build_cuda, cuda_home, reason)."""
    force = os.environ.get("FUSEDLR_CUDA", "").strip()
    if force == "0":
        return False, None, "FUSEDLR_CUDA=0"
    problems = []
    home = find_cuda_home()
    if torch_cuda_version is None:
        problems.append("torch is a CPU-only build")
    if home is None:
        problems.append("no nvcc on PATH and no CUDA_HOME")
    elif not os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
        problems.append(f"{home}/include/cuda_runtime.h does not exist")
    else:
        nvcc = os.path.join(home, "bin", "nvcc")
        version = _nvcc_version(nvcc)
        if version is None:
            problems.append(f"cannot run {nvcc}")
        elif torch_cuda_version is not None:
            torch_major = int(torch_cuda_version.split(".")[0])
            if version[0] != torch_major:
                problems.append(
                    f"nvcc is CUDA {version[0]}.{version[1]} but torch is built for CUDA "
                    f"{torch_cuda_version}"
                )
    if problems:
        if force == "1":
            raise RuntimeError(
                "FUSEDLR_CUDA=1 but the CUDA build is impossible: " + "; ".join(problems)
            )
        return False, None, "; ".join(problems)
    return True, home, f"torch CUDA {torch_cuda_version}, toolkit at {home}"


def fake_cuda_include(cuda_home):
    """The toolkit include folder for csrc/fake_cuda (host-side CUDA types), or None."""
    if os.environ.get("FUSEDLR_FAKE_CUDA", "").strip() == "0":
        return None
    home = cuda_home or find_cuda_home()
    inc = os.path.join(home, "include") if home else None
    headers = ("cuda_fp16.h", "cuda_bf16.h", "driver_types.h", "vector_types.h")
    if inc and all(os.path.isfile(os.path.join(inc, h)) for h in headers):
        return inc
    return None


def build_extensions():
    # CUDA_HOME must be settled before torch.utils.cpp_extension is imported.
    import torch

    use_cuda, cuda_home, reason = decide_cuda(torch.version.cuda)
    if use_cuda:
        os.environ["CUDA_HOME"] = cuda_home
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            nvcc_archs = _nvcc_archs(os.path.join(cuda_home, "bin", "nvcc"))
            archs = cuda_arch.default_arch_list(_torch_archs(torch), nvcc_archs)
            os.environ["TORCH_CUDA_ARCH_LIST"] = archs
            _log(f"TORCH_CUDA_ARCH_LIST={archs} (torch's archs that nvcc compiles)")
    _log(f"CUDA kernels: {'yes' if use_cuda else 'no'} ({reason})")

    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    # -fopenmp: at::parallel_for is inlined from ATen headers and runs serially without it.
    cxx = ["-O3", "-ffp-contract=off", "-fopenmp", "-Wall", "-Wextra", "-Wno-unknown-pragmas"]
    ldflags = ["-fopenmp"]
    if os.environ.get("FUSEDLR_SANITIZE") == "1":
        cxx += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
        ldflags += ["-fsanitize=address,undefined"]
    macros = []
    include_dirs = [os.path.join(HERE, "csrc", "include"), os.path.join(HERE, "csrc")]
    fake_inc = fake_cuda_include(cuda_home)
    _log(f"fake CUDA runtime tests: {'yes, ' + fake_inc if fake_inc else 'no'}")
    if fake_inc:
        sources += sorted(glob.glob("csrc/fake_cuda/*.cpp"))
        include_dirs.append(fake_inc)
    if use_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
        nvcc = ["-O3", "-std=c++17"]
        if os.environ.get("FUSEDLR_PTXAS_VERBOSE") == "1":
            nvcc += ["-Xptxas", "-v"]
        # The extension records the -gencode flags torch's build gives nvcc (private API, as
        # BuildExtension calls it; stable since torch 1.x).
        from torch.utils.cpp_extension import _get_cuda_arch_flags

        archs = cuda_arch.archs_from_gencode(nvcc + _get_cuda_arch_flags(nvcc))
        _log(f"CUDA code for: {' '.join(archs)}")
        macros += [("FUSEDLR_WITH_CUDA", None), ("FUSEDLR_CUDA_ARCHS", f'"{",".join(archs)}"')]
        ext = CUDAExtension(
            "fusedlr._C",
            sources,
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args={"cxx": cxx + ["-DFUSEDLR_WITH_CUDA"], "nvcc": nvcc},
            extra_link_args=ldflags,
        )
    else:
        ext = CppExtension(
            "fusedlr._C",
            sources,
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=ldflags,
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = build_extensions()

setup(
    name="fusedlr",
    version="0.1.0",
    description="Fused SGD/Adam/AdamW for PyTorch with lr schedules evaluated on the device",
    long_description=open(os.path.join(HERE, "README.md")).read()
    if os.path.exists(os.path.join(HERE, "README.md"))
    else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["fusedlr", "fusedlr.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.11"],  # tested: README, "Supported torch versions"
    extras_require={
        "tools": ["matplotlib", "tqdm", "scikit-learn"],
        "test": ["pytest", "hypothesis", "matplotlib", "tqdm", "scikit-learn"],
        # The frameworks fusedlr.integrations plugs into (and its tests run for real).
        "integrations": [
            "transformers>=4.46,<6",
            "accelerate>=1.0,<2",
            "pytorch-lightning>=2.4,<3",
            "timm>=1.0,<2",
        ],
        # Peer libraries the tests compare against: optax (on jax's CPU backend) for schedules,
        # schedulefree for the schedule-free optimizers.
        "peers": ["optax>=0.2.4", "jax>=0.4.30", "schedulefree>=1.4,<2"],
        # The schedule-free oracle of tests/test_schedule_free.py and the baseline of
        # benchmarks/bench_schedulefree.py.
        "schedulefree": ["schedulefree>=1.4,<2"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["fusedlr=fusedlr.__main__:main"]},
)
