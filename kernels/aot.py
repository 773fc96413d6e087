"""Ahead-of-time compile of every Triton kernel for sm_80 and sm_90, with no GPU needed.

``python -m fastpgan.kernels.aot`` finds every kernel module of this package on disk,
compiles each of its kernels at the specifications the module declares beside them
(``aot_specs()``: each dtype, the tile configurations its launcher picks on realistic
shapes, both memory layouts), then runs ptxas on the PTX to read registers and spills,
and reads the shared memory, the warps an SM can hold (occupancy) and the width of each
global load and store; each spec's bytes to move give its floor at COPY_GB_S.
It prints a table (or JSON with ``--json``) and exits 1 on a compile error, on register
spills over SPILL_BUDGET_BYTES, or on a public ``@triton.jit`` function of any module
that no specification compiles.

Must run without TRITON_INTERPRET=1 (interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import types
from dataclasses import asdict, dataclass

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from triton.runtime.jit import KernelInterface

from .common import Spec

ARCHS = (80, 90)
SPILL_BUDGET_BYTES = 1024
"""Spill stores a thread allowed: the fastest pixel-norm backward measured spilled just
under this, in L1; kernels spilling four times as much ran ten times slower
(bench/NOTES.md)."""
NOT_KERNEL_MODULES = ("aot", "common")
COPY_GB_S = 4300
"""The H200's copy bandwidth, about 4.3 TB/s: the floor of each kernel's time below (the
GPU call measures the real one)."""


@dataclass
class Result:
    """What the compiler and ptxas said of one Spec on one architecture."""

    kernel: str
    variant: str
    dtype: str
    arch: int
    ok: bool
    registers: int = -1
    spill_stores: int = -1
    spill_loads: int = -1
    num_warps: int = 0
    shared_bytes: int = -1
    warps_per_sm: int = -1
    vector_loads: int = 0
    scalar_loads: int = 0
    vector_stores: int = 0
    scalar_stores: int = 0
    bytes_moved: int = 0
    floor_us: float = 0.0
    error: str = ""


SM_LIMITS = {80: (65536, 164 * 1024, 64), 90: (65536, 227 * 1024, 64)}
"""Per SM: 32-bit registers, shared memory a block may use, resident warps (CUDA C
Programming Guide, compute capabilities table)."""


def resident_warps(arch: int, registers: int, shared_bytes: int, num_warps: int) -> int:
    """Warps of this kernel an SM holds at once (occupancy x 64): blocks are limited by
    registers (allocated 256 a warp at a time) and by shared memory."""
    regs_per_sm, shared_per_sm, max_warps = SM_LIMITS[arch]
    regs_per_warp = -(-max(registers, 1) * 32 // 256) * 256
    blocks = min(regs_per_sm // (regs_per_warp * num_warps), max_warps // num_warps)
    if shared_bytes > 0:
        blocks = min(blocks, shared_per_sm // shared_bytes)
    return blocks * num_warps


def access_widths(ptx: str) -> tuple[int, int, int, int]:
    """(vector loads, scalar loads, vector stores, scalar stores) of global memory in the
    PTX: a .v2/.v4 access moves 64 or 128 bits a thread, a scalar one a single element."""
    loads = re.findall(r"^\s*(?:@%p\d+\s+)?ld\.global\S*", ptx, re.M)
    stores = re.findall(r"^\s*(?:@%p\d+\s+)?st\.global\S*", ptx, re.M)
    vector = [bool(re.search(r"\.v[24]\b", op)) for op in loads]
    vector_st = [bool(re.search(r"\.v[24]\b", op)) for op in stores]
    return (sum(vector), len(vector) - sum(vector), sum(vector_st),
            len(vector_st) - sum(vector_st))


def kernel_modules() -> dict[str, types.ModuleType]:
    """Every kernel module of fastpgan.kernels by name, found on disk, not listed."""
    package = importlib.import_module("fastpgan.kernels")
    return {info.name: importlib.import_module(f"fastpgan.kernels.{info.name}")
            for info in pkgutil.iter_modules(package.__path__)
            if info.name not in NOT_KERNEL_MODULES}


def kernels_of(module: types.ModuleType) -> set[str]:
    """The public ``@triton.jit`` functions a module defines: its kernels. (Helpers with a
    leading underscore are device functions, compiled inside the kernels that call them.)"""
    return {name for name, obj in vars(module).items()
            if isinstance(obj, KernelInterface) and not name.startswith("_")
            and obj.fn.__module__ == module.__name__}


def specs_of(module: types.ModuleType) -> list[Spec]:
    """The module's own ``aot_specs()``, or none if it declares no such function."""
    declared = getattr(module, "aot_specs", None)
    return declared() if callable(declared) else []


def _ptxas_path(arch: int) -> str:
    """The ptxas Triton itself uses; get_ptxas changed signature across Triton 3.x."""
    try:
        tool = get_ptxas(arch)
    except TypeError:
        tool = get_ptxas()
    return tool.path if hasattr(tool, "path") else tool[0]


