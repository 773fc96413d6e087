"""SRGAN: 4x super-resolution of the bundled LFW faces, 8x8 -> 32x32.

    python -m examples.srgan [--steps 3000] [--fused] [--device cuda] [--out DIR]

The objective of Ledig et al. 2017, with one substitution: the content loss is the
pixel-wise mean squared error (the paper's SRResNet-MSE content loss), not the VGG19
feature loss, whose weights are not available offline; the adversarial loss is weighted
1e-3 as in the paper; Adam, learning rate 1e-4, betas (0.9, 0.999). Data: the bundled
LFW face crops and their mirrors at 32x32, each down-sampled 4x (area average) as the
input. Scaled down from the paper: grayscale 8x8 -> 32x32 (the paper's 96x96 crops),
width 16, 4 residual blocks, batch 16, 3000 steps (under two minutes on two CPU
cores). Samples: inputs (upsampled by nearest
neighbour), SRGAN's outputs and the originals, in rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from examples import harness
from examples.faces import load_faces
from examples.harness import Settings, fooling_loss, prepare, real_fake_loss, update
from examples.srgan.models import Discriminator, Generator

ADVERSARIAL_WEIGHT = 1e-3
ADAM = dict(lr=1e-4, betas=(0.9, 0.999))
SHOWN = 8


class SRGAN:
    """The SRGAN system as :mod:`examples.harness` drives it."""

    columns = SHOWN

    def __init__(self, settings: Settings) -> None:
        torch.manual_seed(settings.seed)
        self.networks = prepare({"G": Generator(), "D": Discriminator()}, settings)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), **ADAM)
                           for name, net in self.networks.items()}
        self.high = load_faces(32)
        self.low = F.avg_pool2d(self.high, 4)
        self.device = settings.device

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """(8x8 inputs, 32x32 originals) drawn at random, forever."""
        while True:
            index = torch.randint(len(self.high), (size,), generator=generator)
            yield self.low[index], self.high[index]

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """D on originals and super-resolved images, then G on content + adversarial."""
        low, high = batch
        G, D = self.networks["G"], self.networks["D"]
        fake = G(low)
        real_logits, fake_logits = D(high), D(fake.detach())
        d_loss = real_fake_loss(real_logits, fake_logits)
        update(self.optimizers["D"], d_loss)
        logits = D(fake)
        adversarial = fooling_loss(logits)
        content = F.mse_loss(fake, high)
        update(self.optimizers["G"], content + ADVERSARIAL_WEIGHT * adversarial)
        return {"D": d_loss.item(), "G_content": content.item(),
                "G_adversarial": adversarial.item()}


    def samples(self) -> Tensor:
        """Rows: inputs (nearest-neighbour upsampled), outputs, originals."""
        low = self.low[:SHOWN].to(self.device)
        return torch.cat([F.interpolate(low, scale_factor=4), self.networks["G"](low),
                          self.high[:SHOWN].to(self.device)])


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Trains SRGAN from the command line; returns the losses."""
    return harness.main(SRGAN, __doc__, argv, steps=3000, batch=16)


if __name__ == "__main__":
    main()
