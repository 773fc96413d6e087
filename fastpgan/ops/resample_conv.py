"""Nearest 2x upsample + convolution, and convolution + 2x2 average pool, each as one
stride-2 convolution ("fused scale" in the official TensorFlow ProGAN, Karras et al.
2017, appendix A), with the layer's bias + activation [+ pixel norm] epilogue.

Both pairs are linear, so each equals a single strided convolution with a (k+1) x (k+1)
kernel: the sum of the four one-pixel shifts of the zero-padded k x k kernel (divided by
4 for the pool). Upsample-then-conv becomes a stride-2 transposed convolution with that
kernel, flipped, and conv-then-pool a stride-2 convolution. The upsampled map is never
materialized, and either side does (k+1)^2 / (4 k^2) of the pair's multiply-adds:
2.25x fewer for k = 3.

Fused path: fastpgan's C++ extension (csrc/). ``fastpgan::resample_kernel`` is the kernel
transform in public ATen calls, registered as an ATen composite, so its fake tensors and
autograd come from those calls; then the strided convolution (cuDNN on CUDA) and the
extension's epilogue kernel through the ``fastpgan::bias_act`` custom op. Without an
epilogue the bias goes into the convolution. Inside :func:`frozen_weights` a weight that
needs no gradient has its kernel built once per version (about six ATen kernels a call
saved when generating or evaluating).

Double backward (WGAN-GP and R1 through the discriminator): autograd through the ATen
convolution, at any order, and :mod:`fastpgan.ops.epilogue`'s differentiable backward.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from fastpgan.backend import OpInfo, OpSample, OpTests, register, use_fused
from fastpgan.ops.checks import check_resample_conv
from fastpgan.ops.dispatch import watched
from fastpgan.ops.epilogue import ACTIVATIONS, Epilogue, epilogue_reference, fused_epilogue
from fastpgan.ops.samples import NOT_AN_ACTIVATION, conv_sample


def upsample_conv2d_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                              weight_gain: float = 1.0, act: str = "linear",
                              negative_slope: float = 0.2, gain: float = 1.0,
                              clamp: float | None = None, pixel_norm: bool = False,
                              eps: float = 1e-8) -> Tensor:
    """bias_act(conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight * weight_gain,
    padding=k//2), bias, ...): the definition, in plain PyTorch."""
    epilogue = Epilogue(act, negative_slope, gain, clamp, pixel_norm, eps)
    _validate("upsample_conv2d", x, weight, bias, weight_gain, epilogue, up=True)
    return _reference(x, weight, bias, up=True, weight_gain=weight_gain, epilogue=epilogue)


def conv2d_downsample_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                                weight_gain: float = 1.0, act: str = "linear",
                                negative_slope: float = 0.2, gain: float = 1.0,
                                clamp: float | None = None, pixel_norm: bool = False,
                                eps: float = 1e-8) -> Tensor:
    """bias_act(avg_pool2d(conv2d(x, weight * weight_gain, padding=k//2), 2), bias, ...):
    the definition, in plain PyTorch."""
    epilogue = Epilogue(act, negative_slope, gain, clamp, pixel_norm, eps)
    _validate("conv2d_downsample", x, weight, bias, weight_gain, epilogue, up=False)
    return _reference(x, weight, bias, up=False, weight_gain=weight_gain, epilogue=epilogue)


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
    return resample_conv2d(x, weight, bias, up=True, weight_gain=weight_gain,
                           epilogue=Epilogue(act, negative_slope, gain, clamp, pixel_norm, eps),
                           backend=backend)


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
    return resample_conv2d(x, weight, bias, up=False, weight_gain=weight_gain,
                           epilogue=Epilogue(act, negative_slope, gain, clamp, pixel_norm, eps),
                           backend=backend)


def resample_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, *, up: bool,
                    weight_gain: float, epilogue: Epilogue, backend: str | None = None) -> Tensor:
    """:func:`upsample_conv2d` (``up``) or :func:`conv2d_downsample` with the epilogue as
    one :class:`~fastpgan.ops.epilogue.Epilogue` value, as the layers hold it."""
    op = "upsample_conv2d" if up else "conv2d_downsample"
    _validate(op, x, weight, bias, weight_gain, epilogue, up=up)
    if not use_fused(op, x, backend):
        return _reference(x, weight, bias, up=up, weight_gain=weight_gain, epilogue=epilogue)
    kernel = _stride2_kernel(x, weight, up, float(weight_gain))
    conv = F.conv_transpose2d if up else F.conv2d
    padding = weight.shape[-1] // 2
    if epilogue.is_identity:
        return conv(x, kernel, None if bias is None else bias.to(x.dtype), stride=2,
                    padding=padding)
    h = conv(x, kernel, None, stride=2, padding=padding)
    return fused_epilogue(h, bias, epilogue, provider="extension")