def _ptxas_report(ptx: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from ptxas --verbose."""
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1).rstrip(",")
    ptxas = _ptxas_path(int(re.match(r"sm_(\d+)", target).group(1)))
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run([ptxas, "--verbose", f"--gpu-name={target}", src, "-o",
                              os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"ptxas failed: {out.stderr.strip()[:2000]}")
    out = out.stderr
    registers = int(re.search(r"Used (\d+) registers", out).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    return registers, int(spills.group(1)), int(spills.group(2))


def compile_one(module_name: str, spec: Spec, arch: int) -> Result:
    """Compiles one spec for one architecture and reads its resource usage."""
    result = Result(spec.kernel, spec.variant, spec.dtype, arch, ok=False,
                    bytes_moved=spec.bytes_moved,
                    floor_us=round(spec.bytes_moved / (COPY_GB_S * 1e3), 2))
    constexprs = dict(spec.constexprs)
    options = {"num_warps": constexprs.pop("num_warps"),
               "num_stages": constexprs.pop("num_stages", 3)}
    fn = getattr(importlib.import_module(f"fastpgan.kernels.{module_name}"), spec.kernel)
    signature = dict(spec.signature)
    for name in constexprs:
        signature[name] = "constexpr"
    names = list(fn.arg_names)
    attrs = {(names.index(name),): [["tt.divisibility", 16]] for name in spec.divisible}
    try:
        source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
        ptx = compiled.asm["ptx"]
        result.registers, result.spill_stores, result.spill_loads = _ptxas_report(ptx)
        result.num_warps = options["num_warps"]
        result.shared_bytes = int(compiled.metadata.shared)
        result.warps_per_sm = resident_warps(arch, result.registers, result.shared_bytes,
                                             result.num_warps)
        (result.vector_loads, result.scalar_loads, result.vector_stores,
         result.scalar_stores) = access_widths(ptx)
        result.ok = result.spill_stores <= SPILL_BUDGET_BYTES
        if not result.ok:
            result.error = f"register spills over {SPILL_BUDGET_BYTES} bytes a thread"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:2000]}"
    return result


def without_specs(modules: dict[str, types.ModuleType]) -> list[str]:
    """The kernels (module.kernel) of ``modules`` that none of their specs compiles."""
    covered = {f"{name}.{s.kernel}" for name, module in modules.items()
               for s in specs_of(module)}
    return sorted(f"{name}.{kernel}" for name, module in modules.items()
                  for kernel in kernels_of(module) if f"{name}.{kernel}" not in covered)


def parse_archs(text: str) -> dict[int, tuple[str, ...] | None]:
    """"80:bf16,90" -> {80: ("bf16",), 90: None}: each compute capability, with the storage
    dtypes to compile for it (None: all)."""
    archs: dict[int, tuple[str, ...] | None] = {}
    for entry in text.split(","):
        arch, _, dtypes = entry.partition(":")
        archs[int(arch)] = tuple(dtypes.split("+")) if dtypes else None
    return archs


def run(archs: dict[int, tuple[str, ...] | None] | None = None,
        workers: int | None = None) -> dict:
    """Compiles every spec of every kernel module for each arch (in the dtypes given for
    it, default all of every arch in ARCHS); returns {"results": [...], "missing": [...]},
    missing naming each kernel (module.kernel) that no spec compiles."""
    archs = archs or dict.fromkeys(ARCHS)
    modules = kernel_modules()
    jobs = [(name, s, arch) for name, module in modules.items() for s in specs_of(module)
            for arch, dtypes in archs.items() if dtypes is None or s.dtype in dtypes]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        results = list(pool.map(compile_one, *zip(*jobs, strict=True))) if jobs else []
    return {"results": [asdict(r) for r in results], "missing": without_specs(modules)}


def main(argv: list[str] | None = None) -> int:
    """Command line: prints the report and returns 0 when every kernel compiled cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--arch", default=",".join(map(str, ARCHS)),
                        help="comma-separated compute capabilities, each optionally with "
                             "the dtypes to compile for it, e.g. 80:bf16+fp32,90 "
                             "(default: 80,90, all dtypes)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    report = run(parse_archs(args.arch))
    failed = [r for r in report["results"] if not r["ok"]]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for r in report["results"]:
            status = "ok" if r["ok"] else f"FAIL {r['error']}"
            print(f"sm_{r['arch']} {r['kernel']:<22} {r['variant']:<26} {r['dtype']:<5} "
                  f"regs={r['registers']:<4} spills={r['spill_stores']}/{r['spill_loads']} "
                  f"smem={r['shared_bytes']:<6} warps/SM={r['warps_per_sm']:<3} "
                  f"ld v/s={r['vector_loads']}/{r['scalar_loads']} "
                  f"st v/s={r['vector_stores']}/{r['scalar_stores']} "
                  f"MB={r['bytes_moved'] / 1e6:<7.2f} floor={r['floor_us']:.2f}us {status}")
        for name in report["missing"]:
            print(f"no compile spec for {name}")
    return 1 if failed or report["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
