"""Training steps per second of every example GAN system (examples/), plain and fused, on
this machine's device: the README's table of the examples, its GPU column on a GPU.

    python bench/examples_speed.py [--steps 200] [--device cuda]

Each system trains ``--steps`` steps in this one process (start-up, data and the first
calls' compiles excluded: the harness times its loop), into a temporary folder; one
line a run, then the table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYSTEMS = ("pix2pix", "cyclegan", "srgan", "gan3d", "stackgan", "agecgan")


def steps_per_second(system: str, steps: int, device: str, fused: bool) -> float:
    """The harness's steps/s of one short run."""
    main = importlib.import_module(f"examples.{system}.__main__").main
    with tempfile.TemporaryDirectory() as folder:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            main(["--steps", str(steps), "--device", device, "--out", folder,
                  *(["--fused"] if fused else [])])
    return float(re.search(r"([\d.]+) steps/s", printed.getvalue()).group(1))


def main() -> None:
    """Every system plain and fused; a line each as it ends, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rows = []
    for system in SYSTEMS:
        speeds = [steps_per_second(system, args.steps, args.device, fused)
                  for fused in (False, True)]
        rows.append((system, *speeds))
        print(f"example {system}: {speeds[0]:.1f} steps/s plain, {speeds[1]:.1f} fused "
              f"({args.steps} steps, {args.device})", flush=True)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"examples on {name}, torch {torch.__version__}, {args.steps} steps each")
    for system, plain, fused in rows:
        print(f"{system:<10}{plain:>10.1f}{fused:>10.1f}{fused / plain:>8.2f}x")


if __name__ == "__main__":
    main()
