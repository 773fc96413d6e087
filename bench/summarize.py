"""Turns a pytest-benchmark JSON into the short results file and table kept in bench/results.

    python bench/summarize.py RAW.json --out bench/results/DATE-DEVICE.json
    python bench/summarize.py --jsonl FIGURES.jsonl   # the lines bench/conftest.py streams

The table lists, per op, shape and layout: the fused time, GB/s and % of the measured
copy bandwidth, then eager and torch.compile times and the fused speed-up over each (all
device times, from CUDA graph replays), and the fused step's wall time when launched
from Python.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path


def summarize(raw: dict) -> dict:
    """Measured rows grouped by case, with the machine description."""
    machine = raw["machine_info"]
    cases: dict[tuple, dict] = defaultdict(dict)
    for bench in raw["benchmarks"]:
        info = bench["extra_info"]
        if "us_per_call" not in info:
            continue
        key = (info["op"], "x".join(map(str, info["shape"])), info["layout"], info["dtype"])
        cases[key][info["impl"]] = {k: info[k] for k in ("us_per_call", "gb_per_s",
                                                          "pct_of_copy_bw",
                                                          "host_us_per_call",
                                                          "peak_mib") if k in info}
    rows = [{"op": op, "shape": shape, "layout": layout, "dtype": dtype, **impls}
            for (op, shape, layout, dtype), impls in sorted(cases.items())]
    return {
        "date": raw.get("datetime") or datetime.now(timezone.utc).isoformat(),
        "device": machine.get("gpu", {}).get("name", "cpu"),
        "gpu": machine.get("gpu", {}),
        "copy_gb_per_s": machine.get("copy_gb_per_s"),
        "torch": machine.get("torch"),
        "triton": machine.get("triton"),
        "commit": raw.get("commit_info", {}).get("id"),
        "rows": rows,
    }


def table(summary: dict) -> str:
    """A fixed-width text table of the summary."""
    lines = [f"{summary['device']}  torch {summary['torch']}  triton {summary['triton']}  "
             f"copy {summary['copy_gb_per_s'] or 0:.0f} GB/s",
             f"{'op':<22} {'shape':<15} {'layout':<13} {'fused us':>9} {'GB/s':>6} "
             f"{'%copy':>6} {'eager us':>9} {'compile us':>10} {'x eager':>8} {'x comp':>7} "
             f"{'fused host us':>13} {'fused MiB':>9} {'eager MiB':>9}"]
    for row in summary["rows"]:
        fused, eager, comp = (row.get(k, {}) for k in ("fused", "eager", "compiled"))
        f_us = fused.get("us_per_call", float("nan"))
        e_us = eager.get("us_per_call", float("nan"))
        c_us = comp.get("us_per_call", float("nan"))
        lines.append(f"{row['op']:<22} {row['shape']:<15} {row['layout']:<13} {f_us:9.1f} "
                     f"{fused.get('gb_per_s', 0):6.0f} {fused.get('pct_of_copy_bw', 0):6.1f} "
                     f"{e_us:9.1f} {c_us:10.1f} {e_us / f_us:8.2f} {c_us / f_us:7.2f} "
                     f"{fused.get('host_us_per_call', float('nan')):13.1f} "
                     f"{fused.get('peak_mib', float('nan')):9.0f} "
                     f"{eager.get('peak_mib', float('nan')):9.0f}")
    return "\n".join(lines)


def from_lines(lines: list[str]) -> dict:
    """The streamed figures (one JSON object a case) as a raw report of this machine."""
    import platform

    import torch
    import triton
    from benchutil import copy_bandwidth, gpu_info

    machine = dict(torch=torch.__version__, triton=triton.__version__,
                   python=platform.python_version(), gpu=gpu_info(),
                   copy_gb_per_s=copy_bandwidth())
    return {"machine_info": machine,
            "benchmarks": [{"extra_info": json.loads(line)} for line in lines if line.strip()]}


def main() -> None:
    """Reads the raw JSON (or the streamed lines), writes the summary JSON if asked,
    prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="?", help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--jsonl", help="the figures bench/conftest.py streamed instead")
    parser.add_argument("--out", help="where to write the summary JSON")
    args = parser.parse_args()
    if (args.raw is None) == (args.jsonl is None):
        parser.error("give the raw JSON or --jsonl, one of them")
    if args.jsonl:  # absent when no case finished
        lines = Path(args.jsonl).read_text().splitlines() if Path(args.jsonl).exists() else []
        summary = summarize(from_lines(lines))
    else:
        with open(args.raw) as f:
            summary = summarize(json.load(f))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    print(table(summary))


if __name__ == "__main__":
    main()
