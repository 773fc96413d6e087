"""Fused ops. Each has a plain-PyTorch ``*_reference`` (the ground truth) and a fused path.

Every op takes ``backend="auto" | "fused" | "reference"`` (see :mod:`fastpgan.backend`).
"""

from fastpgan.ops.adain import adain, adain_reference
from fastpgan.ops.epilogue import bias_act, bias_act_reference
from fastpgan.ops.minibatch_stddev import minibatch_stddev, minibatch_stddev_reference
from fastpgan.ops.modulated_conv import modulated_conv2d, modulated_conv2d_reference
from fastpgan.ops.normalization import pixel_norm, pixel_norm_reference
from fastpgan.ops.resample_conv import (
    conv2d_downsample,
    conv2d_downsample_reference,
    upsample_conv2d,
    upsample_conv2d_reference,
)

__all__ = ["adain", "adain_reference", "bias_act", "bias_act_reference", "conv2d_downsample",
           "conv2d_downsample_reference", "minibatch_stddev", "minibatch_stddev_reference",
           "modulated_conv2d", "modulated_conv2d_reference", "pixel_norm",
           "pixel_norm_reference", "upsample_conv2d", "upsample_conv2d_reference"]
