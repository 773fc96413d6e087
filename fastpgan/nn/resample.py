"""Equalized-LR convolutions that change resolution: ProGAN's upsampling generator layer
and downsampling discriminator layer (Karras et al. 2017, appendix A; TensorFlow ProGAN's
"fused scale" layers), each one stride-2 convolution with the bias_act epilogue.

Their parameters are those of a k x k :class:`~fastpgan.nn.EqualizedConv2d` with "same"
padding (``weight`` (O, I, k, k) and ``bias`` (O,)), so checkpoints load either way. With
``resample_filter`` (StyleGAN2's [1, 3, 3, 1]) they resample through that FIR filter
instead (:mod:`fastpgan.ops.fir`), still one stride-2 convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fastpgan.nn.equalized import SQRT2, EqualizedConv2d, lr_scaled
from fastpgan.ops.fir import fir_resample_conv2d
from fastpgan.ops.resample_conv import resample_conv2d

__all__ = ["ConvDownsample2d", "UpsampleConv2d"]


class _ResampleConv2d(EqualizedConv2d):
    """An odd k x k equalized convolution whose forward also resamples by 2 (up or down)."""

    up: bool

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, *, he_gain: float = SQRT2,
                 lr_mul: float = 1.0,
                 bias_init: float = 0.0, activation: str = "linear",
                 negative_slope: float = 0.2, act_gain: float = 1.0,
                 clamp: float | None = None, pixel_norm: bool = False,
                 resample_filter: Sequence[float] | None = None,
                 backend: str | None = None) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"{type(self).__name__}: kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         bias=bias, device=device, dtype=dtype, he_gain=he_gain, lr_mul=lr_mul,
                         bias_init=bias_init, activation=activation,
                         negative_slope=negative_slope, act_gain=act_gain, clamp=clamp,
                         pixel_norm=pixel_norm, backend=backend)
        if resample_filter is not None and pixel_norm:
            raise ValueError(f"{type(self).__name__}: the FIR layers take no pixel norm")
        self.resample_filter = None if resample_filter is None else tuple(
            float(t) for t in resample_filter)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the layer to x of shape (N, in_channels, H, W)."""
        bias = lr_scaled(self.bias, self.lr_mul)
        if self.resample_filter is None:
            return resample_conv2d(x, self.weight, bias, up=self.up,
                                   weight_gain=self.weight_gain, epilogue=self.epilogue,
                                   backend=self.backend)
        return fir_resample_conv2d(x, self.weight, bias, up=self.up, taps=self.resample_filter,
                                   weight_gain=self.weight_gain, epilogue=self.epilogue,
                                   backend=self.backend)

    def extra_repr(self) -> str:
        """The convolution's description, and its FIR filter if any."""
        fir = "" if self.resample_filter is None else f", resample_filter={self.resample_filter}"
        return super().extra_repr() + fir


class UpsampleConv2d(_ResampleConv2d):
    """y = epilogue(conv2d(upsample_nearest_2x(x), W * c), b * lr_mul): (N, O, 2H, 2W).

    c = he_gain * lr_mul / sqrt(in_channels * k * k). ProGAN's generator uses it with
    activation="lrelu", pixel_norm=True. Computed by :func:`fastpgan.ops.upsample_conv2d`
    as one stride-2 transposed convolution with a (k+1) x (k+1) kernel, which never
    materializes the upsampled map and does 2.25x fewer multiply-adds for k = 3.

    Args are :class:`~fastpgan.nn.EqualizedConv2d`'s (keyword-only ones included) less
    stride, padding, dilation, groups and padding_mode, plus ``resample_filter``: FIR taps
    (e.g. [1, 3, 3, 1]) to upsample through instead of nearest, as
    :func:`fastpgan.ops.fir_upsample_conv2d` (the weight correlated, as in ``F.conv2d``).
    """

    up = True


class ConvDownsample2d(_ResampleConv2d):
    """y = epilogue(avg_pool2d(conv2d(x, W * c), 2), b * lr_mul): (N, O, H // 2, W // 2).

    c = he_gain * lr_mul / sqrt(in_channels * k * k). ProGAN's discriminator uses it with
    activation="lrelu". Computed by :func:`fastpgan.ops.conv2d_downsample` as one stride-2
    convolution with a (k+1) x (k+1) kernel; differentiable twice (WGAN-GP, R1).

    Args are as for :class:`UpsampleConv2d`; with ``resample_filter`` it is
    :func:`fastpgan.ops.fir_conv2d_downsample` (filter, then a stride-2 convolution:
    StyleGAN2's discriminator layers).
    """

    up = False
