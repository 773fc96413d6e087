"""StackGAN's two stages (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image
Synthesis with Stacked Generative Adversarial Networks"), in plain PyTorch with
:class:`fastpgan.nn.ConditioningAugmentation`.

As the paper builds them: stage I draws a condition from the embedding (conditioning
augmentation), joins it to z, and upsamples (nearest 2x, 3x3 convolution, batch norm,
ReLU) to a low-resolution image; stage II encodes that image, joins the spatially
replicated condition of its own conditioning augmentation, refines through residual
blocks and upsamples to twice the resolution. Each discriminator downsamples the image
(4x4 stride-2 convolutions, batch norm, leaky ReLU 0.2), joins the spatially replicated
compressed embedding, and scores the pair with a 1x1 and a 4x4 convolution. Scaled down
here: 16x16 and 32x32 (the paper's 64x64 and 256x256), widths 16 to 64, condition 8,
z 32, two residual blocks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.nn import ConditioningAugmentation


def _up(inner: int, outer: int) -> list[nn.Module]:
    """Nearest 2x upsampling, 3x3 convolution, batch norm, ReLU."""
    return [nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(inner, outer, 3, padding=1, bias=False), nn.BatchNorm2d(outer),
            nn.ReLU(True)]


def _down(inner: int, outer: int, norm: bool = True) -> list[nn.Module]:
    """4x4 stride-2 convolution, batch norm (not on the image), leaky ReLU 0.2."""
    if not norm:
        return [nn.Conv2d(inner, outer, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    return [nn.Conv2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer),
            nn.LeakyReLU(0.2, True)]


class StageOneGenerator(nn.Module):
    """(z, embedding) -> (a 16x16 image, the condition's mean and log-variance)."""

    def __init__(self, embedding_dim: int = 16, condition_dim: int = 8, latent: int = 32,
                 width: int = 16) -> None:
        super().__init__()
        self.augment = ConditioningAugmentation(embedding_dim, condition_dim)
        self.width = width
        self.project = nn.Sequential(
            nn.Linear(condition_dim + latent, 4 * width * 16, bias=False),
            nn.BatchNorm1d(4 * width * 16), nn.ReLU(True))
        self.up = nn.Sequential(*_up(4 * width, 2 * width), *_up(2 * width, width),
                                nn.Conv2d(width, 1, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The image, and mu and logvar for the KL term."""
        condition, mu, logvar = self.augment(embedding)
        h = self.project(torch.cat([condition, z], 1)).view(-1, 4 * self.width, 4, 4)
        return self.up(h), mu, logvar


class ResidualBlock(nn.Module):
    """x + (conv, BN, ReLU, conv, BN)(x)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(True), nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        """The residual sum."""
        return x + self.body(x)


class StageTwoGenerator(nn.Module):
    """(a 16x16 image, embedding) -> (a 32x32 image, mu, logvar)."""

    def __init__(self, embedding_dim: int = 16, condition_dim: int = 8, width: int = 16,
                 blocks: int = 2) -> None:
        super().__init__()
        self.augment = ConditioningAugmentation(embedding_dim, condition_dim)
        self.encode = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(True),
                                    nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
                                    nn.BatchNorm2d(2 * width), nn.ReLU(True))  # 8x8
        self.join = nn.Sequential(
            nn.Conv2d(2 * width + condition_dim, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(True),
            *[ResidualBlock(2 * width) for _ in range(blocks)])
        self.up = nn.Sequential(*_up(2 * width, width), *_up(width, width),
                                nn.Conv2d(width, 1, 3, padding=1), nn.Tanh())  # 32x32

    def forward(self, low: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The refined image, and mu and logvar for the KL term."""
        condition, mu, logvar = self.augment(embedding)
        h = self.encode(low)
        replicated = condition[:, :, None, None].expand(-1, -1, *h.shape[2:])
        return self.up(self.join(torch.cat([h, replicated], 1))), mu, logvar


class Discriminator(nn.Module):
    """(an image, embedding) -> a logit a pair: downsampled to 4x4, joined with the
    compressed embedding."""

    def __init__(self, resolution: int = 16, embedding_dim: int = 16, compressed: int = 8,
                 width: int = 16) -> None:
        super().__init__()
        layers, channels, size = _down(1, width, norm=False), width, resolution // 2
        while size > 4:  # halve to 4x4, doubling the width
            layers += _down(channels, 2 * channels)
            channels, size = 2 * channels, size // 2
        self.features = nn.Sequential(*layers)
        self.compress = nn.Sequential(nn.Linear(embedding_dim, compressed),
                                      nn.LeakyReLU(0.2, True))
        self.score = nn.Sequential(
            nn.Conv2d(channels + compressed, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2, True), nn.Conv2d(channels, 1, 4), nn.Flatten())

    def forward(self, image: Tensor, embedding: Tensor) -> Tensor:
        """Logits (N, 1) for (image, embedding) pairs."""
        h = self.features(image)
        e = self.compress(embedding)[:, :, None, None].expand(-1, -1, *h.shape[2:])
        return self.score(torch.cat([h, e], 1))
