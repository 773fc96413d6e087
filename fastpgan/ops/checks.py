"""Argument checks shared by the convolution ops."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from fastpgan.ops.epilogue import Epilogue


def check_nonnegative(op: str, name: str, value: float) -> None:
    """Raises ValueError naming ``op`` and ``name`` unless value is >= 0 and finite (NaN
    fails too: every comparison with it is false)."""
    if not 0 <= value < math.inf:
        raise ValueError(f"{op}: {name} must be >= 0 and finite, got {value}")


def check_conv(op: str, x: Tensor, weight: Tensor) -> None:
    """Raises ValueError unless x is (N, I, H, W) and weight (O, I, k, k) with odd k."""
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"{op}: x must be (N, I, H, W) and weight (O, I, k, k), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: weight takes {weight.shape[1]} input channels, x has "
                         f"{x.shape[1]}")
    if weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f"{op}: the kernel must be square and odd, got "
                         f"{tuple(weight.shape[2:])}")


def check_resample_conv(op: str, x: Tensor, weight: Tensor, bias: Tensor | None,
                        weight_gain: float, epilogue: Epilogue) -> None:
    """:func:`check_conv`, then a bias of one value per output channel, a finite positive
    weight_gain and the epilogue's own checks; ValueError naming ``op`` otherwise."""
    check_conv(op, x, weight)
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    if not 0 < weight_gain < math.inf:
        raise ValueError(f"{op}: weight_gain must be > 0 and finite, got {weight_gain}")
    epilogue.checked(op)