_frozen = threading.local()
"""``store``: the kernels of this thread's open :func:`frozen_weights` block, by weight
(None outside one)."""


@contextlib.contextmanager
def frozen_weights() -> Iterator[None]:
    """A block in which the resampling convolutions' weights do not change.

    Inside it, an upsample_conv2d or conv2d_downsample (and their FIR versions; fused
    path) whose weight needs no gradient builds its stride-2 kernel once per weight
    version and reuses it: for generating, interpolating, projecting and evaluating. An
    in-place change that autograd sees (an optimizer step, ``copy_``, ``load_state_dict``)
    gives the weight a new version and so a new kernel; a change through ``.data`` is
    invisible to the version counter, so make none inside the block. The block is this
    thread's; its kernels are dropped when its outermost block ends. Nothing is kept while
    a CUDA graph is captured or the call is traced (torch.compile, dispatch modes).
    """
    outermost = getattr(_frozen, "store", None) is None
    if outermost:
        _frozen.store = WeakIdKeyDictionary()
    try:
        yield
    finally:
        if outermost:
            _frozen.store = None


def _stride2_kernel(x: Tensor, weight: Tensor, up: bool, weight_gain: float) -> Tensor:
    """``fastpgan::resample_kernel`` of weight in x's dtype (built in float32 or float64,
    rounded once), from the :func:`frozen_weights` block's store where it applies."""
    return derived_weight(x, weight, ("nearest", up, weight_gain, x.dtype),
                          lambda: torch.ops.fastpgan.resample_kernel(weight, up, weight_gain)
                          .to(x.dtype))


def derived_weight(x: Tensor, weight: Tensor, tag: tuple, build: Callable[[], Tensor]) -> Tensor:
    """``build()``, a tensor derived from ``weight`` for a call on ``x`` (a resampling
    convolution's kernel), kept in the open :func:`frozen_weights` block's store under
    ``tag`` and the weight's version where that is safe (see there)."""
    store = getattr(_frozen, "store", None)
    if (store is None or (weight.requires_grad and torch.is_grad_enabled()) or watched(weight)
            or (x.is_cuda and torch.cuda.is_current_stream_capturing())):
        return build()
    key = (weight._version, weight.data_ptr(), weight.dtype, *tag)
    kept = store.get(weight)
    if kept is None or kept[0] != key:
        kept = key, build()
        store[weight] = kept
    return kept[1]


def _reference(x: Tensor, weight: Tensor, bias: Tensor | None, *, up: bool,
               weight_gain: float, epilogue: Epilogue) -> Tensor:
    weight = (weight * weight_gain).to(x.dtype)  # a float32 weight on half-precision x
    padding = weight.shape[-1] // 2
    if up:
        h = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=padding)
    else:
        h = F.avg_pool2d(F.conv2d(x, weight, padding=padding), 2)
    return epilogue_reference(h, bias, epilogue)


def _validate(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, weight_gain: float,
              epilogue: Epilogue, *, up: bool) -> None:
    check_resample_conv(op, x, weight, bias, weight_gain, epilogue)
    if not ACTIVATIONS[epilogue.act].piecewise_linear:
        raise ValueError(f"{op}: the extension's epilogue takes linear, relu or lrelu, got "
                         f"{epilogue.act!r}; follow the convolution with bias_act for it")
    if not up and (x.shape[2] < 2 or x.shape[3] < 2):
        raise ValueError(f"{op}: x must be at least 2x2, got {tuple(x.shape)}")


def _tests(op: Callable[..., Tensor], reference: Callable[..., Tensor], up: bool) -> OpTests:
    def sample(rng: random.Random) -> OpSample:
        return conv_sample(rng, op, reference, {"pixel_norm": [False, True]},
                           low=1 if up else 2)

    # their only statistic is their bias_act epilogue's (bias_act's own case)
    return OpTests(sample, lambda f: f(NOT_AN_ACTIVATION, torch.randn(5, 3, 3, 3)),
                   op.__name__, ("tests/test_resample_conv.py",), None)


_DOUBLE_BACKWARD = ("autograd through the ATen convolution, and bias_act's differentiable "
                    "backward")
_LIBRARY_OPS = ("fastpgan::resample_kernel", "fastpgan::bias_act", "fastpgan::bias_act_backward")
register(OpInfo("upsample_conv2d", upsample_conv2d, upsample_conv2d_reference, "extension",
                library_ops=_LIBRARY_OPS, double_backward=_DOUBLE_BACKWARD,
                tests=_tests(upsample_conv2d, upsample_conv2d_reference, up=True)))
register(OpInfo("conv2d_downsample", conv2d_downsample, conv2d_downsample_reference,
                "extension", library_ops=_LIBRARY_OPS, double_backward=_DOUBLE_BACKWARD,
                tests=_tests(conv2d_downsample, conv2d_downsample_reference, up=False)))
