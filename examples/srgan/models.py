"""SRGAN's networks (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network"), in plain PyTorch, for 4x super-resolution.

As the paper builds them: the generator is a 9x9 convolution and PReLU, B residual blocks
(3x3 convolution, batch norm, PReLU, 3x3 convolution, batch norm, the input added), a
3x3 convolution and batch norm added to the first features, two 2x upsamplings (3x3
convolution, pixel shuffle, PReLU) and a 9x9 convolution (tanh here, for images in
[-1, 1]); the discriminator is 3x3 convolutions with leaky ReLU 0.2, batch norm after
the first, strides 1 and 2 in turn, doubling the width, then a dense layer of 1024,
leaky ReLU and one logit. Scaled down here: 8x8 -> 32x32 grayscale, width 16 (the
paper's 64), 4 residual blocks (the paper's 16), a discriminator of widths 16 to 64 with
a dense layer of 128.
"""

from __future__ import annotations

import itertools

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """x + (conv, BN, PReLU, conv, BN)(x)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.PReLU(width),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        """The residual sum."""
        return x + self.body(x)


class Generator(nn.Module):
    """A low-resolution image (N, C, h, w) -> (N, C, 4h, 4w) in [-1, 1]."""

    def __init__(self, channels: int = 1, width: int = 16, blocks: int = 4) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU(width))
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)],
                                    nn.Conv2d(width, width, 3, padding=1),
                                    nn.BatchNorm2d(width))
        self.upsample = nn.Sequential(*[layer for _ in range(2) for layer in (
            nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(width))])
        self.tail = nn.Sequential(nn.Conv2d(width, channels, 9, padding=4), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        """The 4x image."""
        features = self.head(x)
        return self.tail(self.upsample(features + self.blocks(features)))


class Discriminator(nn.Module):
    """An image (N, C, size, size) -> a logit (N, 1): three stride-2 convolutions."""

    def __init__(self, channels: int = 1, width: int = 16, dense: int = 128,
                 size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
        for i, (inner, outer) in enumerate(itertools.pairwise(widths)):
            layers += [nn.Conv2d(inner, outer, 3, stride=1 + (i % 2 == 0), padding=1),
                       nn.BatchNorm2d(outer), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * (size // 8) ** 2, dense),
                                  nn.LeakyReLU(0.2, True), nn.Linear(dense, 1))

    def forward(self, images: Tensor) -> Tensor:
        """Logits for images."""
        return self.head(self.features(images))
