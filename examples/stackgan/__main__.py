"""StackGAN: digits drawn from their label in two stages, 16x16 then 32x32.

    python -m examples.stackgan [--steps 3000] [--fused] [--device cuda] [--out DIR]

The training of Zhang et al. 2017: stage I for the first half of the steps, then stage
II on stage I's images with stage I fixed; each discriminator matching-aware (a real
image with its own embedding counts real; a generated one, and a real one with another
image's embedding, count fake); the generators' loss the non-saturating GAN loss plus
the conditioning augmentation's KL term, weighted 0.1 here (at 1, with this small
embedding, the condition drowned in the augmentation's noise and most samples came out
as one digit); Adam, learning rate 2e-4, betas
(0.5, 0.999). The condition is not text: text embeddings (the paper's char-CNN-RNN) are
not available offline, so a fixed random embedding of the digit's label stands in for
one. Data: scikit-learn's 1797 bundled 8x8 handwritten digits, upsampled. Scaled down
from the paper (see models.py), batch 32, 3000 steps (about a minute on two CPU
cores). Samples: the digits 0-9 in columns; stage I (upsampled) and stage II rows for
two latents.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples import harness
from examples.faces import load_digits
from examples.harness import Settings, fooling_loss, prepare, update
from examples.stackgan.models import Discriminator, StageOneGenerator, StageTwoGenerator
from fastpgan.nn import ConditioningAugmentation

LATENT, EMBEDDING = 32, 16
KL_WEIGHT = 0.1
ADAM = dict(lr=2e-4, betas=(0.5, 0.999))


class StackGAN:
    """The StackGAN system as :mod:`examples.harness` drives it."""

    columns = 10

    def __init__(self, settings: Settings) -> None:
        torch.manual_seed(settings.seed)
        self.networks = prepare({"G1": StageOneGenerator(EMBEDDING, latent=LATENT),
                                 "D1": Discriminator(16, EMBEDDING),
                                 "G2": StageTwoGenerator(EMBEDDING),
                                 "D2": Discriminator(32, EMBEDDING)}, settings)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), **ADAM)
                           for name, net in self.networks.items()}
        # the stand-in for a text embedding: fixed, one random vector a label
        self.embedding = nn.Embedding(10, EMBEDDING).requires_grad_(False).to(settings.device)
        self.images, self.labels = load_digits(32)
        self.stage_two_from = settings.steps // 2
        self.device = settings.device
        self.z = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(1))

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """(images, labels, other images' labels, z), forever."""
        while True:
            index = torch.randint(len(self.images), (size,), generator=generator)
            wrong = torch.randint(len(self.images), (size,), generator=generator)
            yield (self.images[index], self.labels[index], self.labels[wrong],
                   torch.randn(size, LATENT, generator=generator))

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """A step of stage I, or of stage II (stage I fixed) once half the steps are done."""
        images, labels, wrong_labels, z = batch
        right, wrong = self.embedding(labels), self.embedding(wrong_labels)
        stage_two = index >= self.stage_two_from
        self.networks["G1"].train(not stage_two)
        with torch.no_grad() if stage_two else torch.enable_grad():
            low, mu, logvar = self.networks["G1"](z, right)
        if stage_two:
            fake, mu, logvar = self.networks["G2"](low, right)
            real, d_name, g_name = images, "D2", "G2"
        else:
            fake, real, d_name, g_name = low, F.avg_pool2d(images, 2), "D1", "G1"
        D = self.networks[d_name]
        # matching-aware: a real image with its own embedding real; a generated one, and
        # a real one with another image's embedding, fake
        d_loss = (_bce(D(real, right), 1.0)
                  + 0.5 * (_bce(D(fake.detach(), right), 0.0) + _bce(D(real, wrong), 0.0)))
        update(self.optimizers[d_name], d_loss)
        gan = fooling_loss(D(fake, right))
        kl = ConditioningAugmentation.kl_divergence(mu, logvar)
        update(self.optimizers[g_name], gan + KL_WEIGHT * kl)
        stage = 2 if stage_two else 1
        return {f"D{stage}": d_loss.item(), f"G{stage}": gan.item(), f"KL{stage}": kl.item()}

    def samples(self) -> Tensor:
        """Rows: stage I (upsampled) and stage II for the digits 0-9, two latents."""
        labels = torch.arange(10, device=self.device)
        rows = []
        for z in self.z.to(self.device):
            low, _, _ = self.networks["G1"](z.expand(10, -1), self.embedding(labels))
            high, _, _ = self.networks["G2"](low, self.embedding(labels))
            rows += [F.interpolate(low, scale_factor=2), high]
        return torch.cat(rows)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Trains StackGAN from the command line; returns the losses."""
    return harness.main(StackGAN, __doc__, argv, steps=3000, batch=32)


if __name__ == "__main__":
    main()
