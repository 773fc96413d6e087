"""Launch-configuration sweep for bias_act with pixel norm on a GPU (a tuning tool).

Times the forward and the backward kernel alone for each (BLOCK_C, BLOCK_P, num_warps)
candidate, and the backward's programs per GPU wave, at the ProGAN size (bf16,
16 x 512 x 64 x 64 by default) in both layouts, and checks every candidate's output
against the current heuristic's. Prints one line per candidate with GB/s and the
percentage of the measured copy bandwidth, best first:

    python bench/sweep_bias_act.py [--shape 16 512 64 64] [--out sweep.txt]
"""

from __future__ import annotations

import argparse
import itertools
import math

import torch
import triton
from benchutil import measure_copy_bandwidth
from triton.testing import do_bench

from fastpgan.kernels import bias_act as kb

PIXEL_NORM_TILES = [(512, 8), (512, 16), (512, 32), (256, 32), (256, 64), (128, 64),
                    (128, 128), (64, 128), (64, 256)]
WARPS = [4, 8, 16]
WAVES = [2, 4, 8, 16]


def _launch(x, b, dy, y, r, dx, forward: bool) -> None:
    if forward:
        kb.bias_act_forward(x, b, y, r, slope=0.2, gain=1.0, clamp=None, eps=1e-8)
    else:
        kb.bias_act_backward(dy, y, r, None, dx, with_bias_grad=True, slope=0.2, gain=1.0,
                             clamp=None)


def _time_config(tensors, forward: bool, block_c: int, block_p: int, warps: int,
                 waves: int) -> float:
    """Median milliseconds of one kernel launch under a forced configuration."""
    heuristic_blocks, heuristic_programs = kb._blocks, kb._programs_per_row

    def forced_blocks(c, p, stride_p, pixel_norm, elem_bytes):
        return block_c, block_p, triton.cdiv(c, block_c), warps

    def forced_programs(device, rows, p_blocks):
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(p_blocks, waves * sms // max(rows, 1)))

    kb._blocks, kb._programs_per_row = forced_blocks, forced_programs
    try:
        return do_bench(lambda: _launch(*tensors, forward), warmup=25, rep=200,
                        return_mode="median")
    finally:
        kb._blocks, kb._programs_per_row = heuristic_blocks, heuristic_programs


def sweep(shape: tuple[int, ...], channels_last: bool, copy_gbps: float) -> list[str]:
    """One report line per candidate, fastest first, for one layout."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16).to(memory_format=fmt)
    b = torch.randn(shape[1], device="cuda", dtype=torch.bfloat16)
    dy = torch.randn_like(x)
    y, dx = torch.empty_like(x), torch.empty_like(x)
    r = torch.empty((shape[0], 1, *shape[2:]), device="cuda")
    tensors = (x, b, dy, y, r, dx)
    _launch(*tensors, True)
    _launch(*tensors, False)
    y_ref, dx_ref = y.clone(), dx.clone()
    pixels = shape[0] * math.prod(shape[2:])
    act_bytes = x.numel() * x.element_size()
    layout = "channels_last" if channels_last else "nchw"
    rows: list[tuple[bool, float, str]] = []
    for forward in (True, False):
        nbytes = (2 if forward else 3) * act_bytes + 4 * pixels
        candidates = itertools.product(PIXEL_NORM_TILES, WARPS, [8] if forward else WAVES)
        for (block_c, block_p), warps, waves in candidates:
            if block_c * block_p // (32 * warps) < 1:
                continue
            try:
                ms = _time_config(tensors, forward, block_c, block_p, warps, waves)
            except Exception as exc:  # a configuration the compiler rejects is reported
                ms, result = math.inf, f"failed: {type(exc).__name__}: {exc}"
            else:
                out, ref = (y, y_ref) if forward else (dx, dx_ref)
                ok = bool((out - ref).abs().max() <= 2e-2 * ref.abs().max())
                gbps = nbytes / ms / 1e6
                result = (f"{ms * 1e3:8.1f} us {gbps:7.0f} GB/s {100 * gbps / copy_gbps:5.1f} %"
                          f"{'' if ok else '  MISMATCH'}")
            name = (f"{layout:13s} {'fwd' if forward else 'bwd'} c{block_c:<4d} p{block_p:<4d} "
                    f"w{warps:<2d} waves{waves:<2d}")
            rows.append((not forward, ms, f"{name} {result}"))
    return [line for *_, line in sorted(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[16, 512, 64, 64])
    parser.add_argument("--out", help="also write the report here")
    args = parser.parse_args()
    copy_gbps = measure_copy_bandwidth()
    c, p = args.shape[1], math.prod(args.shape[2:])
    heuristic = {layout: kb._blocks(c, p, stride_p, True, 2)
                 for layout, stride_p in (("nchw", 1), ("channels_last", c))}
    report = [f"{torch.cuda.get_device_name()} torch {torch.__version__} triton "
              f"{triton.__version__}; copy bandwidth {copy_gbps:.0f} GB/s; shape "
              f"{tuple(args.shape)} bf16; lrelu + bias + pixel norm; heuristic (BLOCK_C, BLOCK_P, "
              f"passes, warps): {heuristic}"]
    for channels_last in (False, True):
        report += sweep(tuple(args.shape), channels_last, copy_gbps)
    print("\n".join(report))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
