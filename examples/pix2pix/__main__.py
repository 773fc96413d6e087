"""pix2pix: paired image-to-image translation, Canny edge maps -> the bundled LFW faces.

    python -m examples.pix2pix [--steps 5000] [--fused] [--device cuda] [--out DIR]

The objective of Isola et al. 2017: the conditional GAN loss (D sees the input beside
the real or generated output, a logit a patch, binary cross-entropy) plus 100 times the
L1 distance to the target; Adam, learning rate 2e-4, betas (0.5, 0.999). Data: the 100
bundled 25x25 LFW face crops of scikit-image and their mirrors at 32x32, each paired with
its Canny edge map (``examples/faces.py``). Scaled down from the paper: 32x32 grayscale,
a four-level U-Net of width 16, batch 16, 5000 steps (under two minutes on two CPU
cores). Samples: edge maps, generated faces and the real faces, in rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from examples import harness
from examples.faces import edge_maps, load_faces
from examples.harness import Settings, fooling_loss, prepare, real_fake_loss, update
from examples.pix2pix.models import patchgan, unet

L1_WEIGHT = 100.0
ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
SHOWN = 8


class Pix2Pix:
    """The pix2pix system as :mod:`examples.harness` drives it."""

    columns = SHOWN

    def __init__(self, settings: Settings) -> None:
        torch.manual_seed(settings.seed)
        self.networks = prepare({"G": unet(1, 1, dropout=0.5), "D": patchgan(2)}, settings)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), **ADAM)
                           for name, net in self.networks.items()}
        self.targets = load_faces(32)
        self.inputs = edge_maps(self.targets)
        self.device = settings.device

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """(edge maps, faces) pairs drawn at random, forever."""
        while True:
            index = torch.randint(len(self.targets), (size,), generator=generator)
            yield self.inputs[index], self.targets[index]

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """D on real and generated pairs, then G on the GAN and L1 terms."""
        edges, real = batch
        G, D = self.networks["G"], self.networks["D"]
        fake = G(edges)
        real_logits = D(torch.cat([edges, real], 1))
        fake_logits = D(torch.cat([edges, fake.detach()], 1))
        d_loss = 0.5 * real_fake_loss(real_logits, fake_logits)  # the paper halves D's
        update(self.optimizers["D"], d_loss)
        logits = D(torch.cat([edges, fake], 1))
        gan = fooling_loss(logits)
        l1 = F.l1_loss(fake, real)
        update(self.optimizers["G"], gan + L1_WEIGHT * l1)
        return {"D": d_loss.item(), "G_gan": gan.item(), "G_L1": l1.item()}


    def samples(self) -> Tensor:
        """Rows of edge maps, generated faces and real faces."""
        edges = self.inputs[:SHOWN].to(self.device)
        fake = self.networks["G"](edges)
        return torch.cat([edges, fake, self.targets[:SHOWN].to(self.device)])


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Trains pix2pix from the command line; returns the losses."""
    return harness.main(Pix2Pix, __doc__, argv, steps=5000, batch=16)


if __name__ == "__main__":
    main()
