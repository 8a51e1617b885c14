"""CUDA architecture names and which compiled code a GPU can run (pure: no torch, no fusedlr).

setup.py loads this file by path (before fusedlr is built) to choose the default arch list and
to name what it compiled; the optimizers use it to refuse, at construction, a param on a GPU that
the build has no kernel for.

Names are nvcc's: ``sm_XY`` is SASS (machine code) for compute capability X.Y, ``compute_XY`` is
PTX (JIT-compiled by the driver). A suffix ``a`` (``sm_90a``) marks arch-specific code, ``f``
(``sm_100f``) family-specific code. CUDA's binary compatibility rules, as :func:`runs_on` applies
them to a device of capability X.Z:

- SASS ``sm_XY`` and ``sm_XYf`` run when the major is the same and Z >= Y; ``sm_XYa`` only on X.Y.
- PTX ``compute_XY`` JIT-compiles on any capability >= X.Y; ``compute_XYf`` within major X for
  Z >= Y; ``compute_XYa`` only on X.Y.

(NVIDIA documents no binary compatibility across Tegra and desktop parts, e.g. sm_86 SASS on an
8.7 Jetson Orin; like torch's own capability check, this module does not model that.)
"""

from __future__ import annotations

import re
from typing import NamedTuple

_NAME = re.compile(r"(sm|compute)_(\d+)(\d)([af]?)")
_GENCODE = re.compile(r"-gencode[= ]arch=compute_\w+,code=\[?([\w,]+)\]?")


class Arch(NamedTuple):
    """One compiled target: ``kind`` is ``"sm"`` (SASS) or ``"compute"`` (PTX)."""

    kind: str
    major: int
    minor: int
    suffix: str = ""  # "", "a" (arch-specific) or "f" (family-specific)

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.major}{self.minor}{self.suffix}"


def parse_arch(name: str) -> Arch:
    """``"sm_90a"`` -> ``Arch("sm", 9, 0, "a")``; ValueError for anything else."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"arch must be a name like 'sm_90', 'sm_90a', 'sm_100f' or 'compute_120', got {name!r}"
        )
    kind, major, minor, suffix = match.groups()
    return Arch(kind, int(major), int(minor), suffix)


def _sort_key(arch: Arch):
    return (arch.kind != "sm", arch.major, arch.minor, arch.suffix)


def sorted_names(names) -> list[str]:
    """Unique arch names, SASS before PTX, each by capability."""
    return [a.name for a in sorted({parse_arch(n) for n in names}, key=_sort_key)]


def default_arch_list(torch_archs, nvcc_archs=None) -> str:
    """The ``TORCH_CUDA_ARCH_LIST`` that builds a kernel for every GPU the installed torch runs on.

    ``torch_archs``: what torch was built for (``torch.cuda.get_arch_list()``, e.g. ``['sm_75',
    'sm_80', 'sm_90a', 'compute_90']``). ``nvcc_archs``: the names ``nvcc --list-gpu-code`` prints,
    or None when unknown (no filter). The result is SASS for each capability in both, plus PTX of
    the newest, e.g. ``"7.5;8.0;9.0+PTX"``. Suffixes are dropped (``sm_90a`` -> ``9.0``): fusedlr
    uses no arch-specific instruction, and generic SASS of a capability runs wherever its ``a`` or
    ``f`` variant does.
    """
    wanted = {parse_arch(n)[1:3] for n in torch_archs}
    if nvcc_archs is not None:
        wanted &= {parse_arch(n)[1:3] for n in nvcc_archs}
    if not wanted:
        raise ValueError(
            f"no CUDA arch to build by default: torch is built for {list(torch_archs)!r} and nvcc "
            f"compiles {sorted_names(nvcc_archs or [])!r}; set TORCH_CUDA_ARCH_LIST (e.g. "
            '"8.0;9.0+PTX")'
        )
    caps = [f"{major}.{minor}" for major, minor in sorted(wanted)]
    caps[-1] += "+PTX"
    return ";".join(caps)


def archs_from_gencode(flags) -> list[str]:
    """The targets that nvcc ``-gencode=arch=compute_XY,code=...`` flags compile, sorted: e.g.
    ``['sm_80', 'sm_90', 'compute_90']``."""
    names = []
    for flag in flags:
        match = _GENCODE.fullmatch(flag)
        if match is not None:
            names += match.group(1).split(",")
    return sorted_names(names)


def _check_capability(capability) -> tuple[int, int]:
    ok = (
        isinstance(capability, (tuple, list))
        and len(capability) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in capability)
    )
    if not ok:
        raise ValueError(
            f"capability must be a (major, minor) pair of ints >= 0, got {capability!r}"
        )
    return int(capability[0]), int(capability[1])


def runs_on(arch, capability) -> bool:
    """Whether code for ``arch`` (a name or :class:`Arch`) runs on a device of ``capability``."""
    a = parse_arch(arch) if isinstance(arch, str) else arch
    major, minor = _check_capability(capability)
    if a.suffix == "a":
        return (major, minor) == (a.major, a.minor)
    if a.kind == "sm" or a.suffix == "f":
        return major == a.major and minor >= a.minor
    return (major, minor) >= (a.major, a.minor)


def kernel_for(capability, built) -> str | None:
    """The entry of ``built`` (arch names) a device of ``capability`` runs, as the driver picks
    it: the closest SASS, else the newest usable PTX (JIT); None when there is neither."""
    cap = _check_capability(capability)
    usable = [a for a in map(parse_arch, built) if runs_on(a, cap)]
    if not usable:
        return None
    sass = [a for a in usable if a.kind == "sm"]
    return max(sass or usable, key=lambda a: (a.major, a.minor, a.suffix != "")).name


def describe(built) -> str:
    """``built`` in words, for messages: ``"SASS sm_80, sm_90; PTX compute_90"``."""
    archs = [parse_arch(n) for n in sorted_names(built)]
    parts = []
    for kind, label in (("sm", "SASS"), ("compute", "PTX")):
        names = [a.name for a in archs if a.kind == kind]
        if names:
            parts.append(f"{label} {', '.join(names)}")
    return "; ".join(parts) or "no CUDA code (a CPU-only build)"


def no_kernel_message(device: str, device_name: str, capability, built) -> str | None:
    """None when ``built`` has code for ``capability``; else what to tell the user: the device,
    its capability, what was built and the command that rebuilds fusedlr for it."""
    if kernel_for(capability, built) is not None:
        return None
    major, minor = _check_capability(capability)
    force = "" if built else "FUSEDLR_CUDA=1 "
    return (
        f"{device} ({device_name}, compute capability {major}.{minor}) has no fusedlr kernel: "
        f"this build contains {describe(built)} (SASS sm_XY runs on X.Y and newer minors of the "
        "same major, PTX compute_XY on capability X.Y and newer). Rebuild fusedlr for this GPU "
        f'from its source tree: {force}TORCH_CUDA_ARCH_LIST="{major}.{minor}" pip install '
        "--no-build-isolation -e . (list your other GPUs' capabilities too, separated by ';'); "
        "`python -m fusedlr info` shows what a build contains"
    )
