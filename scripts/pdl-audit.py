#!/usr/bin/env python3
"""Checks that every kernel kvrun launches with programmatic dependent launch waits for the kernel
before it: the sm_90 SASS of each such kernel must hold ACQBULK (griddepcontrol.wait).

A kernel launched with the programmatic-stream-serialization attribute may start while the kernel
before it still runs; without griddepcontrol.wait it reads that kernel's output early (session 25:
tools/pdl_edge_check.cu's reader without the wait saw 435,648 of 1,048,576 values written; cuBLAS
kernels behind such an edge gave NaN logits). The driver does not protect a kernel that lacks it.

How: the kernels each module's sources pass to a launcher that can set the attribute
(cuda_plugin::launch, launch_maybe_pdl, cudaLaunchKernelEx) are collected from the sources; the
SASS of the built module (cuobjdump -sass, which needs nvdisasm beside it) lists, per kernel,
whether ACQBULK occurs. Any PDL-launchable kernel whose every sm_90 instance lacks it fails the
audit. Kernels launched with <<<>>> never get the attribute and are not checked.

Usage: scripts/pdl-audit.py [BUILD_DIR]   (default build-cuda; cuobjdump and nvdisasm on PATH —
they are not in every CUDA install: `pip download --no-deps nvidia-cuda-cuobjdump
nvidia-cuda-nvdisasm` and unzip the wheels gives both, docs/GPU.md)
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def top_level_args(text, start):
    """The comma-separated top-level arguments of the call whose '(' is at text[start]."""
    depth, args, cur, i = 0, [], [], start
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
            if depth > 1:
                cur.append(c)
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args
            cur.append(c)
        elif c == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        elif depth >= 1:
            cur.append(c)
        i += 1
    return args


def pdl_launched_kernels(dirs):
    """Names of the kernels the sources in dirs pass to a PDL-capable launcher: every identifier
    ending in _kernel / Kernel in a launcher call's arguments, and, where an argument is a variable
    (auto* kernel = a ? x_kernel<...> : y_kernel<...>), those in its assignment within the 40 lines
    before the call. (An over-approximation: a kernel named there is checked even if it is also
    launched with <<<>>> elsewhere.)"""
    names = set()
    pat = re.compile(r"(cuda_plugin::launch|launch_maybe_pdl|cudaLaunchKernelEx)\s*\(")
    kernel_id = re.compile(r"\b(\w+_kernel|\w+Kernel)\b")
    for d in dirs:
        for f in sorted(Path(d).rglob("*")):
            if f.suffix not in (".cu", ".cuh", ".cpp", ".hpp"):
                continue
            text = f.read_text(errors="replace")
            for m in pat.finditer(text):
                args = top_level_args(text, m.end() - 1)
                names.update(kernel_id.findall(",".join(args)))
                before = text[:m.start()].splitlines()[-40:]
                for a in args:
                    if re.fullmatch(r"[A-Za-z_]\w*", a) and not kernel_id.fullmatch(a):
                        for line in before:
                            if re.search(r"\b" + re.escape(a) + r"\s*=[^=]", line):
                                names.update(kernel_id.findall(line))
    return names


def sass_wait(module):
    """{kernel base name: True if some sm_90 / sm_90a instance holds ACQBULK} for the module."""
    out = subprocess.run(["cuobjdump", "-sass", str(module)], capture_output=True, text=True)
    if out.returncode != 0 and "does not contain device code" in out.stderr:
        return {}  # a CPU-only module (weights.bf16)
    if out.returncode != 0:
        sys.exit(f"pdl-audit: cuobjdump -sass {module} failed: {out.stderr.strip()[:300]}")
    kernels, arch, fn = {}, "", None
    for line in out.stdout.splitlines():
        m = re.search(r"code for (sm_\w+)", line)
        if m:
            arch = m.group(1)
        m = re.search(r"Function : (\S+)", line)
        if m:
            fn = m.group(1) if arch.startswith("sm_90") else None
            if fn:
                kernels.setdefault(fn, False)
        elif fn and "ACQBULK" in line:
            kernels[fn] = True
    dem = subprocess.run(["c++filt"], input="\n".join(kernels), capture_output=True, text=True).stdout.splitlines()
    result = {}
    for mangled, pretty in zip(kernels, dem):
        base = re.sub(r"\(anonymous namespace\)::", "", pretty)
        base = re.sub(r"[(<].*", "", base).split("::")[-1]
        result[base] = result.get(base, False) or kernels[mangled]
    return result


def main():
    build = ROOT / (sys.argv[1] if len(sys.argv) > 1 else "build-cuda")
    modules = {build / "backends/cuda/kvrun_backend_cuda.so": [ROOT / "backends/cuda", ROOT / "backends/include"]}
    for so in sorted((build / "plugins").rglob("kvrun_*.so")):
        src = ROOT / "plugins" / so.stem[len("kvrun_"):]
        modules[so] = [src, ROOT / "plugins/common", ROOT / "backends/include"]
    failures, checked = [], 0
    for so, dirs in modules.items():
        if not so.exists():
            continue
        waits = sass_wait(so)
        if not waits:
            continue  # no sm_90 code in this module (a build without sm_90)
        for k in sorted(pdl_launched_kernels(dirs)):
            if k not in waits:
                continue  # not in this module (the sources of plugins/common serve several)
            checked += 1
            if not waits[k]:
                failures.append(f"{so.name}: {k} is launched with programmatic dependent launch but its sm_90 "
                                f"SASS has no griddepcontrol.wait (ACQBULK): call cuda_plugin::pdl_wait() before "
                                f"it reads what an earlier kernel writes, or launch it with <<<>>>")
    if checked == 0:
        sys.exit("pdl-audit: no PDL-launched kernel found in the sm_90 code of " + str(build) +
                 " (built without -Dgpu_archs containing 90?)")
    for f in failures:
        print(f)
    print(f"pdl-audit: {checked} PDL-launched kernels checked, {len(failures)} without the wait")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
