"""What one training step costs the host: kernels launched and host time per step, per
resolution of the official configuration, with every kernel launch stubbed out.

    python bench/step_overhead.py [--resolution 1024] [--impl fused] [--out FILE]

The trainer's own step (``Trainer._step``: the loss's discriminator phases with the
penalty's double backward, the generator phase, both optimizers, the EMA) runs on
full-size networks moved to PyTorch's meta device, at the official schedule's minibatch
for each resolution (128 at 4x4 ... 4 at 1024x1024). Meta tensors have shapes and no
data, so every ATen op and every fastpgan custom op runs its host side (Python, the
dispatcher, autograd, our wrappers, shape checks) and then a shape-only kernel instead
of a launch. The counts are exact; the host time is a same-harness comparison and an
upper bound, since PyTorch's meta kernels (several written in Python) cost more host
time than CUDA's C++ dispatch.

Counted per step (a TorchDispatchMode): ATen ops that would launch a kernel (views,
aliases and allocations excluded), fastpgan custom ops, the share of both in the
optimizers and in the EMA, and the host's reads of tensor values (each one waits for the
GPU). Adam runs its foreach implementation, as it does on CUDA. Autocast does not apply
to meta tensors, so the step runs in float32 (on a GPU, bf16 autocast adds a cast
kernel a convolution); activations are channels_last, as on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

if "TRITON_INTERPRET" not in os.environ:  # Triton's kernels on non-CUDA tensors
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastpgan
from fastpgan.data import build_cache
from fastpgan.runs.schedule import BATCH_SCHEDULES
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer

META = torch.device("meta")
ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
               "lift_fresh", "_local_scalar_dense"}
"""ATen ops that launch no kernel besides views and aliases (which say so in their schema)."""


class KernelCount(TorchDispatchMode):
    """Counts the ops below it, per region (``region``: a key set by the caller)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()
        self.region = "step"

    def __enter__(self):
        # tolist does not dispatch: counted here, as the read of a meta tensor it is
        self._tolist = torch.Tensor.tolist

        def counted(tensor):
            if tensor.device == META:
                self.counts[(self.region, "reads")] += 1
            return self._tolist(tensor)
        torch.Tensor.tolist = counted
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if func.namespace == "fastpgan":
            self.counts[(self.region, "fastpgan")] += 1
        elif func is torch.ops.aten._local_scalar_dense.default:
            # Adam's step counters are host tensors (without capturable=True): no wait
            if args[0].device == META:
                self.counts[(self.region, "reads")] += 1
        elif not func.is_view and name not in ALLOCATIONS:
            self.counts[(self.region, "aten")] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def meta_reads_as_zeros():
    """A meta tensor has no values: ``tolist`` (a step that reads its losses every step)
    returns zeros, so such a step runs here (``KernelCount`` counts the read)."""
    tolist = torch.Tensor.tolist

    def zeros(self):
        return torch.zeros(self.shape).tolist() if self.device == META else tolist(self)
    torch.Tensor.tolist = zeros
    try:
        yield
    finally:
        torch.Tensor.tolist = tolist


def on_meta(trainer: Trainer) -> None:
    """Moves the trainer's networks and step state to the meta device."""
    trainer.G.to(META)
    trainer.D.to(META)
    trainer.ema.model.to(META)
    trainer.G_forward = trainer.G
    trainer.device, trainer.precision = META, "fp32"
    trainer.memory_format = torch.channels_last
    trainer.z_generator = None  # a meta generator does not exist; draws use the default
    if hasattr(trainer, "alpha"):
        trainer.alpha = torch.zeros((), device=META)


REGIONS = (("optimizer", lambda trainer: trainer, "_apply"),
           ("ema", lambda trainer: trainer.ema, "advance"),
           ("ema", lambda trainer: trainer.ema, "follow"))
"""(region, the object, its method) whose ops count in that region."""


