"""Architecture names, as ``fastpgan-train --arch`` and checkpoints spell them, and the
networks each one builds."""

from __future__ import annotations

from dataclasses import dataclass

from fastpgan.models.pretrained import Pretrained
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.stylegan import StyleGANGenerator
from fastpgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator


@dataclass(frozen=True)
class Architecture:
    """The generator and discriminator classes of one architecture, and whether they grow
    (``G(z, resolution, alpha)``, ``D(images, alpha)``) or train at one resolution
    (``G(z)``, ``D(images)``)."""

    generator: type[Pretrained]
    discriminator: type[Pretrained]
    grows: bool = True


ARCHITECTURES = {
    "progan": Architecture(ProGANGenerator, ProGANDiscriminator),
    # StyleGAN's generator against ProGAN's discriminator (Karras et al. 2019, section 2)
    "stylegan": Architecture(StyleGANGenerator, ProGANDiscriminator),
    # config F at one resolution (Karras et al. 2020): skip G, residual D
    "stylegan2": Architecture(StyleGAN2Generator, StyleGAN2Discriminator, grows=False),
}


def architecture(name: str) -> Architecture:
    """The architecture called ``name``; ValueError listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; expected one of "
                         f"{tuple(ARCHITECTURES)}") from None
