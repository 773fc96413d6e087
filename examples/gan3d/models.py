"""3D-GAN's networks (Wu et al. 2016, "Learning a Probabilistic Latent Space of Object
Shapes via 3D Generative-Adversarial Modeling"), in plain PyTorch.

As the paper builds them: the generator maps a 200-dimensional z through 4x4x4
transposed convolutions of stride 2 with batch norm and ReLU to a sigmoid occupancy
grid; the discriminator mirrors it with 4x4x4 stride-2 convolutions, batch norm and
leaky ReLU 0.2, ending in one logit. Scaled down here: 32^3 grids (the paper's 64^3),
widths 64, 32, 16 (the paper's 512 ... 64), z of 64 dimensions.
"""

from __future__ import annotations

from torch import Tensor, nn


class Generator(nn.Module):
    """z (N, latent) -> occupancy (N, 1, 32, 32, 32) in [0, 1]."""

    def __init__(self, latent: int = 64, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose3d(latent, 4 * width, 4, 1, 0, bias=False),  # 4^3
            nn.BatchNorm3d(4 * width), nn.ReLU(True),
            nn.ConvTranspose3d(4 * width, 2 * width, 4, 2, 1, bias=False),  # 8^3
            nn.BatchNorm3d(2 * width), nn.ReLU(True),
            nn.ConvTranspose3d(2 * width, width, 4, 2, 1, bias=False),  # 16^3
            nn.BatchNorm3d(width), nn.ReLU(True),
            nn.ConvTranspose3d(width, 1, 4, 2, 1), nn.Sigmoid())  # 32^3

    def forward(self, z: Tensor) -> Tensor:
        """Occupancy grids for latents z."""
        return self.net(z[:, :, None, None, None])


class Discriminator(nn.Module):
    """occupancy (N, 1, 32, 32, 32) -> a logit per grid (N, 1)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 16^3
            nn.Conv3d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm3d(2 * width),
            nn.LeakyReLU(0.2, True),  # 8^3
            nn.Conv3d(2 * width, 4 * width, 4, 2, 1, bias=False), nn.BatchNorm3d(4 * width),
            nn.LeakyReLU(0.2, True),  # 4^3
            nn.Conv3d(4 * width, 1, 4, 1, 0), nn.Flatten())

    def forward(self, voxels: Tensor) -> Tensor:
        """Logits for occupancy grids."""
        return self.net(voxels)
