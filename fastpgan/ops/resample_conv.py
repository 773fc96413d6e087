"""Nearest 2x upsample + convolution, and convolution + 2x2 average pool, each as one
stride-2 convolution ("fused scale" in the official TensorFlow ProGAN).

Both pairs are linear, so each equals a single strided convolution with a (k+1) x (k+1)
kernel: the sum of the four one-pixel shifts of the zero-padded k x k kernel (divided by
4 for the pool). Upsample-then-conv becomes a stride-2 transposed convolution with that
kernel, flipped, and conv-then-pool a stride-2 convolution. The upsampled map is never
materialized, and either side does (k+1)^2 / (4 k^2) of the pair's multiply-adds:
2.25x fewer for k = 3.

This module is the exact rewrite in PyTorch (cuDNN underneath); issue 4's C++/CUDA
extension with a fused bias + activation epilogue is not built yet.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import resolve_backend
from fastpgan.ops.checks import check_conv


def upsample_conv2d_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=k//2)."""
    _validate("upsample_conv2d", x, weight, bias)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    return F.conv2d(up, weight, bias, padding=weight.shape[-1] // 2)


def conv2d_downsample_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """avg_pool2d(conv2d(x, weight, bias, padding=k//2), 2)."""
    _validate("conv2d_downsample", x, weight, bias)
    return F.avg_pool2d(F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2), 2)


def shifted_sum_kernel(weight: Tensor) -> Tensor:
    """(O, I, k+1, k+1): the sum of the four one-pixel shifts of the zero-padded kernel."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[..., 1:, 1:] + w[..., :-1, 1:] + w[..., 1:, :-1] + w[..., :-1, :-1]


def upsample_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                    backend: str | None = None) -> Tensor:
    """Nearest 2x upsample then a k x k convolution (odd k, "same" padding), in one pass.

    Args:
        x: (N, I, H, W); the output is (N, O, 2H, 2W).
        weight: (O, I, k, k) with odd k; bias: (O,) or None.
        backend: "auto" (the rewrite for CUDA tensors, the definition elsewhere), "fused"
            or "reference".
    """
    _validate("upsample_conv2d", x, weight, bias)
    name = resolve_backend("upsample_conv2d", backend)
    if name == "reference" or (name == "auto" and not x.is_cuda):
        return upsample_conv2d_reference(x, weight, bias)
    kernel = shifted_sum_kernel(weight).transpose(0, 1).flip(2, 3)  # (I, O, k+1, k+1)
    return F.conv_transpose2d(x, kernel, bias, stride=2, padding=weight.shape[-1] // 2)


def conv2d_downsample(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                      backend: str | None = None) -> Tensor:
    """A k x k convolution (odd k, "same" padding) then 2x2 average pooling, in one pass.

    Args:
        x: (N, I, H, W) with H, W >= 2; the output is (N, O, H // 2, W // 2).
        weight: (O, I, k, k) with odd k; bias: (O,) or None.
        backend: as in :func:`upsample_conv2d`.
    """
    _validate("conv2d_downsample", x, weight, bias)
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"conv2d_downsample: x must be at least 2x2, got {tuple(x.shape)}")
    name = resolve_backend("conv2d_downsample", backend)
    if name == "reference" or (name == "auto" and not x.is_cuda):
        return conv2d_downsample_reference(x, weight, bias)
    return F.conv2d(x, shifted_sum_kernel(weight) * 0.25, bias, stride=2,
                    padding=weight.shape[-1] // 2)


def _validate(op: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    check_conv(op, x, weight)
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
