"""Argument types the commands share."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """A float option's value: a finite number (NaN and infinities mean nothing for any of
    fastpgan's options); argparse reports anything else as the option's error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value
