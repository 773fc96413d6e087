"""pix2pix's networks (Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks"), in plain PyTorch: a U-Net generator and a PatchGAN discriminator.

As the paper and its code build them: 4x4 stride-2 convolutions, leaky ReLU 0.2 going
down and ReLU coming up, skip connections by concatenation, dropout 0.5 in the innermost
decoder blocks, tanh at the output; no bias before a batch norm. Scaled down here: 32x32
images through four levels (the paper's unet_256 has eight) and a first width of 16
(the paper's 64).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UnetBlock(nn.Module):
    """One U-Net level: down, the inner block, up; the input concatenated to the output
    (not at the outermost level)."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None = None, *,
                 in_channels: int | None = None, out_channels: int | None = None,
                 norm: type[nn.Module] = nn.BatchNorm2d, dropout: float = 0.0) -> None:
        super().__init__()
        self.outermost = in_channels is not None
        bias = norm is nn.InstanceNorm2d  # no bias before a batch norm
        down = nn.Conv2d(in_channels or outer, inner, 4, 2, 1, bias=bias)
        if self.outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(2 * inner, out_channels, 4,
                                                                   2, 1), nn.Tanh()]
        elif sub is None:  # innermost
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), norm(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm(inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), norm(outer)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """The level's output, with x concatenated below the outermost level."""
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


def unet(in_channels: int = 3, out_channels: int = 3, width: int = 16, *,
         norm: type[nn.Module] = nn.BatchNorm2d, dropout: float = 0.0) -> nn.Module:
    """A four-level U-Net for 32x32 images: widths width, 2, 4 and 4 times width, the
    two inner decoder blocks with ``dropout`` (the paper's 0.5)."""
    block = UnetBlock(4 * width, 4 * width, norm=norm)
    block = UnetBlock(2 * width, 4 * width, block, norm=norm, dropout=dropout)
    block = UnetBlock(width, 2 * width, block, norm=norm, dropout=dropout)
    return UnetBlock(width, width, block, in_channels=in_channels, out_channels=out_channels,
                     norm=norm)


def patchgan(in_channels: int = 6, width: int = 16, *,
             norm: type[nn.Module] = nn.BatchNorm2d) -> nn.Module:
    """The 3-layer PatchGAN discriminator: a logit per 70x70 patch (per 22x22 patch at
    32x32: two stride-2 and two stride-1 4x4 convolutions)."""
    bias = norm is nn.InstanceNorm2d
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(width, 2 * width, 4, 2, 1, bias=bias), norm(2 * width), nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * width, 4 * width, 4, 1, 1, bias=bias), norm(4 * width),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(4 * width, 1, 4, 1, 1))
