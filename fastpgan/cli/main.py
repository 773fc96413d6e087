"""``fastpgan``: one command with subcommands.

- ``fastpgan doctor``: what builds on this machine and what falls back, and why.
- ``fastpgan generate CKPT --seeds 0-63``: seeded samples and a grid.
- ``fastpgan interpolate CKPT --seeds 3,7,11``: a looping latent walk (GIF and strip).

CKPT is a run folder, a saved generator folder or a training checkpoint file.
"""

from __future__ import annotations

import argparse
import sys


def _grid(text: str) -> int:
    """"8x8" -> 8 columns."""
    try:
        columns, _ = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLUMNSxROWS such as 8x8, got {text!r}") \
            from None
    return columns


def build_parser() -> argparse.ArgumentParser:
    """The ``fastpgan`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="fastpgan", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("doctor", help="report which fused paths build and load here, and why "
                                       "any falls back to PyTorch")
    gen = commands.add_parser("generate", help="images from seeded latents, and a grid")
    walk = commands.add_parser("interpolate", help="a looping walk between seeds' latents")
    for sub, seeds in ((gen, "0-63"), (walk, "0,1,2")):
        sub.add_argument("ckpt", help="run folder, saved generator folder or checkpoint file")
        sub.add_argument("--seeds", default=seeds, help=f"e.g. 0-63 or 3,7,11 (default {seeds})")
        sub.add_argument("--truncation", type=float, default=1.0,
                         help="StyleGAN's truncation psi (1: none)")
        sub.add_argument("--noise-mode", default="const", choices=["const", "random", "none"],
                         help="StyleGAN's noise: the saved maps (reproducible), fresh, or none")
        sub.add_argument("--device", default=None, help="cuda or cpu (default: cuda if any)")
    gen.add_argument("--grid", type=_grid, help="COLUMNSxROWS of grid.png (default: square)")
    gen.add_argument("--out", default="samples", help="output folder")
    walk.add_argument("--steps", type=int, default=60, help="frames from one seed to the next")
    walk.add_argument("--mode", default="slerp", choices=["slerp", "lerp"])
    walk.add_argument("--space", default="z", choices=["z", "w"], help="w: StyleGAN only")
    walk.add_argument("--out", default="walk.gif", help="the GIF; the strip PNG goes beside it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the subcommand named in argv (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from fastpgan.doctor import main as doctor

        return doctor()
    import torch

    from fastpgan.generate import load_generator, parse_seeds
    from fastpgan.generate.commands import generate, interpolate
    from fastpgan.models import StyleGANGenerator

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        seeds = parse_seeds(args.seeds)
        G = load_generator(args.ckpt)
        if isinstance(G, StyleGANGenerator):
            G.noise_mode = args.noise_mode
        if args.command == "generate":
            files = generate(G, seeds, args.out, columns=args.grid,
                             truncation=args.truncation, device=device)
            print(f"fastpgan generate: {len(seeds)} images and {files[-1]}")
        else:
            gif, strip = interpolate(G, seeds, args.out, steps=args.steps, mode=args.mode,
                                     space=args.space, truncation=args.truncation,
                                     device=device)
            print(f"fastpgan interpolate: {gif} and {strip}")
    except ValueError as exc:
        print(f"fastpgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
