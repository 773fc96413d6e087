"""Drop-in layers built on :mod:`fastpgan.ops`."""

from fastpgan.nn.equalized import EqualizedConv2d, EqualizedLinear
from fastpgan.nn.minibatch_stddev import MinibatchStdDev
from fastpgan.nn.normalization import PixelNorm

__all__ = ["EqualizedConv2d", "EqualizedLinear", "MinibatchStdDev", "PixelNorm"]
