"""Drop-in layers built on :mod:`fastpgan.ops`."""

from fastpgan.nn.activation import BiasAct
from fastpgan.nn.equalized import EqualizedConv2d, EqualizedLinear
from fastpgan.nn.minibatch_stddev import MinibatchStdDev
from fastpgan.nn.normalization import PixelNorm
from fastpgan.nn.progressive import FadeIn, FromRGB, ToRGB
from fastpgan.nn.resample import ConvDownsample2d, UpsampleConv2d
from fastpgan.nn.style import AdaIN, ModulatedConv2d, NoiseInjection

__all__ = ["AdaIN", "BiasAct", "ConvDownsample2d", "EqualizedConv2d", "EqualizedLinear", "FadeIn",
           "FromRGB", "MinibatchStdDev", "ModulatedConv2d", "NoiseInjection", "PixelNorm", "ToRGB",
           "UpsampleConv2d"]
