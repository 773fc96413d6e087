"""ProGAN and StyleGAN networks built on :mod:`fastpgan.nn`, with progressive growing."""

from fastpgan.models.common import channels_at, checkpoint_activations
from fastpgan.models.pretrained import Pretrained
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.stylegan import MappingNetwork, StyleGANGenerator

__all__ = ["MappingNetwork", "Pretrained", "ProGANDiscriminator", "ProGANGenerator",
           "StyleGANGenerator", "channels_at", "checkpoint_activations"]
