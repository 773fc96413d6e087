"""Equalized-learning-rate layers (Karras et al. 2017, section 4.1).

Weights are stored as N(0, 1) / lr_mul draws and multiplied at run time by
he_gain * lr_mul / sqrt(fan_in) (He's constant), so every weight sees the same dynamic
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

from fastpgan.ops.epilogue import Epilogue, apply_epilogue

__all__ = ["EqualizedConv2d", "EqualizedLinear"]

SQRT2 = math.sqrt(2.0)


def lr_scaled(bias: Tensor | None, lr_mul: float) -> Tensor | None:
    """A parameter stored divided by its learning-rate multiplier, multiplied back."""
    return bias if bias is None or lr_mul == 1.0 else bias * lr_mul


class _Equalized:
    """Run-time He scaling and the bias_act epilogue, shared by the linear and conv layers."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    epilogue: Epilogue

    def _set_equalized(self, he_gain: float, lr_mul: float, bias_init: float,
                       epilogue: Epilogue, backend: str | None) -> None:
        if not (0 < he_gain < math.inf and 0 < lr_mul < math.inf):
            raise ValueError(f"{type(self).__name__}: he_gain and lr_mul must be > 0 and "
                             f"finite, got he_gain={he_gain}, lr_mul={lr_mul}")
        self.he_gain, self.lr_mul, self.bias_init = he_gain, lr_mul, bias_init
        self.epilogue = epilogue.checked(type(self).__name__)
        self.backend = backend

    def _check_sizes(self) -> None:
        """ValueError for a layer without inputs or outputs (He's constant divides by the
        fan-in)."""
        if self.weight.numel() == 0:
            raise ValueError(f"{type(self).__name__}: needs at least one input and one output "
                             "feature or channel, got a weight of shape "
                             f"{tuple(self.weight.shape)}")

    def reset_parameters(self) -> None:
        """Weights ~ N(0, 1 / lr_mul^2); biases = bias_init / lr_mul."""
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / self.lr_mul)
            if self.bias is not None:
                self.bias.fill_(self.bias_init / self.lr_mul)

    @property
    def weight_gain(self) -> float:
        """he_gain * lr_mul / sqrt(fan_in), the run-time weight multiplier."""
        return self.he_gain * self.lr_mul / math.sqrt(self.weight[0].numel())

    def _scaled_parameters(self) -> tuple[Tensor, Tensor | None]:
        return self.weight * self.weight_gain, lr_scaled(self.bias, self.lr_mul)

    def _epilogue(self, y: Tensor, bias: Tensor | None) -> Tensor:
        return apply_epilogue(y, bias, self.epilogue, backend=self.backend,
                              op=type(self).__name__)

    def _epilogue_repr(self) -> str:
        text = f", he_gain={self.he_gain:.4g}, lr_mul={self.lr_mul:g}"
        return text + (f", {self.epilogue.describe()}" if self.epilogue.describe() else "")


class EqualizedLinear(_Equalized, nn.Linear):
    """Dense layer y = epilogue(x @ (W * c)^T, b * lr_mul), c = he_gain * lr_mul / sqrt(in).

    Args beyond :class:`torch.nn.Linear`'s (keyword-only):
        he_gain: He's gain on the weight (sqrt(2) in ProGAN, 1 for output layers).
        lr_mul: learning-rate multiplier (StyleGAN's mapping network: 0.01).
        bias_init: initial bias value.
        activation, negative_slope, act_gain, clamp, pixel_norm: the layer's
            :class:`~fastpgan.ops.epilogue.Epilogue` (``epilogue``): act, negative_slope,
            gain, clamp and pixel_norm (``act_gain`` is the epilogue's ``gain``, after the
            activation, as the ops and NVlabs' layers call it).
        backend: backend of the epilogue, None for the process default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 *, he_gain: float = SQRT2, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activation: str = "linear", negative_slope: float = 0.2,
                 act_gain: float = 1.0, clamp: float | None = None, pixel_norm: bool = False,
                 backend: str | None = None) -> None:
        self._set_equalized(he_gain, lr_mul, bias_init,
                            Epilogue(activation, negative_slope, act_gain, clamp, pixel_norm),
                            backend)
        super().__init__(in_features, out_features, bias, device, dtype)
        self._check_sizes()

    def forward(self, x: Tensor) -> Tensor:
        """Applies the layer to x of shape (..., in_features)."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"EqualizedLinear: x must be (..., {self.in_features}), got shape "
                             f"{tuple(x.shape)}")
        weight, bias = self._scaled_parameters()
        if self.epilogue.is_identity:
            return F.linear(x, weight, bias)
        y = F.linear(x.reshape(-1, self.in_features), weight)
        return self._epilogue(y, bias).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """nn.Linear's description plus the equalized-LR settings."""
        return super().extra_repr() + self._epilogue_repr()


class EqualizedConv2d(_Equalized, nn.Conv2d):
    """Convolution y = epilogue(conv2d(x, W * c), b * lr_mul), c = he_gain * lr_mul / sqrt(fan_in).

    fan_in = in_channels / groups * kernel height * kernel width. Arguments are
    :class:`torch.nn.Conv2d`'s (padding defaults to 0 as there: pass ``padding=k // 2``
    or ``"same"`` for ProGAN's layers) plus the keyword-only ones of
    :class:`EqualizedLinear`. Channels_last inputs give channels_last outputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, *, he_gain: float = SQRT2, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activation: str = "linear",
                 negative_slope: float = 0.2, act_gain: float = 1.0,
                 clamp: float | None = None, pixel_norm: bool = False,
                 backend: str | None = None) -> None:
        self._set_equalized(he_gain, lr_mul, bias_init,
                            Epilogue(activation, negative_slope, act_gain, clamp, pixel_norm),
                            backend)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)
        self._check_sizes()

    def forward(self, x: Tensor) -> Tensor:
        """Applies the layer to x of shape (N, in_channels, H, W)."""
        weight, bias = self._scaled_parameters()
        if self.epilogue.is_identity:
            return self._conv_forward(x, weight, bias)
        return self._epilogue(self._conv_forward(x, weight, None), bias)

    def extra_repr(self) -> str:
        """nn.Conv2d's description plus the equalized-LR settings."""
        return super().extra_repr() + self._epilogue_repr()
