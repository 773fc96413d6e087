"""modulated_conv2d: StyleGAN2's weight modulation and demodulation (Karras et al. 2020, 2.2).

Definition: w'[n, o, i] = weight[o, i] * styles[n, i]; with demodulation each w'[n, o]
is divided by sqrt(sum over (i, kh, kw) of w'[n, o]^2 + eps); sample n is convolved with
its own w'[n]. :func:`modulated_conv2d_reference` does exactly that, as one grouped
convolution over N modulated weight copies (N x O x I x k x k values materialized).

The fast path uses the same algebra the other way round: scaling the weight's input
channels by styles[n] equals scaling x's channels, and the demodulation factor is one
per (n, o), so

    y = conv2d(x * styles[n, :, None, None], weight) * d[n, :, None, None],
    d[n, o] = (sum_i styles[n, i]^2 * sum_(kh, kw) weight[o, i]^2 + eps)^(-1/2),

one convolution with the shared weight (cuDNN's best case, a batch of N) and d from a
small (N x I) @ (I x O) product, with no per-sample weights. It is plain PyTorch, so
every order of gradient comes from autograd, and it needs no Triton.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import resolve_backend
from fastpgan.ops.checks import check_conv
from fastpgan.ops.layout import stat_dtype


def modulated_conv2d_reference(x: Tensor, weight: Tensor, styles: Tensor, *,
                               demodulate: bool = True, eps: float = 1e-8,
                               padding: int | None = None) -> Tensor:
    """The definition: per-sample modulated (and demodulated) weights, grouped conv; the
    weights in float32 for half-precision x, the convolution in x's dtype."""
    _validate(x, weight, styles, eps)
    n, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    f = stat_dtype(x)
    weights = weight.to(f)[None] * styles[:, None, :, None, None].to(f)  # (N, O, I, k, k)
    if demodulate:
        weights = weights * torch.rsqrt(weights.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    y = F.conv2d(x.reshape(1, n * i, h, w), weights.reshape(n * o, i, kh, kw).to(x.dtype),
                 padding=kh // 2 if padding is None else padding, groups=n)
    return y.reshape(n, o, *y.shape[2:])


def demodulation(weight: Tensor, styles: Tensor, eps: float = 1e-8) -> Tensor:
    """d[n, o] = (sum_i styles[n, i]^2 * sum_(kh, kw) weight[o, i]^2 + eps)^(-1/2), in
    the inputs' dtype even under autocast (a float16 product can overflow, and float16 has
    no 1e-8)."""
    with torch.autocast(weight.device.type, enabled=False):
        return torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool = True,
                     eps: float = 1e-8, padding: int | None = None,
                     backend: str | None = None) -> Tensor:
    """StyleGAN2's modulated convolution.

    Args:
        x: (N, I, H, W), NCHW or channels_last.
        weight: (O, I, kh, kw), odd square kernel, shared by the batch.
        styles: (N, I), the per-sample input-channel scales (StyleGAN2: an affine map of w).
        demodulate: normalize each output channel's modulated weight to unit norm.
        eps: added under the demodulation's square root.
        padding: default k // 2 ("same" size).
        backend: "auto" (the rewrite on CUDA tensors, the definition elsewhere), "fused"
            (always the rewrite) or "reference".
    """
    _validate(x, weight, styles, eps)
    name = resolve_backend("modulated_conv2d", backend)
    if name == "reference" or (name == "auto" and not x.is_cuda):
        return modulated_conv2d_reference(x, weight, styles, demodulate=demodulate, eps=eps,
                                          padding=padding)
    y = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype),
                 padding=weight.shape[-1] // 2 if padding is None else padding)
    if demodulate:
        f = stat_dtype(x)
        y = y * demodulation(weight.to(f), styles.to(f), eps)[:, :, None, None].to(y.dtype)
    return y


def _validate(x: Tensor, weight: Tensor, styles: Tensor, eps: float) -> None:
    check_conv("modulated_conv2d", x, weight)
    if tuple(styles.shape) != (x.shape[0], x.shape[1]):
        raise ValueError(f"modulated_conv2d: styles must have shape ({x.shape[0]}, "
                         f"{x.shape[1]}), got {tuple(styles.shape)}")
    if eps < 0:
        raise ValueError(f"modulated_conv2d: eps must be >= 0, got {eps}")
