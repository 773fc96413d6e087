"""Equalized-learning-rate layers (Karras et al. 2017, section 4.1).

Weights are stored as N(0, 1) / lr_mul draws and multiplied at run time by
gain * lr_mul / sqrt(fan_in) (He's constant), so every weight sees the same dynamic
range under Adam; biases are stored divided by lr_mul and multiplied back. ``lr_mul``
is StyleGAN's learning-rate multiplier for the mapping network (Karras et al. 2019,
appendix C: 0.01). The output goes through the :func:`fastpgan.ops.bias_act` epilogue.

Both layers subclass their torch.nn counterparts: same constructor arguments where they
overlap, same parameter names and shapes, so checkpoints load either way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastpgan.ops import bias_act
from fastpgan.ops.epilogue import ACTIVATIONS

SQRT2 = math.sqrt(2.0)


class _Equalized:
    """Run-time He scaling and the bias_act epilogue, shared by the linear and conv layers."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _set_equalized(self, gain: float, lr_mul: float, bias_init: float, activation: str,
                       negative_slope: float, act_gain: float, clamp: float | None,
                       pixel_norm: bool, backend: str | None) -> None:
        if gain <= 0 or lr_mul <= 0:
            raise ValueError(f"gain and lr_mul must be > 0, got gain={gain}, lr_mul={lr_mul}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.gain, self.lr_mul, self.bias_init = gain, lr_mul, bias_init
        self.activation, self.negative_slope, self.act_gain = activation, negative_slope, act_gain
        self.clamp, self.pixel_norm, self.backend = clamp, pixel_norm, backend

    def reset_parameters(self) -> None:
        """Weights ~ N(0, 1 / lr_mul^2); biases = bias_init / lr_mul."""
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / self.lr_mul)
            if self.bias is not None:
                self.bias.fill_(self.bias_init / self.lr_mul)

    @property
    def weight_gain(self) -> float:
        """gain * lr_mul / sqrt(fan_in), the run-time weight multiplier."""
        return self.gain * self.lr_mul / math.sqrt(self.weight[0].numel())

    def _scaled_parameters(self) -> tuple[Tensor, Tensor | None]:
        bias = self.bias
        if bias is not None and self.lr_mul != 1.0:
            bias = bias * self.lr_mul
        return self.weight * self.weight_gain, bias

    def _plain_epilogue(self) -> bool:
        return (self.activation == "linear" and self.act_gain == 1.0 and self.clamp is None
                and not self.pixel_norm)

    def _epilogue(self, y: Tensor, bias: Tensor | None) -> Tensor:
        return bias_act(y, bias, act=self.activation, negative_slope=self.negative_slope,
                        gain=self.act_gain, clamp=self.clamp, pixel_norm=self.pixel_norm,
                        backend=self.backend)

    def _epilogue_repr(self) -> str:
        text = f", gain={self.gain:.4g}, lr_mul={self.lr_mul:g}, activation={self.activation}"
        if self.act_gain != 1.0:
            text += f", act_gain={self.act_gain:.4g}"
        if self.clamp is not None:
            text += f", clamp={self.clamp:g}"
        return text + (", pixel_norm=True" if self.pixel_norm else "")


class EqualizedLinear(_Equalized, nn.Linear):
    """Dense layer y = epilogue(x @ (W * c)^T, b * lr_mul), c = gain * lr_mul / sqrt(in).

    Args beyond :class:`torch.nn.Linear`'s (keyword-only):
        gain: He gain (sqrt(2) in ProGAN, 1 for output layers).
        lr_mul: learning-rate multiplier (StyleGAN's mapping network: 0.01).
        bias_init: initial bias value.
        activation, negative_slope, act_gain, clamp, pixel_norm: the bias_act epilogue
            (act_gain is bias_act's ``gain``).
        backend: backend of the epilogue, None for the process default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 *, gain: float = SQRT2, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activation: str = "linear", negative_slope: float = 0.2,
                 act_gain: float = 1.0, clamp: float | None = None, pixel_norm: bool = False,
                 backend: str | None = None) -> None:
        self._set_equalized(gain, lr_mul, bias_init, activation, negative_slope, act_gain,
                            clamp, pixel_norm, backend)
        super().__init__(in_features, out_features, bias, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the layer to x of shape (..., in_features)."""
        weight, bias = self._scaled_parameters()
        if self._plain_epilogue():
            return F.linear(x, weight, bias)
        y = F.linear(x.reshape(-1, self.in_features), weight)
        return self._epilogue(y, bias).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """nn.Linear's description plus the equalized-LR settings."""
        return super().extra_repr() + self._epilogue_repr()


class EqualizedConv2d(_Equalized, nn.Conv2d):
    """Convolution y = epilogue(conv2d(x, W * c), b * lr_mul), c = gain * lr_mul / sqrt(fan_in).

    fan_in = in_channels / groups * kernel height * kernel width. Arguments are
    :class:`torch.nn.Conv2d`'s (padding defaults to 0 as there: pass ``padding=k // 2``
    or ``"same"`` for ProGAN's layers) plus the keyword-only ones of
    :class:`EqualizedLinear`. Channels_last inputs give channels_last outputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, *, gain: float = SQRT2, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activation: str = "linear",
                 negative_slope: float = 0.2, act_gain: float = 1.0,
                 clamp: float | None = None, pixel_norm: bool = False,
                 backend: str | None = None) -> None:
        self._set_equalized(gain, lr_mul, bias_init, activation, negative_slope, act_gain,
                            clamp, pixel_norm, backend)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the layer to x of shape (N, in_channels, H, W)."""
        weight, bias = self._scaled_parameters()
        if self._plain_epilogue():
            return self._conv_forward(x, weight, bias)
        return self._epilogue(self._conv_forward(x, weight, None), bias)

    def extra_repr(self) -> str:
        """nn.Conv2d's description plus the equalized-LR settings."""
        return super().extra_repr() + self._epilogue_repr()
