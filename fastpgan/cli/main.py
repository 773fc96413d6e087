"""``fastpgan``: one command with subcommands.

- ``fastpgan doctor``: what builds on this machine and what falls back, and why.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The ``fastpgan`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="fastpgan", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("doctor", help="report which fused paths build and load here, and why "
                                       "any falls back to PyTorch")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the subcommand named in argv (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from fastpgan.doctor import main as doctor

        return doctor()
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
