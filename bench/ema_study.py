"""Which moving average should a run ship? One training run carries several averages side
by side, and FID and KID of each at the end are measured beside the raw generator's.

An average never feeds back into training, so every average of one run follows the same
raw generator (measured: the raw FID of quality.py's progan-none seed 0 was 323.15117188801617
with the paper's decay and with the half-life, to the last digit), and a seed's averages
differ by their averaging alone.

    python bench/ema_study.py [--recipe progan-none] [--seeds 0,1,2] [--num 1000]
                              [--kimg N] [--averages "NAME;NAME"] [--work runs/ema-study]

``--kimg`` trains the recipe longer (or shorter) than the benchmark does, its schedule
otherwise the same, to see how the averages compare once the generator improves slowly.
Writes one row per seed, run length and average (and one for the raw generator) to
bench/results/ema_study.jsonl and prints each average's mean and spread over the seeds. A
seed is run again only for averages it has no row for; its raw generator must then come out
as before (training on the CPU is reproducible), or the study stops.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from quality import RECIPES
from quality_data import resolve
from torch import nn

from fastpgan.cli.train import build_parser, config_from_args
from fastpgan.metrics.evaluate import evaluate
from fastpgan.metrics.inception import InceptionFeatures
from fastpgan.runs.schedule import phase_at
from fastpgan.train.ema import EMA
from fastpgan.train.loop import Trainer

ROOT = Path(__file__).resolve().parent.parent
AVERAGES = {
    "decay 0.999 (paper)": dict(decay=0.999),
    "half-life 10 kimg": dict(half_life_kimg=10),
    "half-life 10 kimg, ramp-up 0.05": dict(half_life_kimg=10, rampup=0.05),
    "half-life 10 kimg, ramp-up 0.02": dict(half_life_kimg=10, rampup=0.02),
    "half-life 10 kimg, ramp-up 0.01": dict(half_life_kimg=10, rampup=0.01),
    "half-life 10 kimg, ramp-up 0.005": dict(half_life_kimg=10, rampup=0.005),
    "half-life 10 kimg, ramp-up 0.002": dict(half_life_kimg=10, rampup=0.002),
    "half-life 10 kimg, ramp-up 0.05 of the phase": dict(half_life_kimg=10, rampup=0.05),
    "half-life 10 kimg, ramp-up 0.01 of the phase": dict(half_life_kimg=10, rampup=0.01),
}
"""Each average compared and EMA's settings for it; "of the phase" ramps up over the
images shown since the current phase began (a fresh ramp at each resolution change)."""


class SideBySide:
    """The trainer's EMA with more averages following the same generator: the trainer
    reads and ships the first; the rest are advanced and followed with it."""

    def __init__(self, shipped: EMA, others: dict[str, EMA], trainer: Trainer) -> None:
        self.shipped, self.others, self.trainer = shipped, others, trainer

    @property
    def model(self) -> nn.Module:
        """The shipped average's network."""
        return self.shipped.model

    @property
    def updates(self) -> int:
        """The shipped average's update count."""
        return self.shipped.updates

    def advance(self, batch: int, shown: int) -> None:
        """Every average's host half of an update."""
        self.shipped.advance(batch, shown)
        phase = phase_at(self.trainer.phases, shown)
        for name, average in self.others.items():
            since = shown - phase.start if "of the phase" in name else shown
            average.advance(batch, since)

    def follow(self, model: nn.Module) -> None:
        """Every average's device half of an update."""
        self.shipped.follow(model)
        for average in self.others.values():
            average.follow(model)


def study(recipe: str, seed: int, work: Path, num: int, names: list[str],
          kimg: float) -> list[dict]:
    """Trains the recipe at a seed for ``kimg`` thousand images with the named averages
    side by side; a row per average and one for the raw generator."""
    arguments = [*resolve(RECIPES[recipe], work), "--total-kimg", f"{kimg:g}", "--seed",
                 str(seed), "--out", str(work / f"{recipe}-seed{seed}"), "--overwrite"]
    trainer = Trainer(config_from_args(build_parser().parse_args(arguments)),
                      overwrite=True)
    averages = {name: EMA(trainer.G, **AVERAGES[name]) for name in names}
    trainer.ema = SideBySide(trainer.ema, averages, trainer)
    trainer.run()
    inception = InceptionFeatures(None, "cpu")
    generators = {**{name: a.model for name, a in averages.items()}, "raw G": trainer.G}
    rows = []
    for name, G in generators.items():
        scores = evaluate(G.eval(), trainer.cache.path, ["fid", "kid"], num=num,
                          inception=inception, progress=False)
        rows.append({"recipe": recipe, "seed": seed, "average": name, "num": num,
                     "kimg": trainer.shown / 1000, "fid": scores["fid"],
                     "kid": scores["kid"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Runs the study (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="progan-none", choices=sorted(RECIPES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--num", type=int, default=1000, help="generated images per measurement")
    p.add_argument("--kimg", type=float, default=None,
                   help="images shown, in thousands (the recipe's length if not given)")
    p.add_argument("--averages", default=";".join(AVERAGES),
                   help="the averages to carry, their names separated by ';'")
    p.add_argument("--work", type=Path, default=Path("runs/ema-study"))
    p.add_argument("--results", type=Path,
                   default=ROOT / "bench" / "results" / "ema_study.jsonl")
    args = p.parse_args(argv)
    names = args.averages.split(";")
    unknown = [name for name in names if name not in AVERAGES]
    if unknown:
        p.error(f"--averages: no average named {', '.join(map(repr, unknown))}; the names "
                f"are {'; '.join(AVERAGES)}")
    kimg = args.kimg if args.kimg is not None else recipe_kimg(args.recipe, args.work)
    rows = ([json.loads(line) for line in args.results.open()]
            if args.results.exists() else [])
    same_run = [r for r in rows if r["recipe"] == args.recipe and r["kimg"] == kimg]
    for seed in (int(s) for s in args.seeds.split(",")):
        done = [r for r in same_run if r["seed"] == seed]
        missing = [name for name in names if name not in {r["average"] for r in done}]
        if not missing:
            continue
        new = study(args.recipe, seed, args.work, args.num, missing, kimg)
        raw_before = [r["fid"] for r in done if r["average"] == "raw G" and r["num"] == args.num]
        if raw_before and raw_before[0] != new[-1]["fid"]:
            sys.exit(f"ema_study: seed {seed} did not reproduce its raw generator (FID "
                     f"{new[-1]['fid']} now, {raw_before[0]} before): its averages measured "
                     "then and now are not comparable")
        new = new if not raw_before else new[:-1]
        with args.results.open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in new)
        same_run += new
    print(f"{args.recipe} at {kimg:g} kimg:")
    for name in [*AVERAGES, "raw G"]:
        fids = [r["fid"] for r in same_run if r["average"] == name]
        if not fids:
            continue
        spread = statistics.stdev(fids) if len(fids) > 1 else 0.0
        print(f"{name:48s} FID {statistics.mean(fids):7.1f} ± {spread:5.1f} "
              f"({len(fids)} seeds)", file=sys.stdout)


def recipe_kimg(recipe: str, work: Path) -> float:
    """The images a benchmark recipe shows, in thousands (its --total-kimg, or the demo's
    where it trains the demo)."""
    arguments = build_parser().parse_args(resolve(RECIPES[recipe], work))
    return config_from_args(arguments).total_kimg


if __name__ == "__main__":
    main()
