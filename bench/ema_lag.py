"""Does the shipped generator (the moving average) lag the raw one after a resolution
change? One progressive run per moving average, checkpointed often and all checkpoints
kept, and FID of the average and of the raw generator at every checkpoint, each at the
resolution and fade-in it was training.

    python bench/ema_lag.py [--seed 0] [--num 300] [--work runs/ema-lag]

The run is quality.py's "progan-none" recipe (the demo: 100 LFW faces, 4 to 32, 18 kimg,
logistic + R1). Writes bench/results/ema_lag.json (every checkpoint's kimg, resolution,
alpha and both FIDs, per moving average) and docs/ema-lag.png (both FIDs over kimg, the
phase starts marked). Resumable: a finished run or measurement is not done again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quality import RECIPES, run

from fastpgan.runs import run_phases
from fastpgan.runs.checkpoint import Checkpoint, latest_checkpoint

ROOT = Path(__file__).resolve().parent.parent
AVERAGES = {"paper: decay 0.999": ["--ema-decay", "0.999"],
            "default: half-life 10 kimg, ramp-up 0.05": []}
"""Each moving average compared, and the flags that choose it."""
OFTEN = ["--checkpoint-kimg", "0.75", "--keep-checkpoints", "1000"]


def fids(run_folder: Path, num: int, raw: bool) -> list[dict]:
    """``fastpgan metrics --every-checkpoint`` FID of a run's average or raw generator."""
    out = run_folder / ("raw-fid.json" if raw else "ema-fid.json")
    if not out.exists():
        run([sys.executable, "-m", "fastpgan.cli.main", "metrics", str(run_folder),
             "--every-checkpoint", *(["--raw"] if raw else []), "--metrics", "fid",
             "--num", str(num), "--device", "cpu", "--seed", "0", "--out", str(out),
             "--plot", str(out.with_suffix(".png"))])
    return json.loads(out.read_text())


def measure(name: str, flags: list[str], seed: int, work: Path, num: int) -> dict:
    """Trains one moving average's run (if not done) and measures it at every checkpoint."""
    folder = work / f"{name.split(':')[0]}-seed{seed}"
    if not (folder / "generator").exists():
        resume = (["--resume", "latest"] if latest_checkpoint(folder / "checkpoints")
                  else ["--overwrite"])
        run([sys.executable, "-m", "fastpgan.cli.train", *RECIPES["progan-none"], *flags,
             *OFTEN, "--seed", str(seed), "--out", str(folder), *resume])
    average, raw = fids(folder, num, raw=False), fids(folder, num, raw=True)
    config = Checkpoint.read(latest_checkpoint(folder / "checkpoints")).config
    return {"seed": seed, "num": num,
            "phase_starts_kimg": [p.start / 1000 for p in run_phases(config)],
            "checkpoints": [{"kimg": a["kimg"], "resolution": a["resolution"],
                             "alpha": a["alpha"], "fid": a["fid"], "raw_fid": r["fid"]}
                            for a, r in zip(average, raw, strict=True)]}


def plot(results: dict, out: Path) -> None:
    """One panel per moving average: its FID and the raw generator's over kimg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6),
                                sharey=True, squeeze=False)
    for axis, (name, result) in zip(axes[0], results.items(), strict=True):
        kimg = [c["kimg"] for c in result["checkpoints"]]
        axis.plot(kimg, [c["raw_fid"] for c in result["checkpoints"]], "o-", color="0.6",
                  label="raw G")
        axis.plot(kimg, [c["fid"] for c in result["checkpoints"]], "o-", color="C0",
                  label="moving average (shipped)")
        for start in result["phase_starts_kimg"][1:]:
            axis.axvline(start, color="0.85", zorder=0)
        axis.set_title(name, fontsize="medium")
        axis.set_xlabel("kimg (grey lines: phase starts)")
    axes[0][0].set_ylabel(f"FID ({results[next(iter(results))]['num']} images)")
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    """Runs the comparison (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=300, help="generated images per FID")
    p.add_argument("--work", type=Path, default=Path("runs/ema-lag"))
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "ema_lag.json")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "ema-lag.png")
    args = p.parse_args(argv)
    results = {name: measure(name, flags, args.seed, args.work, args.num)
               for name, flags in AVERAGES.items()}
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.plot)
    for name, result in results.items():
        worse = [c["kimg"] for c in result["checkpoints"] if c["fid"] > c["raw_fid"]]
        print(f"{name}: the average scored worse than raw G at {len(worse)} of "
              f"{len(result['checkpoints'])} checkpoints (kimg {worse})")


if __name__ == "__main__":
    main()