def regions(trainer: Trainer, count: KernelCount) -> None:
    """Attributes the optimizers' and the EMA's ops to their own regions."""
    def counted(region, fn):
        def run(*args, **kwargs):
            count.region = region
            try:
                return fn(*args, **kwargs)
            finally:
                count.region = "step"
        return run
    for region, owner, name in REGIONS:
        target = owner(trainer)
        setattr(target, name, counted(region, getattr(target, name)))


def unwrap(trainer: Trainer) -> None:
    """Undoes ``regions``."""
    for _, owner, name in REGIONS:
        delattr(owner(trainer), name)


def measure(trainer: Trainer, resolution: int, batch: int, repeats: int) -> dict:
    """Kernel counts and median host ms of one step at ``resolution``."""
    trainer.opt_g = trainer.opt_d = None
    trainer._optimizers(resolution)
    for opt in (trainer.opt_g, trainer.opt_d):
        for group in opt.param_groups:
            group["foreach"] = True  # what Adam picks for CUDA parameters
    real = torch.zeros(batch, trainer.config.channels, resolution, resolution,
                       dtype=torch.uint8)
    trainer._step(real, resolution, 1.0)  # warm-up: optimizer state, first-call caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer._step(real, resolution, 1.0)
        times.append(1e3 * (time.perf_counter() - start))
    count = KernelCount()
    regions(trainer, count)
    try:
        with count:
            trainer._step(real, resolution, 1.0)
    finally:
        unwrap(trainer)
    c = count.counts

    def total(kind):
        return sum(v for (_, k), v in c.items() if k == kind)
    return {"resolution": resolution, "batch": batch, "aten": total("aten"),
            "fastpgan": total("fastpgan"), "optimizer": c[("optimizer", "aten")],
            "ema": c[("ema", "aten")], "reads": total("reads"),
            "host_ms": statistics.median(times)}


def main() -> None:
    """Measures every resolution up to --resolution and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--impl", default="fused", choices=["fused", "reference"])
    parser.add_argument("--loss", default="wgan-gp", choices=["wgan-gp", "logistic-r1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="", help="a name for this code, e.g. a commit")
    parser.add_argument("--out", help="where to write the JSON results")
    args = parser.parse_args()
    fastpgan.set_backend("fused" if args.impl == "fused" else "reference")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, meta_reads_as_zeros():
        images = (np.zeros((3, args.resolution, args.resolution), np.float32)
                  for _ in range(2))
        data = build_cache(images, Path(tmp) / "data", args.resolution, 3, source="zeros")
        trainer = Trainer(TrainConfig(data=str(data), out=str(Path(tmp) / "run"),
                                      resolution=args.resolution, loss=args.loss,
                                      precision="fp32", swd_images=0, workers=0,
                                      progress=False, device="cpu"))
        on_meta(trainer)
        for k in range(2, int(math.log2(args.resolution)) + 1):
            resolution = 2 ** k
            rows.append(measure(trainer, resolution, BATCH_SCHEDULES["official"][resolution],
                                args.repeats))
            print(json.dumps(rows[-1]), flush=True)
    report = {"label": args.label, "impl": args.impl, "loss": args.loss,
              "host": platform.processor() or platform.machine(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    print(table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


def table(report: dict) -> str:
    """Fixed-width table: one row per resolution."""
    lines = [f"{report['label'] or 'this tree'}: {report['impl']} {report['loss']}, "
             f"torch {report['torch']}, {report['host']}, launches stubbed (meta device)",
             f"{'res':>5} {'batch':>5} {'aten ops':>8} {'fastpgan':>8} {'of them optim':>13} "
             f"{'EMA':>5} {'host reads':>10} {'host ms':>8}"]
    for r in report["rows"]:
        lines.append(f"{r['resolution']:>5} {r['batch']:>5} {r['aten']:>8} {r['fastpgan']:>8} "
                     f"{r['optimizer']:>13} {r['ema']:>5} {r['reads']:>10} {r['host_ms']:>8.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
