"""3D-GAN: occupancy grids of procedurally generated shapes (spheres, boxes, tori,
cylinders).

    python -m examples.gan3d [--steps 2000] [--fused] [--device cuda] [--out DIR]

The training of Wu et al. 2016: the GAN loss (binary cross-entropy on D's logits), Adam
with betas (0.5, 0.999), and D updated only while its accuracy on the batch is below
80 % (the paper's guard against a D that learns too fast); learning rates 2e-4 for both
(the paper's 0.0025 for G and 1e-5 for D, set for 64^3 grids and batches of 100,
collapsed every sample to one noisy blob at this scale). Data: 32^3 grids made on the
fly (``shapes.py``). Scaled down from the paper: 32^3 (the paper's 64^3), widths 16 to
64, z of 64, batch 8 (the paper's 100), 2000 steps (about two minutes on two CPU cores).
Samples: the generated and then the real grids seen from above (maximum along the depth
axis), and ``render.png``, four generated grids drawn as voxels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from examples import harness
from examples.gan3d.models import Discriminator, Generator
from examples.gan3d.shapes import random_shapes
from examples.harness import Settings, fooling_loss, prepare, real_fake_loss, update

LATENT = 64
G_ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
D_ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
D_ACCURACY_LIMIT = 0.8
SHOWN = 8


class Gan3D:
    """The 3D-GAN system as :mod:`examples.harness` drives it."""

    columns = SHOWN

    def __init__(self, settings: Settings) -> None:
        torch.manual_seed(settings.seed)
        self.networks = prepare({"G": Generator(LATENT), "D": Discriminator()}, settings)
        self.optimizers = {"G": torch.optim.Adam(self.networks["G"].parameters(), **G_ADAM),
                           "D": torch.optim.Adam(self.networks["D"].parameters(), **D_ADAM)}
        self.device = settings.device
        self.z = torch.randn(SHOWN, LATENT, generator=torch.Generator().manual_seed(1))
        self.real = random_shapes(SHOWN, torch.Generator().manual_seed(2))

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """(real grids, latents), forever."""
        while True:
            yield random_shapes(size, generator), torch.randn(size, LATENT, generator=generator)

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """D (while it is not too accurate), then G."""
        real, z = batch
        G, D = self.networks["G"], self.networks["D"]
        fake = G(z)
        real_logits, fake_logits = D(real), D(fake.detach())
        d_loss = real_fake_loss(real_logits, fake_logits)
        accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
        if accuracy.item() < D_ACCURACY_LIMIT:
            update(self.optimizers["D"], d_loss)
        logits = D(fake)
        g_loss = fooling_loss(logits)
        update(self.optimizers["G"], g_loss)
        return {"D": d_loss.item(), "G": g_loss.item(), "D_accuracy": accuracy.item()}


    def samples(self) -> Tensor:
        """Generated, then real grids seen from above, in [-1, 1]."""
        fake = self.networks["G"](self.z.to(self.device)).cpu()
        return torch.cat([fake, self.real]).amax(dim=2) * 2 - 1

    def render(self, path: Path) -> None:
        """Four generated grids (occupancy > 0.5) drawn as voxels."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fake = self.networks["G"](self.z[:4].to(self.device)).cpu()[:, 0] > 0.5
        fig = plt.figure(figsize=(12, 3.2))
        for i, grid in enumerate(fake):
            ax = fig.add_subplot(1, 4, i + 1, projection="3d")
            ax.voxels(grid.numpy(), facecolors="#6a8caf", edgecolor="#2b3b4e", linewidth=0.1)
            ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Trains 3D-GAN from the command line; returns the losses."""
    return harness.main(Gan3D, __doc__, argv, steps=2000, batch=8)


if __name__ == "__main__":
    main()
