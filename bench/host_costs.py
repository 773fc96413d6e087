"""Host costs on the GPU machine: a cached Triton kernel's launch, a fastpgan op's call
against the same math in plain PyTorch, and one profiled training step per resolution
(host wall time against the time its kernels take on the device).

    python bench/host_costs.py [--resolutions 4 64 1024] [--small] [--calls 200]

Prints one JSON line per measurement as it is made, then the tables. Without CUDA the
costs are measured on CPU tensors with Triton's launch replaced by a no-op (the
interpreter is no launch): an op's host cost but its launch, compared with plain PyTorch
on the same machine; a step then has no device time to report. That is also the dry run
that keeps this script working.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors reach the launch code

import numpy as np
import plain
import torch
import triton
import triton.language as tl
from benchutil import host_us_per_call
from torch import nn

from fastpgan import ops
from fastpgan.data import build_cache
from fastpgan.nn import BatchNormAct2d
from fastpgan.runs.schedule import BATCH_SCHEDULES
from fastpgan.train.augment import draw_bgc
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
SQRT2 = 2 ** 0.5
TORCH_BATCH_NORM = nn.Sequential(nn.BatchNorm2d(8), nn.LeakyReLU(0.2)).to(DEVICE)
"""The torch modules a BatchNormAct2d replaces (their parameters need no gradient input)."""
BATCH_NORM_ACT = {backend: BatchNormAct2d(8, activation="lrelu", backend=backend).to(DEVICE)
                  for backend in ("reference", "fused")}
BGC = draw_bgc(2, 3, 8, 8, 1.0, DEVICE, torch.Generator(DEVICE).manual_seed(0))
"""ADA's transforms of two 8x8 RGB images at p = 1."""


@triton.jit
def _touch(x_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offsets, tl.load(x_ptr + offsets, mask=offsets < n), mask=offsets < n)


def stub_launches() -> None:
    """Without CUDA, Triton's interpreter stands in for a launch and costs what no GPU
    launch does: it is replaced by a no-op, so an op's host cost here is everything but
    the launch (the table says so)."""
    from triton.runtime.interpreter import InterpretedFunction
    InterpretedFunction.run = lambda self, *args, **kwargs: None


OP_CASES = {
    # name: (shapes of the inputs, plain PyTorch, our op with its settings)
    "bias+lrelu": ([(1, 8, 4, 4), (8,)],
                   lambda x, b: plain.lrelu(x + b.view(1, -1, 1, 1), SQRT2),
                   lambda x, b, backend: ops.bias_act(x, b, act="lrelu", gain=SQRT2,
                                                      backend=backend)),
    "bias+lrelu+pixel norm": (
        [(1, 8, 4, 4), (8,)],
        lambda x, b: plain.pixel_norm(plain.lrelu(x + b.view(1, -1, 1, 1), SQRT2)),
        lambda x, b, backend: ops.bias_act(x, b, act="lrelu", gain=SQRT2, pixel_norm=True,
                                           backend=backend)),
    "minibatch_stddev": ([(4, 8, 4, 4)], plain.minibatch_stddev,
                         lambda x, backend: ops.minibatch_stddev(x, 4, backend=backend)),
    "adain": ([(2, 8, 4, 4), (2, 8), (2, 8), (2, 1, 4, 4), (8,), (8,)], plain.adain,
              lambda x, scale, shift, noise, noise_weight, bias, backend: ops.adain(
                  x, scale, shift, noise=noise, noise_weight=noise_weight, bias=bias,
                  negative_slope=0.2, backend=backend)),
    "upsample_conv2d+lrelu+pn": (
        [(1, 8, 4, 4), (8, 8, 3, 3), (8,)],
        functools.partial(plain.upsample_conv, weight_gain=0.5, gain=SQRT2, normalize=True),
        lambda x, w, b, backend: ops.upsample_conv2d(x, w, b, weight_gain=0.5, act="lrelu",
                                                     gain=SQRT2, pixel_norm=True,
                                                     backend=backend)),
    "conv2d_downsample+lrelu": (
        [(1, 8, 8, 8), (8, 8, 3, 3), (8,)],
        functools.partial(plain.conv_downsample, weight_gain=0.5, gain=SQRT2),
        lambda x, w, b, backend: ops.conv2d_downsample(x, w, b, weight_gain=0.5, act="lrelu",
                                                       gain=SQRT2, backend=backend)),
    "BatchNorm2d+LeakyReLU": ([(8, 8, 4, 4)], TORCH_BATCH_NORM,
                              lambda x, backend: BATCH_NORM_ACT[backend](x)),
    # ADA at p = 1 (every transform); plain PyTorch is the definition itself here
    "augment_bgc": ([(2, 3, 8, 8)], lambda x: ops.augment_bgc_reference(x, *BGC),
                    lambda x, backend: ops.augment_bgc(x, *BGC, backend=backend)),
}
"""Small shapes, where a call's host cost is all there is to it."""

IMPLS = ("plain torch", "reference", "fused")


