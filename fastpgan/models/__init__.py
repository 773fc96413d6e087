"""ProGAN and StyleGAN networks built on :mod:`fastpgan.nn` (with progressive growing),
StyleGAN2's config F, and loaders for published pickles."""

from fastpgan.models.architectures import ARCHITECTURES, Architecture
from fastpgan.models.common import GrowingNetwork, GrowthStage, channels_at
from fastpgan.models.pretrained import Pretrained
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.published import Networks, RefusedPickleError, convert, load
from fastpgan.models.stylegan import MappingNetwork, StyleGANGenerator
from fastpgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

__all__ = ["ARCHITECTURES", "Architecture", "GrowingNetwork", "GrowthStage", "MappingNetwork",
           "Networks", "Pretrained", "ProGANDiscriminator", "ProGANGenerator",
           "RefusedPickleError", "StyleGAN2Discriminator", "StyleGAN2Generator",
           "StyleGANGenerator", "channels_at", "convert", "load"]
