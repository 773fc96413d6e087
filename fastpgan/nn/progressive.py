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
        super().__init__(in_channels, img_channels, 1, gain=1.0, device=device, dtype=dtype,
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
        super().__init__(img_channels, out_channels, 1, gain=SQRT2, activation="lrelu",
                         negative_slope=negative_slope, device=device, dtype=dtype,
                         backend=backend)


def check_alpha(name: str, alpha: float) -> float:
    """alpha as a float, after checking it is in [0, 1] (ValueError naming ``name``)."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name}: alpha must be in [0, 1], got {alpha}")
    return alpha


class FadeIn(nn.Module):
    """(1 - alpha) * old + alpha * new: blends a new resolution's output into the old one.

    Karras et al. 2017, section 3 and figure 2(b): while a resolution fades in, the old
    path's output (upsampled in the generator, computed from the average-pooled image in
    the discriminator) is mixed with the new block's, alpha rising from 0 to 1. At
    alpha = 0 the result is ``old`` exactly and at alpha = 1 ``new`` exactly.
    """

    def forward(self, old: Tensor, new: Tensor, alpha: float) -> Tensor:
        """The blend, for alpha in [0, 1]."""
        if check_alpha("FadeIn", alpha) == 0.0:
            return old
        if alpha == 1.0:
            return new
        return torch.lerp(old, new, alpha)
