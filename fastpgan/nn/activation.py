"""BiasAct: a learned per-channel bias, then the activation [and pixel norm], fused."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.nn.equalized import lr_scaled
from fastpgan.ops.epilogue import Epilogue, apply_epilogue

__all__ = ["BiasAct"]


class BiasAct(nn.Module):
    """y = clamp(act(x + b[c]) * gain, -clamp, clamp), pixel-normalized if asked.

    ProGAN's per-layer epilogue (Karras et al. 2017, 4.1-4.2: bias, leaky ReLU 0.2, pixel
    norm in the generator) as one module, for layers whose convolution is not an
    :class:`~fastpgan.nn.EqualizedConv2d` (e.g. after a reshape, or in place of
    BatchNorm + ReLU in other GAN code). One pass over memory with the fused backend.

    Args:
        num_channels: C (x is (N, C, ...)).
        activation, negative_slope, gain, clamp, pixel_norm: the module's
            :class:`~fastpgan.ops.epilogue.Epilogue` (``epilogue``; ``activation`` is its
            ``act``).
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
        self.epilogue = Epilogue(activation, negative_slope, gain, clamp,
                                 pixel_norm).checked("BiasAct")
        self.bias = (nn.Parameter(torch.full((num_channels,), bias_init / lr_mul,
                                             device=device, dtype=dtype)) if bias else None)
        self.lr_mul, self.backend = lr_mul, backend

    def forward(self, x: Tensor) -> Tensor:
        """Applies the epilogue to x of shape (N, C, ...)."""
        return apply_epilogue(x, lr_scaled(self.bias, self.lr_mul), self.epilogue,
                              backend=self.backend, op="BiasAct")

    def extra_repr(self) -> str:
        """Channels and the epilogue's settings."""
        channels = "no bias" if self.bias is None else f"{self.bias.numel()}"
        return f"{channels}, {self.epilogue.describe()}"
