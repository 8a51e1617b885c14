"""Resource report of the CUDA kernels, on paper (no GPU needed).

    python benchmarks/kernel_report.py [--archs 80,90,100] [--cuobjdump PATH] [--markdown]

Compiles ``csrc/cuda/kernels.cu`` (no torch header: seconds per arch) with ``nvcc -cubin
-Xptxas -v`` for each arch and prints, per kernel: registers, stack frame, spill stores/loads
and, for the update kernels (512 threads a block, no shared memory), the resident blocks per SM
that the registers allow and the waves of a full launch (``kMaxBlocks`` blocks) on the
reference part of the arch (A100, H100/H200, B200). With a ``cuobjdump`` (it needs
``nvdisasm`` on PATH; neither ships with the toolkit image here: ``pip install --target
/tmp/cu nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`` puts both outside the environment) it
also counts each kernel's fp64 SASS instructions: in all, and inside its loops (the natural
loops of the kernel body's control-flow graph, plus the subroutines those loops call).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "csrc", "cuda", "kernels.cu")

# SM limits per arch: registers per SM, max threads per SM, max blocks per SM, SM count of the
# reference part (A100 SXM, H100/H200 SXM, B200).
SM_LIMITS = {
    "80": (65536, 2048, 32, 108, "A100"),
    "90": (65536, 2048, 32, 132, "H100/H200"),
    "100": (65536, 2048, 32, 148, "B200"),
}
MAX_BLOCKS = 320  # mt::kMaxBlocks

FP64_SASS = re.compile(
    r"^(DADD|DMUL|DFMA|DSETP|DSET|DMNMX|DMMA|DRSQRT|I2F\.F64|F2I\.[A-Z0-9.]*F64|"
    r"F2F\.F64|F2F\.F32\.F64|F2F\.[A-Z0-9.]*F64|MUFU\.(RCP|RSQ)64H|F2I\.F64)"
)


LAYOUT_NAMES = {"0": "classic", "1": "large"}  # mt::ArgLayout: 4 KB / 32 KB kernel arguments


def short_name(mangled):
    m = re.search(r"(sgd_master_kernel|adam_master_kernel|sgd_kernel|adam_kernel|step_kernel|"
                  r"eval_schedule_kernel)(I(\w*?)(Li(\d)E)?E)?", mangled)
    if not m:
        return mangled
    kind = m.group(1)
    t = m.group(3) or ""
    t = {"f": "float", "d": "double", "6__half": "__half", "13__nv_bfloat16": "__nv_bfloat16"}.get(
        t, t
    )
    args = [x for x in (t, LAYOUT_NAMES.get(m.group(5) or "", "")) if x]
    return f"{kind}<{', '.join(args)}>" if args else kind


def compile_arch(arch, out_dir):
    cubin = os.path.join(out_dir, f"kernels_sm{arch}.cubin")
    cmd = ["nvcc", "-O3", "-std=c++17", f"-I{ROOT}/csrc/include", f"-I{ROOT}/csrc"]
    cmd += [f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v", SRC, "-o", cubin]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return cubin, res.stderr + res.stdout


def parse_ptxas(text):
    out = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            current = short_name(m.group(1))
            out[current] = {}
            continue
        if current is None:
            continue
        m = re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line
        )
        if m and "stack" not in out[current]:
            out[current].update(stack=int(m.group(1)), spill_st=int(m.group(2)),
                                spill_ld=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[current]["regs"] = int(m.group(1))
    return out


def blocks_per_sm(arch, regs, threads):
    reg_file, max_threads, max_blocks, _, _ = SM_LIMITS[arch]
    warps = (threads + 31) // 32
    # Registers are allocated per warp in units of 256 (8 per thread, rounded up).
    regs_per_warp = ((regs * 32 + 255) // 256) * 256
    by_regs = reg_file // (regs_per_warp * warps)
    return min(by_regs, max_threads // threads, max_blocks)


def _parse_sass(text):
    """{kernel: [(address, predicated, instruction)]} of a cuobjdump -sass listing."""
    funcs = {}
    name = None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = short_name(m.group(1))
            funcs[name] = []
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and name:
            ins = m.group(2).strip()
            pred = re.match(r"^@!?U?P[T0-9]+\s+", ins)
            ins = ins[pred.end():] if pred else ins
            funcs[name].append((int(m.group(1), 16), bool(pred), ins))
    return funcs


def _loop_addresses(code):
    """Addresses of the instructions inside natural loops (back edge = branch to an address not
    after it), found on the basic-block graph of the listing."""
    addrs = [a for a, _, _ in code]
    index = {a: i for i, a in enumerate(addrs)}
    leaders = {0}
    targets = {}
    for i, (_, _, ins) in enumerate(code):
        m = re.match(r"BRA\S*\s+(?:`\()?0x([0-9a-f]+)", ins)
        if m:
            t = int(m.group(1), 16)
            if t in index:
                targets[i] = index[t]
                leaders.add(index[t])
        if m or ins.startswith(("EXIT", "RET", "BRA")):
            leaders.add(i + 1)
    starts = sorted(x for x in leaders if x < len(code))
    block_of = {}
    blocks = []
    for k, s in enumerate(starts):
        e = starts[k + 1] if k + 1 < len(starts) else len(code)
        blocks.append((s, e))
        for i in range(s, e):
            block_of[i] = k
    succ = {k: set() for k in range(len(blocks))}
    for k, (_, e) in enumerate(blocks):
        last = e - 1
        _, pred, ins = code[last]
        if last in targets:
            succ[k].add(block_of[targets[last]])
        ends = ins.startswith(("EXIT", "RET", "BRA")) and not pred
        if not ends and e < len(code):
            succ[k].add(block_of[e])
    preds = {k: set() for k in succ}
    for k, ss in succ.items():
        for s in ss:
            preds[s].add(k)
    in_loop = set()
    for k, ss in succ.items():
        for h in ss:
            if blocks[h][0] <= blocks[k][0]:  # back edge k -> h
                body = {h, k}
                work = [k]
                while work:
                    x = work.pop()
                    for p in preds[x]:
                        if p not in body:
                            body.add(p)
                            work.append(p)
                in_loop |= body
    return {addrs[i] for k in in_loop for i in range(*blocks[k])}


def _subroutine_calls(code):
    """{call address: target} of the CALLs into subroutines. ptxas also uses a conditional
    CALL.REL.NOINC as a jump out of a loop (its target continues to an EXIT, not a RET):
    those are no subroutine."""
    calls = {}
    for a, _, ins in code:
        for t in re.findall(r"CALL\S*\s+0x([0-9a-f]+)", ins):
            target = int(t, 16)
            for b, _, tail in code:
                if b < target:
                    continue
                if tail.startswith(("RET", "EXIT")):
                    if tail.startswith("RET"):
                        calls[a] = target
                    break
    return calls


def sass_fp64(cuobjdump, cubin):
    """Per kernel: fp64 SASS instructions in all, and inside loops (plus the subroutines that
    loops call)."""
    res = subprocess.run([cuobjdump, "-sass", cubin], capture_output=True, text=True, check=True)
    report = {}
    for name, code in _parse_sass(res.stdout).items():
        sub_calls = _subroutine_calls(code)
        calls = list(sub_calls.values())
        body_end = min(calls) if calls else float("inf")  # subroutines follow the kernel body
        loop_addrs = {a for a in _loop_addresses(code) if a < body_end}
        is64 = [bool(FP64_SASS.match(ins)) for _, _, ins in code]
        total = sum(is64)
        counted = set(loop_addrs)
        called = set()
        for a, target in sub_calls.items():
            if a in loop_addrs:
                called.add(target)
        for start in called:
            for a, _, ins in code:
                if a < start:
                    continue
                counted.add(a)
                if ins.startswith("RET"):
                    break
        loop = sum(f for (a, _, _), f in zip(code, is64, strict=True) if a in counted)
        report[name] = {"total": total, "loop": loop}
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="80,90,100")
    ap.add_argument("--cuobjdump", default=shutil.which("cuobjdump"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            cubin, text = compile_arch(arch, tmp)
            ptx = parse_ptxas(text)
            fp64 = sass_fp64(args.cuobjdump, cubin) if args.cuobjdump else {}
            for name in sorted(ptx):
                r = ptx[name]
                bps = waves = "-"
                if name.startswith(("sgd_", "adam_")):
                    bps = blocks_per_sm(arch, r["regs"], 512)
                    waves = f"{MAX_BLOCKS / (bps * SM_LIMITS[arch][3]):.2f}"
                f = fp64.get(name, {})
                rows.append((name, f"sm_{arch}", r["regs"], r["stack"], r["spill_st"],
                             r["spill_ld"], bps, waves, f.get("loop", "-"), f.get("total", "-")))
    head = ("kernel", "arch", "registers", "stack (B)", "spill st (B)", "spill ld (B)",
            "blocks/SM", f"waves ({MAX_BLOCKS} blocks)", "fp64 SASS in loops", "fp64 SASS total")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(str(x) for x in r) + " |")
    else:
        for r in [head] + rows:
            print("  ".join(str(x).ljust(14) for x in r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
