"""Nearest 2x upsample + convolution, and convolution + 2x2 average pool, each as one
stride-2 convolution ("fused scale" in the official TensorFlow ProGAN), with the layer's
bias + activation [+ pixel norm] epilogue.

Both pairs are linear, so each equals a single strided convolution with a (k+1) x (k+1)
kernel: the sum of the four one-pixel shifts of the zero-padded k x k kernel (divided by
4 for the pool). Upsample-then-conv becomes a stride-2 transposed convolution with that
kernel, flipped, and conv-then-pool a stride-2 convolution. The upsampled map is never
materialized, and either side does (k+1)^2 / (4 k^2) of the pair's multiply-adds:
2.25x fewer for k = 3.

The fused path is fastpgan's C++ extension (csrc/): the kernel transform and the strided
convolution through public ATen calls (cuDNN on CUDA), which autograd differentiates to
any order, then the extension's epilogue kernel through the ``fastpgan::bias_act`` op
(double backward included). Without an epilogue the bias goes into the convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import use_extension
from fastpgan.ops.checks import check_conv
from fastpgan.ops.epilogue import bias_act_reference, check_epilogue, fused_bias_act


def upsample_conv2d_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                              **epilogue) -> Tensor:
    """bias_act(conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight * weight_gain,
    padding=k//2), bias, ...): the definition, in plain PyTorch.

    Keyword arguments are :func:`upsample_conv2d`'s epilogue arguments.
    """
    _validate("upsample_conv2d", x, weight, bias, epilogue)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    return _reference_epilogue(F.conv2d, up, weight, bias, epilogue)


def conv2d_downsample_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                                **epilogue) -> Tensor:
    """bias_act(avg_pool2d(conv2d(x, weight * weight_gain, padding=k//2), 2), bias, ...):
    the definition, in plain PyTorch.

    Keyword arguments are :func:`conv2d_downsample`'s epilogue arguments.
    """
    _validate("conv2d_downsample", x, weight, bias, epilogue)

    def conv_pool(x: Tensor, weight: Tensor, padding: int) -> Tensor:
        return F.avg_pool2d(F.conv2d(x, weight, padding=padding), 2)

    return _reference_epilogue(conv_pool, x, weight, bias, epilogue)


def upsample_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                    weight_gain: float = 1.0, act: str = "linear", negative_slope: float = 0.2,
                    gain: float = 1.0, clamp: float | None = None, pixel_norm: bool = False,
                    eps: float = 1e-8, backend: str | None = None) -> Tensor:
    """Nearest 2x upsample, a k x k convolution (odd k, "same" padding), then the epilogue.

    y = bias_act(conv2d(up2(x), weight * weight_gain) , bias, act, ...), computed as one
    stride-2 transposed convolution (ProGAN's generator: act="lrelu", pixel_norm=True).

    Args:
        x: (N, I, H, W); the output is (N, O, 2H, 2W), in x's dtype and memory format.
        weight: (O, I, k, k) with odd k; bias: (O,) or None.
        weight_gain: factor on the weight (the equalized-LR constant), folded into the
            transformed kernel for free.
        act, negative_slope, gain, clamp, pixel_norm, eps: the epilogue, as in
            :func:`fastpgan.ops.bias_act` (the default is none: a plain convolution).
        backend: "auto" (the extension for CUDA tensors, the definition elsewhere),
            "fused" (the extension, CPU or CUDA) or "reference".
    """
    return _resample("upsample_conv2d", x, weight, bias, backend, up=True,
                     weight_gain=weight_gain, act=act, negative_slope=negative_slope,
                     gain=gain, clamp=clamp, pixel_norm=pixel_norm, eps=eps)


def conv2d_downsample(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                      weight_gain: float = 1.0, act: str = "linear",
                      negative_slope: float = 0.2, gain: float = 1.0,
                      clamp: float | None = None, pixel_norm: bool = False, eps: float = 1e-8,
                      backend: str | None = None) -> Tensor:
    """A k x k convolution (odd k, "same" padding), 2x2 average pooling, then the epilogue.

    y = bias_act(avg_pool2d(conv2d(x, weight * weight_gain), 2), bias, act, ...), computed
    as one stride-2 convolution (ProGAN's discriminator: act="lrelu"). Differentiable
    twice, for WGAN-GP and R1.

    Args:
        x: (N, I, H, W) with H, W >= 2; the output is (N, O, H // 2, W // 2).
        weight, bias, weight_gain, act, negative_slope, gain, clamp, pixel_norm, eps,
        backend: as in :func:`upsample_conv2d`.
    """
    if x.dim() == 4 and (x.shape[2] < 2 or x.shape[3] < 2):
        raise ValueError(f"conv2d_downsample: x must be at least 2x2, got {tuple(x.shape)}")
    return _resample("conv2d_downsample", x, weight, bias, backend, up=False,
                     weight_gain=weight_gain, act=act, negative_slope=negative_slope,
                     gain=gain, clamp=clamp, pixel_norm=pixel_norm, eps=eps)


def _resample(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, backend: str | None,
              *, up: bool, **epilogue) -> Tensor:
    _validate(op, x, weight, bias, epilogue)
    if not use_extension(op, x, backend):
        reference = upsample_conv2d_reference if up else conv2d_downsample_reference
        return reference(x, weight, bias, **epilogue)
    weight_gain = float(epilogue.pop("weight_gain"))
    resample_conv = torch.ops.fastpgan_ext.resample_conv  # registered by the extension
    if _plain(epilogue):
        return resample_conv(x, weight, bias, up, weight_gain)
    h = resample_conv(x, weight, None, up, weight_gain)
    return fused_bias_act(h, bias, provider="extension", **epilogue)


def _plain(epilogue: dict) -> bool:
    return (epilogue["act"] == "linear" and epilogue["gain"] == 1.0
            and epilogue["clamp"] is None and not epilogue["pixel_norm"])


def _reference_epilogue(conv, x: Tensor, weight: Tensor, bias: Tensor | None,
                        epilogue: dict) -> Tensor:
    epilogue = {"weight_gain": 1.0, "act": "linear", **epilogue}
    weight = weight * epilogue.pop("weight_gain")
    return bias_act_reference(conv(x, weight, padding=weight.shape[-1] // 2), bias,
                              **epilogue)


def _validate(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, epilogue: dict) -> None:
    check_conv(op, x, weight)
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    check_epilogue(op, epilogue.get("act", "linear"), epilogue.get("negative_slope", 0.2),
                   epilogue.get("gain", 1.0), epilogue.get("clamp"), epilogue.get("eps", 1e-8))
    if epilogue.get("weight_gain", 1.0) <= 0:
        raise ValueError(f"{op}: weight_gain must be > 0, got {epilogue['weight_gain']}")
