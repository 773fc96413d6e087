"""End-to-end training speed: images/s and peak GPU memory per resolution for one real
training step (D step with the loss's penalty, G step, EMA) of fastpgan-train's loop,
for the fused model and the same model on the reference ops (and the reference with the
generator under torch.compile: D cannot be compiled, as WGAN-GP and R1 differentiate it
twice), then the projected wall-clock of the whole 4 -> R schedule.

    python bench/train_bench.py --resolution 1024 --out bench/results/train.json

Minibatches are the paper's; data are random images in a temporary cache. Without a GPU
it runs a small smoke configuration on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import fastpgan
from fastpgan.data import build_cache
from fastpgan.runs.schedule import build_phases
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer

IMPLS = {"fused": ("auto", "off", None), "fused-graphs": ("auto", "on", None),
         "reference": ("reference", "off", None), "compiled-G": ("reference", "off", "default"),
         "compiled-G-reduce-overhead": ("reference", "off", "reduce-overhead")}
"""Columns: (fastpgan backend, --cuda-graphs, torch.compile mode of G or None).
fused-graphs and reduce-overhead (torch.compile's own CUDA graphs of G) need CUDA."""


def measure(trainer: Trainer, resolution: int, alpha: float, steps: int, warmup: int) -> dict:
    """images/s and peak memory (GiB, CUDA) of the loop's step at one resolution."""
    trainer._optimizers(resolution)
    if trainer.graphs is not None:  # new optimizers: graphs captured afresh
        trainer.graphs.reset()
    batch = next(p.batch for p in trainer.phases if p.resolution == resolution)
    batches = trainer.data.batches(resolution, batch)
    cuda = trainer.device.type == "cuda"
    for _ in range(warmup):
        trainer._step(next(batches), resolution, alpha)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer._step(next(batches), resolution, alpha)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    result = {"batch": batch, "step_ms": 1e3 * seconds, "img_per_s": batch / seconds}
    if cuda:
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main() -> None:
    """Measures every implementation at every resolution and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--resolution", type=int, default=1024 if cuda else 16)
    parser.add_argument("--arch", default="progan", choices=["progan", "stylegan"])
    parser.add_argument("--loss", default="wgan-gp", choices=["wgan-gp", "logistic-r1"])
    parser.add_argument("--steps", type=int, default=20 if cuda else 2)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 1)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--resolutions", type=int, nargs="+",
                        help="measure only these (default: every one up to --resolution)")
    parser.add_argument("--out", help="where to write the JSON results")
    args = parser.parse_args()
    size = {} if cuda else dict(latent_dim=32, fmap_base=64, fmap_max=16)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        images = (rng.uniform(0, 255, (3, args.resolution, args.resolution)).astype(np.float32)
                  for _ in range(32))
        data = build_cache(images, Path(tmp) / "data", args.resolution, 3, source="random")
        for impl in args.impls.split(","):
            backend, graphs, compile_mode = IMPLS[impl]
            if not cuda and (graphs == "on" or compile_mode == "reduce-overhead"):
                continue
            fastpgan.set_backend(backend)
            config = TrainConfig(data=str(data), out=str(Path(tmp) / impl), arch=args.arch,
                                 loss=args.loss, resolution=args.resolution, swd_images=0,
                                 workers=2, progress=False, compile=compile_mode is not None,
                                 cuda_graphs=graphs,
                                 **size)
            trainer = Trainer(config)  # --compile: the step's own compiled G_forward
            if compile_mode == "reduce-overhead":
                trainer.G_forward = torch.compile(trainer.G, mode=compile_mode)
            chosen = args.resolutions or [2 ** k for k in
                                          range(2, int(math.log2(args.resolution)) + 1)]
            for k in (int(math.log2(r)) for r in chosen):
                for alpha in ((1.0,) if k == 2 else (1.0, 0.5)):
                    try:
                        result = measure(trainer, 2 ** k, alpha, args.steps, args.warmup)
                    except torch.cuda.OutOfMemoryError as exc:
                        result = {"error": f"out of memory: {exc}"[:200]}
                    rows.append({"impl": impl, "resolution": 2 ** k, "alpha": alpha, **result})
                    print(json.dumps(rows[-1]), flush=True)
    fastpgan.set_backend("auto")
    report = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
              "torch": torch.__version__, "arch": args.arch, "loss": args.loss,
              "date": time.strftime("%Y-%m-%d"), "rows": rows,
              "projected_hours": projected_hours(rows, args.resolution)}
    print(table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


def projected_hours(rows: list[dict], resolution: int) -> dict[str, float]:
    """Hours for the official 600k + 600k schedule to ``resolution`` at the measured rates;
    a resolution not measured takes the rate of the next one above it that was (slower,
    so the projection errs long)."""
    rate = {(r["impl"], r["resolution"], r["alpha"]): r.get("img_per_s") for r in rows}
    hours = {}
    for impl in {r["impl"] for r in rows}:
        total = 0.0
        for phase in build_phases(resolution, 600, 600, "paper"):
            alpha = 0.5 if phase.fading else 1.0
            measured = sorted(res for (i, res, a) in rate if i == impl and a == alpha
                              and res >= phase.resolution)
            speed = rate.get((impl, measured[0], alpha)) if measured else None
            if not speed:
                break
            total += phase.length / speed
        else:
            hours[impl] = total / 3600
    return hours


def table(report: dict) -> str:
    """Fixed-width table: images/s and peak memory per resolution and implementation."""
    impls = sorted({r["impl"] for r in report["rows"]}, key=list(IMPLS).index)
    lines = [f"{report['device']}  torch {report['torch']}  {report['arch']} {report['loss']}",
             f"{'res':>5} {'alpha':>5} {'batch':>5} " + " ".join(
                 f"{impl + ' img/s':>18} {'GiB':>6}" for impl in impls)]
    keys = sorted({(r["resolution"], r["alpha"]) for r in report["rows"]},
                  key=lambda k: (k[0], -k[1]))
    for res, alpha in keys:
        cells, batch = [], ""
        for impl in impls:
            row = next((r for r in report["rows"] if (r["impl"], r["resolution"], r["alpha"])
                        == (impl, res, alpha)), {})
            batch = row.get("batch", batch)
            cells.append(f"{row.get('img_per_s', float('nan')):18.1f} "
                         f"{row.get('peak_gib', float('nan')):6.2f}")
        lines.append(f"{res:>5} {alpha:>5} {batch:>5} " + " ".join(cells))
    lines.append("projected 4->" + str(max(k[0] for k in keys)) + " (600k + 600k per phase): " +
                 ", ".join(f"{k} {v:.1f} h" for k, v in report["projected_hours"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