def op_costs(calls: int, repeats: int) -> list[dict]:
    """A cached kernel's launch, then each op of ``OP_CASES`` forward alone (no_grad) and
    forward + backward, in plain PyTorch, as fastpgan's reference and fused: the best
    of ``repeats`` rounds of ``calls`` calls."""
    flat = torch.zeros(128, device=DEVICE)

    def launch():
        _touch[(1,)](flat, flat.numel(), BLOCK=128)

    def best(fn):
        fn()  # warm-up: compiles, caches
        return round(min(host_us_per_call(fn, calls) for _ in range(repeats)), 1)

    rows = [{"what": "triton launch (cached kernel)", "impl": "-", "pass": "launch",
             "us_per_call": best(launch)}]
    for name, (shapes, baseline, ours) in OP_CASES.items():
        inputs = [torch.randn(shape, device=DEVICE, requires_grad=True) for shape in shapes]
        for impl in IMPLS:
            for pass_name, fn in _passes(baseline, ours, inputs, impl).items():
                rows.append({"what": name, "impl": impl, "pass": pass_name,
                             "us_per_call": best(fn)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _passes(baseline, ours, inputs: list[torch.Tensor], impl: str) -> dict[str, Callable]:
    """The forward alone (no_grad) and forward + backward of one implementation."""
    def call():
        return baseline(*inputs) if impl == "plain torch" else ours(*inputs, backend=impl)

    def forward():
        with torch.no_grad():
            call()

    def both():
        call().sum().backward()
    return {"fwd": forward, "fwd+bwd": both}


def step_costs(resolutions: list[int], small: bool, steps: int) -> list[dict]:
    """Host ms and device-kernel ms of the trainer's step, per resolution, at the official
    minibatch (full-size networks unless ``small``)."""
    if not resolutions:
        return []
    top = max(resolutions)
    size = dict(latent_dim=16, fmap_base=2 * top, fmap_max=8) if small else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = (np.zeros((3, top, top), np.float32) for _ in range(2))
        data = build_cache(images, Path(tmp) / "data", top, 3, source="zeros")
        trainer = Trainer(TrainConfig(data=str(data), out=str(Path(tmp) / "run"), resolution=top,
                                      swd_images=0, workers=0, progress=False, device=DEVICE,
                                      **size))
        for resolution in resolutions:
            batch = BATCH_SCHEDULES["official"][resolution]
            trainer.opt_g = trainer.opt_d = None
            trainer._optimizers(resolution)
            real = torch.zeros(batch, 3, resolution, resolution, dtype=torch.uint8)
            step = functools.partial(trainer._step, real, resolution, 1.0)
            step()
            host_ms = host_us_per_call(step, steps) / 1e3
            activities = [torch.profiler.ProfilerActivity.CPU]
            if CUDA:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=activities) as prof:
                step()
                if CUDA:
                    torch.cuda.synchronize()
            kernel_us = sum(e.self_device_time_total for e in prof.key_averages()) if CUDA else None
            rows.append({"what": "training step", "resolution": resolution, "batch": batch,
                         "host_ms": round(host_ms, 2),
                         "kernel_ms": None if kernel_us is None else round(kernel_us / 1e3, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def op_table(rows: list[dict]) -> list[str]:
    """The op costs as a table: us per call of each implementation, and fused minus
    plain PyTorch."""
    cost = {(r["what"], r["impl"], r["pass"]): r["us_per_call"] for r in rows}
    lines = [f"{'op (host us per call)':<26}{'pass':>8}" + "".join(f"{i:>13}" for i in IMPLS)
             + f"{'fused-plain':>13}"]
    for name in OP_CASES:
        for pass_name in ("fwd", "fwd+bwd"):
            values = [cost[(name, impl, pass_name)] for impl in IMPLS]
            lines.append(f"{name:<26}{pass_name:>8}" + "".join(f"{v:>13.1f}" for v in values)
                         + f"{values[2] - values[0]:>+13.1f}")
    return lines


def main() -> None:
    """Measures, printing each result as it comes, then the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="*", default=[4, 64, 1024],
                        help="training steps to profile (none: op costs only)")
    parser.add_argument("--small", action="store_true", help="tiny networks (dry run)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5 if CUDA else 1)
    args = parser.parse_args()
    if not CUDA:
        stub_launches()
    op_rows = op_costs(args.calls, args.repeats)
    step_rows = step_costs(args.resolutions, args.small, args.steps)
    print(f"{torch.cuda.get_device_name() if CUDA else 'cpu (Triton launches stubbed)'}, "
          f"torch {torch.__version__}, triton {triton.__version__}")
    print(f"cached Triton launch: {op_rows[0]['us_per_call']:.1f} us")
    print("\n".join(op_table(op_rows[1:])))
    for row in step_rows:
        kernels = "n/a" if row["kernel_ms"] is None else f"{row['kernel_ms']:.2f}"
        print(f"step {row['resolution']:>4}x{row['resolution']:<4} batch {row['batch']:>3}: "
              f"host {row['host_ms']:.2f} ms, kernels {kernels} ms")


if __name__ == "__main__":
    main()
