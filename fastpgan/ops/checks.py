"""Argument checks shared by the convolution ops."""

from __future__ import annotations

from torch import Tensor


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
