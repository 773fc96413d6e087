"""A DCGAN-style generator and discriminator for 32x32 grayscale images in plain PyTorch
(Radford et al. 2016: transposed convolutions, BatchNorm + ReLU in G, LeakyReLU in D)."""

from __future__ import annotations

from torch import Tensor, nn

ADAM = dict(lr=2e-4, betas=(0.5, 0.999))  # DCGAN's


class Generator(nn.Module):
    """z (N, latent) -> image (N, 1, 32, 32) in [-1, 1]."""

    def __init__(self, latent: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent, 4 * width, 4), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        """Images for latents z."""
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """image (N, 1, 32, 32) -> score (N, 1), a logit."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 4), nn.Flatten())

    def forward(self, images: Tensor) -> Tensor:
        """Scores for images."""
        return self.net(images)
