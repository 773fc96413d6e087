"""ProGAN and StyleGAN networks built on :mod:`fastpgan.nn`, with progressive growing."""

from fastpgan.models.architectures import ARCHITECTURES, Architecture
from fastpgan.models.common import GrowingNetwork, GrowthStage, channels_at
from fastpgan.models.pretrained import Pretrained
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.stylegan import MappingNetwork, StyleGANGenerator

__all__ = ["ARCHITECTURES", "Architecture", "GrowingNetwork", "GrowthStage", "MappingNetwork",
           "Pretrained", "ProGANDiscriminator", "ProGANGenerator", "StyleGANGenerator",
           "channels_at"]
