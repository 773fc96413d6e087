"""StyleGAN's noise injection and AdaIN (Karras et al. 2019) and StyleGAN2's modulated conv."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from fastpgan.nn.equalized import EqualizedLinear
from fastpgan.ops import adain, modulated_conv2d

__all__ = ["NOISE_MODES", "AdaIN", "ModulatedConv2d", "NoiseInjection", "noise_mode_property"]

NOISE_MODES = ("random", "const", "none")
"""Where StyleGAN's noise comes from (NVlabs' ``noise_mode``): fresh N(0, 1) every call, the
saved map, or none."""


def noise_mode_property(owner: str,
                        passed_on: Callable[[Any, str], None] | None = None) -> property:
    """A ``noise_mode`` property for ``owner``: one of :data:`NOISE_MODES`, checked when set
    (ValueError naming ``owner``), then given to ``passed_on(self, mode)`` if any (to set
    the layers below, or to refuse a mode this one cannot take)."""

    def get(self: Any) -> str:
        return self._noise_mode

    def set_(self: Any, mode: str) -> None:
        if mode not in NOISE_MODES:
            raise ValueError(f"{owner}: noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        if passed_on is not None:
            passed_on(self, mode)
        self._noise_mode = mode

    return property(get, set_, doc=f"{', '.join(map(repr, NOISE_MODES))}: where {owner}'s "
                                   "noise comes from (:data:`NOISE_MODES`).")


def _needs_its_map(layer: NoiseInjection, mode: str) -> None:
    if mode == "const" and layer.fixed_noise is None:
        raise ValueError("NoiseInjection: noise_mode 'const' needs a resolution for its map")


class NoiseInjection(nn.Module):
    """x + weight[c] * noise[n, 0, h, w]: single-channel noise scaled per channel.

    ``weight`` is learned and starts at zero. ``noise_mode`` picks the noise: "random"
    (fresh N(0, 1) for every sample and call, the default), "const" (the ``fixed_noise``
    buffer, one map shared by the batch, saved with the model) or "none"; it can be
    changed at any time, e.g. to "const" for reproducible samples.

    Args:
        channels: C.
        resolution: H = W of the saved map; needed for noise_mode "const" (None: no buffer).
        noise_mode: "random", "const" or "none".
    """

    noise_mode = noise_mode_property("NoiseInjection", _needs_its_map)

    def __init__(self, channels: int, resolution: int | None = None, *,
                 noise_mode: str = "random") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        fixed = None if resolution is None else torch.randn(1, 1, resolution, resolution)
        self.register_buffer("fixed_noise", fixed)
        self.noise_mode = noise_mode

    def noise_for(self, x: Tensor) -> Tensor | None:
        """The noise map for input x of shape (N, C, H, W), or None in mode "none"."""
        if self.noise_mode == "none":
            return None
        if self.noise_mode == "const":
            if self.fixed_noise.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"NoiseInjection: fixed noise is {tuple(self.fixed_noise.shape)}"
                                 f" but x is {tuple(x.shape)}")
            return self.fixed_noise.to(x.dtype)
        return torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x plus this layer's scaled noise (unfused; AdaIN fuses it into its kernel)."""
        noise = self.noise_for(x)
        return x if noise is None else x + self.weight.view(1, -1, 1, 1).to(x.dtype) * noise

    def extra_repr(self) -> str:
        """Channels and mode."""
        return f"channels={self.weight.numel()}, noise_mode={self.noise_mode}"


class AdaIN(nn.Module):
    """StyleGAN's layer epilogue: noise, bias, leaky ReLU, then AdaIN styled by w, fused.

    y = (1 + s[n, c]) * instance_norm(lrelu(x + noise_weight * noise + bias)) + t[n, c],
    with (s, t) = EqualizedLinear(w) (gain 1, as in the official code). The style starts
    as the identity: s and t have zero bias.

    Args:
        channels: C.
        w_dim: size of w.
        resolution: H = W, for the noise layer's fixed map (None: no fixed mode).
        noise: inject noise (a :class:`NoiseInjection` as ``self.noise``).
        bias: add a learned per-channel bias before the activation.
        negative_slope: leaky ReLU slope, or None for no activation.
        eps: instance norm's epsilon.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, channels: int, w_dim: int, resolution: int | None = None, *,
                 noise: bool = True, bias: bool = True, negative_slope: float | None = 0.2,
                 eps: float = 1e-8, backend: str | None = None) -> None:
        super().__init__()
        self.style = EqualizedLinear(w_dim, 2 * channels, he_gain=1.0)
        self.noise = NoiseInjection(channels, resolution) if noise else None
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.negative_slope, self.eps, self.backend = negative_slope, eps, backend

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x (N, C, H, W) styled by w (N, w_dim)."""
        scale, shift = self.style(w).chunk(2, dim=1)
        noise = None if self.noise is None else self.noise.noise_for(x)
        return adain(x, 1 + scale, shift, noise=noise,
                     noise_weight=None if noise is None else self.noise.weight,
                     bias=self.bias, negative_slope=self.negative_slope, eps=self.eps,
                     backend=self.backend)

    def extra_repr(self) -> str:
        """Slope and epsilon."""
        return f"negative_slope={self.negative_slope}, eps={self.eps:g}"


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution with its style affine (Karras et al. 2020, 2.2).

    styles = EqualizedLinear(w) (bias initialized to 1, so the layer starts unmodulated),
    then :func:`fastpgan.ops.modulated_conv2d` with the equalized-LR weight
    weight / sqrt(in_channels * k * k). The weight is stored N(0, 1) as (O, I, k, k), the
    shape of an ``nn.Conv2d`` weight.

    Args:
        in_channels, out_channels, kernel_size: as in ``nn.Conv2d`` (odd, square kernel).
        w_dim: size of w.
        demodulate: normalize each output channel (StyleGAN2's replacement for AdaIN).
        eps: added under the demodulation's square root.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, *,
                 demodulate: bool = True, eps: float = 1e-8,
                 backend: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.style = EqualizedLinear(w_dim, in_channels, he_gain=1.0, bias_init=1.0)
        self.demodulate, self.eps, self.backend = demodulate, eps, backend

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x (N, in_channels, H, W) convolved with weights modulated by w (N, w_dim)."""
        gain = self.weight[0].numel() ** -0.5
        return modulated_conv2d(x, self.weight * gain, self.style(w),
                                demodulate=self.demodulate, eps=self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        """Weight shape and demodulation."""
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, demodulate={self.demodulate}"
