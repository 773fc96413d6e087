"""Age-cGAN's networks (Antipov, Baccouche and Dugelay 2017, "Face Aging with Conditional
Generative Adversarial Networks"), in plain PyTorch with
:class:`fastpgan.nn.LabelModulation`.

As the paper builds them: a conditional DCGAN (z and the condition y to an image; D sees
the image with y replicated over its pixels at its first layer) and an encoder E that
maps an image back to a latent. One change: y reaches G through feature-wise modulation
after each batch norm (conditional batch norm) rather than concatenated to z. Scaled down
here: 16x16 grayscale digits, 10 classes standing in for the paper's six age groups,
width 16, z of 32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.nn import LabelModulation


class Generator(nn.Module):
    """(z, labels) -> a 16x16 image in [-1, 1]."""

    def __init__(self, latent: int = 32, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.project = nn.Linear(latent, 4 * width * 16)
        self.norm0, self.mod0 = nn.BatchNorm2d(4 * width, affine=False), LabelModulation(
            classes, 4 * width)
        self.up1 = nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False)  # 8x8
        self.norm1, self.mod1 = nn.BatchNorm2d(2 * width, affine=False), LabelModulation(
            classes, 2 * width)
        self.up2 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False)  # 16x16
        self.norm2, self.mod2 = nn.BatchNorm2d(width, affine=False), LabelModulation(
            classes, width)
        self.out = nn.Sequential(nn.Conv2d(width, 1, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        """Images for latents and labels."""
        h = self.project(z).view(-1, 4 * self.width, 4, 4)
        h = torch.relu(self.mod0(self.norm0(h), labels))
        h = torch.relu(self.mod1(self.norm1(self.up1(h)), labels))
        h = torch.relu(self.mod2(self.norm2(self.up2(h)), labels))
        return self.out(h)


class Discriminator(nn.Module):
    """(a 16x16 image, labels) -> a logit: the one-hot label replicated over the pixels and
    joined to the image at the first layer."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.classes = classes
        self.net = nn.Sequential(
            nn.Conv2d(1 + classes, width, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 8x8
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),  # 4x4
            nn.Conv2d(2 * width, 1, 4), nn.Flatten())

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        """Logits (N, 1)."""
        one_hot = nn.functional.one_hot(labels, self.classes).to(images.dtype)
        maps = one_hot[:, :, None, None].expand(-1, -1, *images.shape[2:])
        return self.net(torch.cat([images, maps], 1))


class Encoder(nn.Module):
    """A 16x16 image -> a latent z (N, latent): the paper's encoder E."""

    def __init__(self, latent: int = 32, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True), nn.Flatten(), nn.Linear(2 * width * 16, latent))

    def forward(self, images: Tensor) -> Tensor:
        """Latents for images."""
        return self.net(images)
