"""CycleGAN: unpaired translation between edge maps and faces, from the bundled LFW crops.

    python -m examples.cyclegan [--steps 3000] [--fused] [--device cuda] [--out DIR]

The objective of Zhu et al. 2017: two generators (A -> B, B -> A) and two PatchGAN
discriminators with the least-squares GAN loss, the cycle-consistency L1 loss weighted
10 and the identity loss weighted 5 (half the cycle weight, as their code's default);
Adam, learning rate 2e-4, betas (0.5, 0.999). Data: domain A is the Canny edge maps of
the first half of the bundled LFW faces (with mirrors), domain B the faces of the second
half, so no face meets its own edge map: the pairs are unknown to the model. Scaled down
from the paper: 32x32 grayscale, generators of width 8 with two residual blocks, batch 4
(the paper's 1), 3000 steps (about two minutes on two CPU cores), and no history buffer
of generated images (the paper's 50) for the discriminators. Samples: edge maps, their
translation to faces; faces, their translation to edge maps; in rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from examples import harness
from examples.cyclegan.models import resnet_generator
from examples.faces import edge_maps, load_faces
from examples.harness import Settings, prepare, update
from examples.pix2pix.models import patchgan

CYCLE_WEIGHT, IDENTITY_WEIGHT = 10.0, 5.0
ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
SHOWN = 8


class CycleGAN:
    """The CycleGAN system as :mod:`examples.harness` drives it."""

    columns = SHOWN

    def __init__(self, settings: Settings) -> None:
        torch.manual_seed(settings.seed)
        self.networks = prepare({
            "G_AB": resnet_generator(1, 1), "G_BA": resnet_generator(1, 1),
            "D_A": patchgan(1, norm=torch.nn.InstanceNorm2d),
            "D_B": patchgan(1, norm=torch.nn.InstanceNorm2d)}, settings)
        generators = [*self.networks["G_AB"].parameters(), *self.networks["G_BA"].parameters()]
        discriminators = [*self.networks["D_A"].parameters(),
                          *self.networks["D_B"].parameters()]
        self.optimizers = {"G": torch.optim.Adam(generators, **ADAM),
                           "D": torch.optim.Adam(discriminators, **ADAM)}
        faces = load_faces(32)
        person = torch.arange(len(faces)) % (len(faces) // 2)  # a face and its mirror
        in_a = person < len(faces) // 4  # half of the people each: split by person
        self.domain_a = edge_maps(faces[in_a])
        self.domain_b = faces[~in_a]
        self.device = settings.device

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """(edge maps, faces) drawn independently at random: unpaired, forever."""
        while True:
            a = torch.randint(len(self.domain_a), (size,), generator=generator)
            b = torch.randint(len(self.domain_b), (size,), generator=generator)
            yield self.domain_a[a], self.domain_b[b]

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """Both generators on the GAN, cycle and identity terms, then both discriminators."""
        real_a, real_b = batch
        nets = self.networks
        fake_b, fake_a = nets["G_AB"](real_a), nets["G_BA"](real_b)
        gan = _least_squares(nets["D_B"](fake_b), 1) + _least_squares(nets["D_A"](fake_a), 1)
        cycle = (F.l1_loss(nets["G_BA"](fake_b), real_a)
                 + F.l1_loss(nets["G_AB"](fake_a), real_b))
        identity = (F.l1_loss(nets["G_AB"](real_b), real_b)
                    + F.l1_loss(nets["G_BA"](real_a), real_a))
        update(self.optimizers["G"], gan + CYCLE_WEIGHT * cycle + IDENTITY_WEIGHT * identity)
        d_loss = 0.5 * (_least_squares(nets["D_A"](real_a), 1)
                        + _least_squares(nets["D_A"](fake_a.detach()), 0)
                        + _least_squares(nets["D_B"](real_b), 1)
                        + _least_squares(nets["D_B"](fake_b.detach()), 0))
        update(self.optimizers["D"], d_loss)
        return {"D": d_loss.item(), "G_gan": gan.item(), "cycle": cycle.item(),
                "identity": identity.item()}


    def samples(self) -> Tensor:
        """Rows: edge maps, their faces; faces, their edge maps."""
        a = self.domain_a[:SHOWN].to(self.device)
        b = self.domain_b[:SHOWN].to(self.device)
        return torch.cat([a, self.networks["G_AB"](a), b, self.networks["G_BA"](b)])


def _least_squares(logits: Tensor, target: float) -> Tensor:
    """LSGAN's (Mao et al. 2017) mean squared distance of D's outputs to ``target``."""
    return (logits - target).square().mean()


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Trains CycleGAN from the command line; returns the losses."""
    return harness.main(CycleGAN, __doc__, argv, steps=3000, batch=4)


if __name__ == "__main__":
    main()
