"""Age-cGAN: a conditional GAN whose condition is changed on a given image, on digits.

    python -m examples.agecgan [--steps 6000] [--fused] [--device cuda] [--out DIR]

The method of Antipov et al. 2017 in its three parts: a conditional GAN (the GAN loss,
non-saturating, on (image, condition) pairs) for the first two thirds of the steps; then,
G fixed, an encoder E trained on G's own samples to return their latent (the L2 distance
between z and E(G(z, y))); and for a given image x with condition y0, the
identity-preserving latent optimization: from z0 = E(x), z is optimized so that
G(z, y0) stays close to x (here the pixel L2 distance: the paper's face recognition
network is not available offline), and G(z, y) with another y changes the condition only.
The condition is the digit's class, standing in for the paper's age group (there are no
labelled ages offline). Data: scikit-learn's bundled digits at 16x16. Adam, learning rate
2e-4, betas (0.5, 0.999); batch 32, 6000 steps (under a minute on two CPU cores).
Samples, in rows for 8 real digits: the digits, G(E(x), y0), G(z*, y0) after 50 steps of
the latent optimization, and G(z*, y0 + 1): the next digit in the same hand.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from examples import harness
from examples.agecgan.models import Discriminator, Encoder, Generator
from examples.faces import load_digits
from examples.harness import Settings, fooling_loss, prepare, real_fake_loss, update

LATENT = 32
ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
OPTIMIZATION_STEPS, OPTIMIZATION_LR = 50, 0.05
SHOWN = 8


class AgeCGAN:
    """The Age-cGAN system as :mod:`examples.harness` drives it."""

    columns = SHOWN

    def __init__(self, settings: Settings) -> None:
        torch.manual_seed(settings.seed)
        self.networks = prepare({"G": Generator(LATENT), "D": Discriminator(),
                                 "E": Encoder(LATENT)}, settings)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), **ADAM)
                           for name, net in self.networks.items()}
        self.images, self.labels = load_digits(16)
        self.encoder_from = 2 * settings.steps // 3
        self.device = settings.device

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """(digits, their labels, z, random labels), forever."""
        while True:
            index = torch.randint(len(self.images), (size,), generator=generator)
            yield (self.images[index], self.labels[index],
                   torch.randn(size, LATENT, generator=generator),
                   torch.randint(10, (size,), generator=generator))

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """A conditional GAN step, or, G fixed, an encoder step in the last third."""
        images, labels, z, random_labels = batch
        G, D, E = self.networks["G"], self.networks["D"], self.networks["E"]
        encoder_phase = index >= self.encoder_from
        G.train(not encoder_phase)
        if encoder_phase:
            with torch.no_grad():
                generated = G(z, random_labels)
            encoder = F.mse_loss(E(generated), z)
            update(self.optimizers["E"], encoder)
            return {"E": encoder.item()}
        fake = G(z, labels)
        d_loss = real_fake_loss(D(images, labels), D(fake.detach(), labels))
        update(self.optimizers["D"], d_loss)
        g_loss = fooling_loss(D(fake, labels))
        update(self.optimizers["G"], g_loss)
        return {"D": d_loss.item(), "G": g_loss.item()}

    def samples(self) -> Tensor:
        """Rows: digits, G(E(x), y0), G(z*, y0), G(z*, y0 + 1)."""
        G, E = self.networks["G"], self.networks["E"]
        x = self.images[:SHOWN].to(self.device)
        y0 = self.labels[:SHOWN].to(self.device)
        z0 = E(x)
        z = reconstruct(G, x, y0, z0)
        return torch.cat([x, G(z0, y0), G(z, y0), G(z, (y0 + 1) % 10)])


def reconstruct(G: torch.nn.Module, x: Tensor, labels: Tensor, z0: Tensor) -> Tensor:
    """The identity-preserving latent optimization from z0: z minimizing the pixel L2
    distance between G(z, labels) and x (G's parameters untouched)."""
    z = z0.detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([z], lr=OPTIMIZATION_LR)
    with torch.enable_grad():
        for _ in range(OPTIMIZATION_STEPS):
            loss = F.mse_loss(G(z, labels), x)
            optimizer.zero_grad(set_to_none=True)
            (gradient,) = torch.autograd.grad(loss, [z])
            z.grad = gradient
            optimizer.step()
    return z.detach()


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Trains Age-cGAN from the command line; returns the losses."""
    return harness.main(AgeCGAN, __doc__, argv, steps=6000, batch=32)


if __name__ == "__main__":
    main()
