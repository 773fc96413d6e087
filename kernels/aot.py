"""Ahead-of-time compile of every Triton kernel for sm_80 and sm_90, with no GPU needed.

``python -m fastpgan.kernels.aot`` compiles each kernel in each dtype it supports, for
the tile configurations its launcher picks on realistic shapes and for both memory
layouts, then runs ptxas on the PTX to read registers and spills. It prints a table
(or JSON with ``--json``) and exits 1 on a compile error, on register spills over
SPILL_BUDGET_BYTES, or on a kernel in this package that has no compile specification
here.

Must run without TRITON_INTERPRET=1 (interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from . import adain, bias_act, minibatch_stddev

ARCHS = (80, 90)
SPILL_BUDGET_BYTES = 1024
"""Spill stores a thread allowed. On an H100 the fastest pixel-norm backward spilled
968 bytes a thread (the spills stay in L1), while one spilling 3960 ran 10x slower."""
DTYPES = {"fp32": (tl.float32, 4), "fp16": (tl.float32, 2), "bf16": (tl.float32, 2),
          "fp64": (tl.float64, 8)}
"""Storage type -> (arithmetic type, bytes per element)."""


@dataclass
class Spec:
    """One compile of one kernel: its argument types and constexpr values."""

    kernel: str
    variant: str
    dtype: str
    signature: dict[str, str]
    constexprs: dict[str, object]


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
    error: str = ""


def _layouts() -> dict[str, dict[str, int]]:
    # Triton specializes an integer argument equal to 1 into a constant at launch: the
    # unit stride of each layout is a constexpr in the compiled kernel.
    return {"nchw": {"stride_p": 1}, "channels_last": {"stride_c": 1}}


def _bias_act_specs() -> list[Spec]:
    shapes = {  # name: (C, P) of a realistic call
        "c512": (512, 64 * 64),
        "c16": (16, 1024 * 1024),
        "c1100": (1100, 8 * 8),  # more channels than one pixel-norm tile: two passes
    }
    specs = []
    for dtype, (compute, elem_bytes) in DTYPES.items():
        stat = "fp64" if dtype == "fp64" else "fp32"
        for layout, unit in _layouts().items():
            for shape_name, (c, p) in shapes.items():
                for pixel_norm in (True, False):
                    block_c, block_p, num_c_blocks, num_warps = bias_act._blocks(
                        c, p, unit.get("stride_p", c), pixel_norm, elem_bytes)
                    if shape_name == "c1100" and not pixel_norm:
                        continue  # only pixel norm has a multi-pass variant
                    common = dict(ACT=1, HAS_CLAMP=True, PIXEL_NORM=pixel_norm,
                                  NUM_C_BLOCKS=num_c_blocks, BLOCK_C=block_c, BLOCK_P=block_p,
                                  COMPUTE=compute, num_warps=num_warps, **unit)
                    variant = f"{layout}/{shape_name}/{'pn' if pixel_norm else 'act'}"
                    sizes = {"C": "i32", "P": "i32", "stride_n": "i32", "stride_c": "i32",
                             "stride_p": "i32"}
                    fwd = {"x_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "y_ptr": f"*{dtype}",
                           "r_ptr": f"*{stat}", **sizes, "slope": "fp32", "gain": "fp32",
                           "clamp": "fp32", "eps": "fp32"}
                    specs.append(Spec("bias_act_fwd_kernel", variant, dtype, fwd,
                                      dict(common, HAS_BIAS=True)))
                    bwd = {"dy_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "r_ptr": f"*{stat}",
                           "gr_ptr": f"*{stat}", "dx_ptr": f"*{dtype}", "db_ptr": f"*{stat}",
                           **sizes, "num_p_programs": "i32", "iters": "i32",
                           "slope": "fp32", "gain": "fp32", "clamp": "fp32"}
                    specs.append(Spec("bias_act_bwd_kernel", variant, dtype, bwd,
                                      dict(common, HAS_GR=True, HAS_DB=True, DB_ATOMIC=True)))
    return specs


def _stride_args(prefix: str, units: dict[str, int]) -> dict[str, str]:
    """The (n, c, p, g) stride arguments of one tensor that are not unit constexprs."""
    return {f"{prefix}_stride_{k}": "i32" for k in "ncpg"
            if f"{prefix}_stride_{k}" not in units}


def _minibatch_stddev_specs() -> list[Spec]:
    shapes = {"progan4x4": (512, 4 * 4, 4), "c512_32x32": (512, 32 * 32, 16)}  # C, HW, tiles
    specs = []
    for dtype, (compute, elem_bytes) in DTYPES.items():
        stat = "fp64" if dtype == "fp64" else "fp32"
        for layout, unit in _layouts().items():
            for shape_name, (c, hw, num_tiles) in shapes.items():
                block_c, block_p, num_warps = minibatch_stddev._blocks(
                    c, hw, layout == "nchw", elem_bytes)
                variant = f"{layout}/{shape_name}"
                tile = dict(BLOCK_C=block_c, BLOCK_P=block_p, COMPUTE=compute,
                            num_warps=num_warps)
                units = {f"{prefix}_{name}": 1 for name in unit
                         for prefix in ("x", "out", "dout")}
                strides = functools.partial(_stride_args, units=units)
                sizes = {name: "i32" for name in ("G", "F", "Cf", "HW", "num_c_tiles")}
                fwd = {"x_ptr": f"*{dtype}", "out_ptr": f"*{dtype}", "partial_ptr": f"*{stat}",
                       **sizes, **strides("x"), **strides("out"), "eps": "fp32"}
                specs.append(Spec("mbstd_fwd_kernel", variant, dtype, fwd,
                                  dict(tile, **{k: v for k, v in units.items()
                                                if k[0] in "xo"})))
                bwd = {"dout_ptr": f"*{dtype}", "x_ptr": f"*{dtype}", "gs_ptr": f"*{stat}",
                       "dx_ptr": f"*{dtype}", **sizes, "scale": "fp32", **strides("x"),
                       **strides("dout"), "eps": "fp32"}
                specs.append(Spec("mbstd_bwd_kernel", variant, dtype, bwd,
                                  dict(tile, **{k: v for k, v in units.items()
                                                if k[0] in "xd"})))
                stat_sig = {"partial_ptr": f"*{stat}", "out_ptr": f"*{dtype}", "M": "i32",
                            "F": "i32", "C": "i32", "HW": "i32", "num_tiles": "i32",
                            "inv_count": "fp32", **strides("out")}
                stat_sig.pop("out_stride_g")
                specs.append(Spec("mbstd_stat_kernel", variant, dtype, stat_sig,
                                  dict(BLOCK_T=triton.next_power_of_2(num_tiles),
                                       BLOCK_P=triton.next_power_of_2(hw), COMPUTE=compute,
                                       num_warps=4,
                                       **{k: v for k, v in units.items()
                                          if k.startswith("out")})))
    return specs


def _signature(fn: triton.runtime.JITFunction, dtype: str, stat: str,
               constexprs: dict[str, object]) -> dict[str, str]:
    """Argument types by naming convention: *_ptr of statistics buffers are `stat`, other
    pointers `dtype`; inv_p, slope and eps are fp32; other arguments i32."""
    stat_buffers = ("mean_ptr", "rstd_ptr", "partial_ptr", "sums_ptr", "rows_ptr")
    signature = {}
    for name in fn.arg_names:
        if name in constexprs or fn.params[fn.arg_names.index(name)].is_constexpr:
            continue
        if name.endswith("_ptr"):
            signature[name] = f"*{stat if name in stat_buffers else dtype}"
        else:
            signature[name] = "fp32" if name in ("inv_p", "slope", "eps") else "i32"
    return signature


def _adain_specs() -> list[Spec]:
    shapes = {"c512_32x32": (512, 32 * 32), "c512_64x64": (512, 64 * 64),
              "c32_512x512": (32, 512 * 512)}
    specs = []
    for dtype, (compute, elem_bytes) in DTYPES.items():
        stat = "fp64" if dtype == "fp64" else "fp32"
        for layout, unit in _layouts().items():
            for shape_name, (c, p) in shapes.items():
                block_c, block_p, num_warps = adain._blocks(c, p, layout == "nchw", elem_bytes)
                constexprs = dict(HAS_NOISE=True, HAS_BIAS=True, HAS_ACT=True, BLOCK_C=block_c,
                                  BLOCK_P=block_p, COMPUTE=compute, num_warps=num_warps,
                                  noise_stride_p=1, **unit)
                kernels = (("adain_fwd_kernel", "adain_bwd_kernel") if p <= block_p else
                           ("adain_stats_kernel", "adain_norm_kernel", "adain_grad_sums_kernel",
                            "adain_grad_kernel"))
                for kernel in kernels:
                    signature = _signature(getattr(adain, kernel), dtype, stat, constexprs)
                    specs.append(Spec(kernel, f"{layout}/{shape_name}", dtype, signature,
                                      constexprs))
    return specs


SPECS = {"adain": _adain_specs, "bias_act": _bias_act_specs,
         "minibatch_stddev": _minibatch_stddev_specs}
"""Kernel module name -> function listing its compile specs."""

MODULES = {"adain": adain, "bias_act": bias_act, "minibatch_stddev": minibatch_stddev}


def kernels_in_package() -> set[str]:
    """Names (module.kernel) of the public Triton kernels defined in fastpgan.kernels."""
    names = set()
    for module_name, module in MODULES.items():
        for name, obj in vars(module).items():
            if isinstance(obj, triton.runtime.JITFunction) and not name.startswith("_"):
                names.add(f"{module_name}.{name}")
    return names


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
    result = Result(spec.kernel, spec.variant, spec.dtype, arch, ok=False)
    constexprs = dict(spec.constexprs)
    options = {"num_warps": constexprs.pop("num_warps"),
               "num_stages": constexprs.pop("num_stages", 3)}
    fn = getattr(MODULES[module_name], spec.kernel)
    signature = dict(spec.signature)
    for name in constexprs:
        signature[name] = "constexpr"
    try:
        source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
        result.registers, result.spill_stores, result.spill_loads = _ptxas_report(
            compiled.asm["ptx"])
        result.ok = result.spill_stores <= SPILL_BUDGET_BYTES
        if not result.ok:
            result.error = f"register spills over {SPILL_BUDGET_BYTES} bytes a thread"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:2000]}"
    return result


def run(archs: tuple[int, ...] = ARCHS, workers: int | None = None) -> dict:
    """Compiles everything; returns {"results": [...], "missing": [...]}."""
    jobs = [(module_name, spec, arch) for module_name, make in SPECS.items()
            for spec in make() for arch in archs]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        results = list(pool.map(compile_one, *zip(*jobs, strict=True)))
    covered = {f"{module_name}.{spec.kernel}" for module_name, spec, _ in jobs}
    return {"results": [asdict(r) for r in results],
            "missing": sorted(kernels_in_package() - covered)}


def main(argv: list[str] | None = None) -> int:
    """Command line: prints the report and returns 0 when every kernel compiled cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--arch", default=",".join(map(str, ARCHS)),
                        help="comma-separated compute capabilities (default: 80,90)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    report = run(tuple(int(a) for a in args.arch.split(",")))
    failed = [r for r in report["results"] if not r["ok"]]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for r in report["results"]:
            status = "ok" if r["ok"] else f"FAIL {r['error']}"
            print(f"sm_{r['arch']} {r['kernel']:<22} {r['variant']:<26} {r['dtype']:<5} "
                  f"regs={r['registers']:<4} spills={r['spill_stores']}/{r['spill_loads']} "
                  f"{status}")
        for name in report["missing"]:
            print(f"no compile spec for {name}")
    return 1 if failed or report["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
