"""The layers of progressive growing (Karras et al. 2017, section 3 and figure 2): the 1x1
toRGB / fromRGB projections kept per resolution, and the fade-in between resolutions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.nn.equalized import SQRT2, EqualizedConv2d

__all__ = ["FadeIn", "FromRGB", "ToRGB"]


class ToRGB(EqualizedConv2d):
    """Features to an image: a linear 1x1 equalized convolution, gain 1 (ProGAN's toRGB).

    y = conv1x1(x, W / sqrt(in_channels)) + b.

    Args:
        in_channels: feature channels.
        img_channels: image channels (3 for RGB).
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, in_channels: int, img_channels: int = 3, *,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 backend: str | None = None) -> None:
        super().__init__(in_channels, img_channels, 1, he_gain=1.0, device=device, dtype=dtype,
                         backend=backend)


class FromRGB(EqualizedConv2d):
    """An image to features: a 1x1 equalized convolution + bias + leaky ReLU (ProGAN's fromRGB).

    y = lrelu(conv1x1(x, W * sqrt(2 / img_channels)) + b, negative_slope).

    Args:
        img_channels: image channels (3 for RGB).
        out_channels: feature channels.
        negative_slope: leaky ReLU's slope (0.2 in ProGAN).
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, img_channels: int, out_channels: int, *, negative_slope: float = 0.2,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 backend: str | None = None) -> None:
        super().__init__(img_channels, out_channels, 1, he_gain=SQRT2, activation="lrelu",
                         negative_slope=negative_slope, device=device, dtype=dtype,
                         backend=backend)


Alpha = float | Tensor
"""A fade-in's weight: a number, or a 0-d floating tensor (on the networks' device), which
a training step passes so that a changing alpha is data rather than a new graph, and
whose value is never read on the host (that would wait for the device)."""


def check_alpha(name: str, alpha: Alpha) -> Alpha:
    """A number as a float, after checking it is in [0, 1]; a 0-d floating tensor as it
    is (its value unchecked: reading it would wait for the device). ValueError naming
    ``name`` otherwise."""
    if isinstance(alpha, Tensor):
        if alpha.dim() != 0 or not alpha.is_floating_point():
            raise ValueError(f"{name}: a tensor alpha must be 0-d and floating-point, got "
                             f"shape {tuple(alpha.shape)} and {alpha.dtype}")
        return alpha
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name}: alpha must be in [0, 1], got {alpha}")
    return alpha


def alpha_is(alpha: Alpha, value: float) -> bool:
    """Whether alpha is the number ``value``; a tensor alpha is a fade in progress, so
    both paths run (an exact 0 or 1 in it still gives exactly the old or new output)."""
    return not isinstance(alpha, Tensor) and alpha == value


class FadeIn(nn.Module):
    """(1 - alpha) * old + alpha * new: blends a new resolution's output into the old one.

    Karras et al. 2017, section 3 and figure 2(b): while a resolution fades in, the old
    path's output (upsampled in the generator, computed from the average-pooled image in
    the discriminator) is mixed with the new block's, alpha rising from 0 to 1. At
    alpha = 0 the result is ``old`` exactly and at alpha = 1 ``new`` exactly.
    """

    def forward(self, old: Tensor, new: Tensor, alpha: Alpha) -> Tensor:
        """The blend, for alpha in [0, 1] (a number or a 0-d tensor)."""
        alpha = check_alpha("FadeIn", alpha)
        if alpha_is(alpha, 0.0):
            return old
        if alpha_is(alpha, 1.0):
            return new
        if isinstance(alpha, Tensor):  # under autocast old and new may be half precision
            alpha = alpha.to(old.dtype)
        return torch.lerp(old, new, alpha)
