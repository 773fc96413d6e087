"""BiasAct: a learned per-channel bias, then the activation [and pixel norm], fused."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.ops import bias_act
from fastpgan.ops.epilogue import check_epilogue


class BiasAct(nn.Module):
    """y = clamp(act(x + b[c]) * gain, -clamp, clamp), pixel-normalized if asked.

    ProGAN's per-layer epilogue (Karras et al. 2017, 4.1-4.2: bias, leaky ReLU 0.2, pixel
    norm in the generator) as one module, for layers whose convolution is not an
    :class:`~fastpgan.nn.EqualizedConv2d` (e.g. after a reshape, or in place of
    BatchNorm + ReLU in other GAN code). One pass over memory with the fused backend.

    Args:
        num_channels: C (x is (N, C, ...)).
        activation: "linear", "relu" or "lrelu".
        negative_slope: leaky ReLU's slope.
        gain: factor after the activation.
        clamp: clamp the result to [-clamp, clamp] (None: no clamp).
        pixel_norm: normalize over channels per pixel afterwards.
        bias: learn a bias (initialized to bias_init), or add none.
        bias_init: the bias's initial value.
        lr_mul: learning-rate multiplier of the bias (stored as b / lr_mul).
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, num_channels: int, activation: str = "lrelu", *,
                 negative_slope: float = 0.2, gain: float = 1.0, clamp: float | None = None,
                 pixel_norm: bool = False, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, backend: str | None = None) -> None:
        super().__init__()
        check_epilogue("BiasAct", activation, negative_slope, gain, clamp, 0.0)
        self.bias = (nn.Parameter(torch.full((num_channels,), bias_init / lr_mul,
                                             device=device, dtype=dtype)) if bias else None)
        self.activation, self.negative_slope, self.gain = activation, negative_slope, gain
        self.clamp, self.pixel_norm, self.lr_mul, self.backend = clamp, pixel_norm, lr_mul, backend

    def forward(self, x: Tensor) -> Tensor:
        """Applies the epilogue to x of shape (N, C, ...)."""
        bias = self.bias
        if bias is not None and self.lr_mul != 1.0:
            bias = bias * self.lr_mul
        return bias_act(x, bias, act=self.activation, negative_slope=self.negative_slope,
                        gain=self.gain, clamp=self.clamp, pixel_norm=self.pixel_norm,
                        backend=self.backend)

    def extra_repr(self) -> str:
        """Channels and the epilogue's settings."""
        channels = "no bias" if self.bias is None else f"{self.bias.numel()}"
        return (f"{channels}, activation={self.activation}, negative_slope={self.negative_slope}"
                f", gain={self.gain:.4g}, clamp={self.clamp}, pixel_norm={self.pixel_norm}")
