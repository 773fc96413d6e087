"""Host costs on the GPU machine: a cached Triton kernel's launch, a fastpgan op's call
against the same math in plain PyTorch, and one profiled training step per resolution
(host wall time against the time its kernels take on the device).

    python bench/host_costs.py [--resolutions 4 64 1024] [--small]

Prints one JSON line per measurement as it is made, then a table. Without CUDA the op
costs run on CPU tensors (the kernels through Triton's interpreter) and a step has no
device time to report: that is the dry run that keeps this script working.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from benchutil import host_us_per_call

from fastpgan.data import build_cache
from fastpgan.ops import bias_act
from fastpgan.runs.schedule import BATCH_SCHEDULES
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


@triton.jit
def _touch(x_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offsets, tl.load(x_ptr + offsets, mask=offsets < n), mask=offsets < n)


def op_costs(calls: int) -> list[dict]:
    """A cached kernel's launch, and bias + leaky ReLU on a 1x8x4x4 tensor three ways."""
    x = torch.randn(1, 8, 4, 4, device=DEVICE, requires_grad=True)
    b = torch.randn(8, device=DEVICE, requires_grad=True)
    flat = torch.zeros(128, device=DEVICE)

    def launch():
        _touch[(1,)](flat, flat.numel(), BLOCK=128)

    def plain():
        F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2).mul(2 ** 0.5).sum().backward()

    def ours(backend):
        def call():
            bias_act(x, b, act="lrelu", backend=backend).sum().backward()
        return call

    def forward(backend):
        def call():
            with torch.no_grad():
                bias_act(x, b, act="lrelu", backend=backend)
        return call

    cases = {"triton launch (cached kernel)": launch,
             "bias+lrelu fwd+bwd, plain torch": plain,
             "bias+lrelu fwd+bwd, fastpgan reference": ours("reference"),
             "bias+lrelu fwd+bwd, fastpgan fused": ours("fused"),
             "bias+lrelu fwd, fastpgan fused": forward("fused")}
    rows = []
    for name, fn in cases.items():
        fn()  # warm-up: compiles, caches
        rows.append({"what": name, "shape": "1x8x4x4",
                     "us_per_call": round(host_us_per_call(fn, calls), 1)})
    return rows


def step_costs(resolutions: list[int], small: bool, steps: int) -> list[dict]:
    """Host ms and device-kernel ms of the trainer's step, per resolution, at the official
    minibatch (full-size networks unless ``small``)."""
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


def main() -> None:
    """Measures, printing each result as it comes, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[4, 64, 1024])
    parser.add_argument("--small", action="store_true", help="tiny networks (dry run)")
    parser.add_argument("--calls", type=int, default=200 if CUDA else 5)
    parser.add_argument("--steps", type=int, default=5 if CUDA else 1)
    args = parser.parse_args()
    rows = []
    for row in op_costs(args.calls):
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows += step_costs(args.resolutions, args.small, args.steps)
    print(f"{torch.cuda.get_device_name() if CUDA else 'cpu'}, torch {torch.__version__}, "
          f"triton {triton.__version__}")
    for row in rows:
        if "us_per_call" in row:
            print(f"{row['what']:<42} {row['shape']:>9} {row['us_per_call']:>9.1f} us")
        else:
            kernels = "n/a" if row["kernel_ms"] is None else f"{row['kernel_ms']:.2f}"
            print(f"step {row['resolution']:>4}x{row['resolution']:<4} batch {row['batch']:>3}: "
                  f"host {row['host_ms']:.2f} ms, kernels {kernels} ms")


if __name__ == "__main__":
    main()
