"""The commands' option types, each a domain: what the option takes, a one-line error naming
the option for anything else (argparse adds the option's name), and examples outside it,
which ``tests/test_options.py`` feeds every option of every command.

Every option that takes a value is declared with one of these (or with ``choices``), so a
new option is swept as soon as it is added. :class:`Parser` reports a bad value in one line.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastpgan.generate.latents import SEED_MAX, parse_seeds
from fastpgan.metrics.evaluate import parse_metrics


@dataclass(frozen=True)
class OptionType:
    """An option's domain: ``parse(text)`` gives the value or raises ValueError saying what
    was expected; ``invalid`` lists values outside the domain."""

    name: str
    parse: Callable[[str], Any]
    invalid: tuple[str, ...]

    @property
    def __name__(self) -> str:  # argparse names a type in its messages
        return self.name

    def __call__(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: the option, what is wrong, and where the
    options are listed (its subcommands' parsers are Parsers too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_or_status(self, argv: list[str] | None) -> argparse.Namespace | int:
        """The parsed arguments, or the exit status argparse ended with (2 after a bad
        argument, which it has reported; 0 after --help), for a main() to return."""
        try:
            return self.parse_args(argv)
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 2


_NUMBERS = ("nan", "inf", "-inf", "1e999", "x", "")


def integer(low: int = 0, high: int = 2 ** 63 - 1) -> OptionType:
    """Whole numbers from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {text}")
        return value

    return OptionType(f"integer {low}..{high}", parse,
                      ("1.5", *_NUMBERS, str(low - 1), str(high + 1), str(2 ** 70)))


def real(low: float | None = None, *, above: bool = False) -> OptionType:
    """Finite numbers, at least ``low`` (or above it)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise ValueError(f"expected a number {'above' if above else 'of at least'} "
                             f"{low:g}, got {text}")
        return value

    below = () if low is None else (str(low - 1), *((str(low),) if above else ()))
    return OptionType("finite number", parse, (*_NUMBERS, *below))


def fraction(name: str, *, below_one: bool = False) -> OptionType:
    """Numbers in [0, 1] (or [0, 1) with ``below_one``): probabilities, Adam's betas."""
    def parse(text: str) -> float:
        value = finite_float.parse(text)
        if not 0.0 <= value <= 1.0 or (below_one and value == 1.0):
            raise ValueError(f"expected a number in [0, {'1)' if below_one else '1]'}, "
                             f"got {text}")
        return value

    return OptionType(name, parse, (*_NUMBERS, "-0.1", "1.5", *(("1",) if below_one else ())))


finite_float = real()
"""Any finite number (NaN and infinities mean nothing for fastpgan's options)."""
PROBABILITY = fraction("probability")
BETA = fraction("beta", below_one=True)


def _power_of_two(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a power of two such as 256, got {text!r}") from None
    if value < 4 or value > 2 ** 14 or value & (value - 1):
        raise ValueError(f"expected a power of two from 4 to 16384, got {text}")
    return value


RESOLUTION = OptionType("resolution", _power_of_two,
                        ("12", "0", "-8", "2", "32768", str(2 ** 70), "x", ""))
"""An image resolution: a power of two from 4 to 16384."""


def _device(text: str) -> str:
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,3})?", text):
        raise ValueError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return text


DEVICE = OptionType("device", _device, ("tpu", "cuda:x", "cuda:-1", "gpu", ""))


def _path(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a path, got an empty one")
    return text


PATH = OptionType("path", _path, ("", " "))


SEEDS = OptionType("seed list", parse_seeds,
                   ("3-1", "a", "", "1,,2", "-5", str(SEED_MAX + 1), "0-" + str(2 ** 70),
                    "0-4000000000"))
"""Seeds as "0-63" or "3,7,11" (each at most SEED_MAX, a million at most)."""


def _grid(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or int(match[1]) < 1 or int(match[2]) < 1 or int(match[1]) > 4096:
        raise ValueError(f"expected COLUMNSxROWS such as 8x8, got {text!r}")
    return int(match[1])


GRID = OptionType("grid", _grid, ("x", "8", "0x8", "8x0", "-1x2", ""))
"""A grid's COLUMNSxROWS; its value is the columns."""


METRICS = OptionType("metrics", parse_metrics, ("fld", "", ",", "swd,gan"))


def _layers(text: str) -> str:
    if text not in ("coarse", "middle", "fine"):
        match = re.fullmatch(r"(\d+)-(\d+)", text)
        if match is None or int(match[1]) > int(match[2]):
            raise ValueError(f"expected coarse, middle, fine or a range A-B with A <= B, got "
                             f"{text!r}")
    return text


LAYERS = OptionType("style layers", _layers, ("x", "5-2", "-1-3", ""))


def _clamp(text: str) -> float | str:
    return text if text == "none" else real(0.0, above=True).parse(text)


CLAMP = OptionType("clamp", _clamp, ("nan", "0", "-1", "inf", "x", ""))
"""A positive clamp, or "none"."""


def choice_or(names: tuple[str, ...], number: OptionType) -> OptionType:
    """One of ``names``, or a value of ``number``."""
    def parse(text: str) -> str | Any:
        if text in names:
            return text
        try:
            return number.parse(text)
        except ValueError:
            raise ValueError(f"expected one of {', '.join(names)} or {number.name}, got "
                             f"{text!r}") from None

    return OptionType(f"{'|'.join(names)} or {number.name}", parse,
                      tuple(v for v in number.invalid if v not in names))
