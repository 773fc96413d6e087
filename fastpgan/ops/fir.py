"""FIR-filtered 2x resampling: StyleGAN2's [1, 3, 3, 1] up- and downsampling (Karras et al.
2020, appendix B, after Zhang 2019), as NVlabs' stylegan2-ada-pytorch defines it
(``upfirdn2d`` and ``conv2d_resample``).

Definitions. :func:`upfirdn2d_reference` upsamples by inserting zeros, pads (negative
padding crops), convolves each channel with the 2-D filter (the outer product of the
taps, normalized to sum 1, times ``gain``) and keeps every ``down``-th pixel.
``fir_upsample2d`` is that with up=2 and gain 4 (the mean brightness kept), padded so
that H x W becomes 2H x 2W. ``fir_upsample_conv2d`` filters x so upsampled and then runs a
k x k convolution; ``fir_conv2d_downsample`` filters x, then runs a stride-2 k x k
convolution; both end in the bias_act epilogue and keep "same" sizes (2H, H / 2).

Fused path. Filtering and convolving are both linear, so each pair is one convolution
whose (k + taps - 1)-wide kernel is the full convolution of the weight with the filter
(``fastpgan::fir_kernel``, ATen calls registered as a composite): the upsampling layer
becomes one stride-2 transposed convolution and the downsampling one a stride-2
convolution, with the epilogue after, and the zero-stuffed or filtered map is never
stored. The same rewrite with the taps [1, 1] is ProGAN's nearest / box resampling
(:mod:`fastpgan.ops.resample_conv`). It does the multiply-adds of a k x k convolution at
the larger resolution, as the definition does; NVlabs' order (a stride-2 3 x 3 transposed
convolution, then the depthwise filter over the output) does about a quarter of those
but passes over the output twice more. ``fir_upsample2d`` is one depthwise stride-2
transposed convolution with the filter.

Double backward: autograd through the ATen convolutions and the kernel fold, at any
order, and bias_act's differentiable backward.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import OpInfo, OpSample, OpTests, register, use_fused
from fastpgan.ops.checks import check_resample_conv
from fastpgan.ops.epilogue import Epilogue, apply_epilogue, epilogue_reference
from fastpgan.ops.layout import device_constant
from fastpgan.ops.resample_conv import derived_weight
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations, conv_sample, feature_map

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
"""StyleGAN2's resampling filter (a binomial low-pass)."""


def fir_filter(taps: Sequence[float], *, gain: float = 1.0, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """The 2-D filter of ``taps``: their outer product, normalized to sum 1, times gain
    (a constant made once per device: never write to it)."""
    t = device_constant(tuple(float(v) for v in taps), dtype,
                        torch.device(device if device is not None else "cpu"))
    f = torch.outer(t, t)
    return f * (gain / f.sum())


def upfirdn2d_reference(x: Tensor, taps: Sequence[float] = FIR_TAPS, *, up: int = 1,
                        down: int = 1, padding: Sequence[int] = (0, 0, 0, 0),
                        gain: float = 1.0) -> Tensor:
    """Zero-insertion upsampling by ``up``, padding (left, right, top, bottom; negative
    crops), per-channel convolution with :func:`fir_filter`, then keeping every
    ``down``-th pixel: the definition, in plain PyTorch (no backend: it is what the fused
    ops are checked against)."""
    even_taps("upfirdn2d", taps)  # the checks; the filter is used as given
    if x.dim() != 4:
        raise ValueError(f"upfirdn2d: x must be (N, C, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, list(padding))
    f = fir_filter(taps, gain=gain, dtype=x.dtype, device=x.device).flip(0, 1)
    x = F.conv2d(x, f.expand(c, 1, *f.shape), groups=c)  # flipped: a true convolution
    return x[:, :, ::down, ::down]


def fir_upsample2d_reference(x: Tensor, taps: Sequence[float] = FIR_TAPS) -> Tensor:
    """:func:`upfirdn2d_reference` with up=2, gain 4 and the padding that makes 2H x 2W."""
    taps = even_taps("fir_upsample2d", taps)
    if x.dim() != 4:
        raise ValueError(f"fir_upsample2d: x must be (N, C, H, W), got {tuple(x.shape)}")
    half = len(taps) // 2
    return upfirdn2d_reference(x, taps, up=2, padding=(half, half - 1) * 2, gain=4.0)


def fir_upsample2d(x: Tensor, taps: Sequence[float] = FIR_TAPS, *,
                   backend: str | None = None) -> Tensor:
    """2x upsampling of (N, C, H, W) images with the FIR filter (StyleGAN2's skip
    generator): (N, C, 2H, 2W), brightness kept.

    Args:
        x: (N, C, H, W).
        taps: the separable filter's taps, an even number of them (default [1, 3, 3, 1]).
        backend: "auto" (the rewrite on CUDA tensors, the definition elsewhere), "fused"
            or "reference".
    """
    taps = even_taps("fir_upsample2d", taps)
    if not use_fused("fir_upsample2d", x, backend):
        return fir_upsample2d_reference(x, taps)
    c = x.shape[1]
    f = fir_filter(taps, gain=4.0, dtype=x.dtype, device=x.device)  # flipped twice: as is
    return F.conv_transpose2d(x, f.expand(c, 1, *f.shape), stride=2,
                              padding=len(taps) // 2 - 1, groups=c)


def fir_downsample2d(x: Tensor, taps: Sequence[float] = FIR_TAPS) -> Tensor:
    """2x downsampling of (N, C, H, W) images with the FIR filter (StyleGAN2's skip
    discriminator passes its input image down so): (N, C, H/2, W/2), NVlabs'
    ``downsample2d``. Plain PyTorch on every device: it filters the few image channels
    only, where a kernel would save nothing."""
    taps = even_taps("fir_downsample2d", taps)
    if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"fir_downsample2d: x must be (N, C, H, W) with even H and W, got "
                         f"{tuple(x.shape)}")
    pad = len(taps) // 2 - 1
    return upfirdn2d_reference(x, taps, down=2, padding=(pad,) * 4)


def fir_upsample_conv2d_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                                  taps: Sequence[float] = FIR_TAPS, weight_gain: float = 1.0,
                                  act: str = "linear", negative_slope: float = 0.2,
                                  gain: float = 1.0, clamp: float | None = None) -> Tensor:
    """bias_act(conv2d(upfirdn2d(x, up=2, gain=4), weight * weight_gain), bias, ...), sizes
    as NVlabs' conv2d_resample: the definition, in plain PyTorch."""
    epilogue = Epilogue(act, negative_slope, gain, clamp)
    taps = _validate("fir_upsample_conv2d", x, weight, bias, taps, weight_gain, epilogue,
                     up=True)
    return _reference(x, weight, bias, up=True, taps=taps, weight_gain=weight_gain,
                      epilogue=epilogue)


def fir_conv2d_downsample_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                                    taps: Sequence[float] = FIR_TAPS, weight_gain: float = 1.0,
                                    act: str = "linear", negative_slope: float = 0.2,
                                    gain: float = 1.0, clamp: float | None = None) -> Tensor:
    """bias_act(conv2d(upfirdn2d(x), weight * weight_gain, stride=2), bias, ...), sizes as
    NVlabs' conv2d_resample: the definition, in plain PyTorch."""
    epilogue = Epilogue(act, negative_slope, gain, clamp)
    taps = _validate("fir_conv2d_downsample", x, weight, bias, taps, weight_gain, epilogue,
                     up=False)
    return _reference(x, weight, bias, up=False, taps=taps, weight_gain=weight_gain,
                      epilogue=epilogue)


def fir_upsample_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                        taps: Sequence[float] = FIR_TAPS, weight_gain: float = 1.0,
                        act: str = "linear", negative_slope: float = 0.2, gain: float = 1.0,
                        clamp: float | None = None, backend: str | None = None) -> Tensor:
    """FIR 2x upsampling, a k x k convolution, then the epilogue: (N, O, 2H, 2W).

    StyleGAN2's upsampling layers (the modulated ones call it through
    :func:`fastpgan.ops.modulated_conv2d` with ``up=True``). The weight is correlated, as
    in ``F.conv2d``; NVlabs' upsampling layers convolve (they pass ``flip_weight=False``),
    so give those ``weight.flip(2, 3)``.

    Args:
        x: (N, I, H, W); weight: (O, I, k, k), odd k; bias: (O,) or None.
        taps: the filter's taps, an even number (default [1, 3, 3, 1]).
        weight_gain: factor on the weight, folded into the kernel.
        act, negative_slope, gain, clamp: the epilogue, as in :func:`fastpgan.ops.bias_act`.
        backend: "auto" (the rewrite on CUDA tensors, the definition elsewhere), "fused"
            or "reference".
    """
    return fir_resample_conv2d(x, weight, bias, up=True, taps=taps, weight_gain=weight_gain,
                               epilogue=Epilogue(act, negative_slope, gain, clamp),
                               backend=backend)


def fir_conv2d_downsample(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                          taps: Sequence[float] = FIR_TAPS, weight_gain: float = 1.0,
                          act: str = "linear", negative_slope: float = 0.2, gain: float = 1.0,
                          clamp: float | None = None, backend: str | None = None) -> Tensor:
    """The FIR filter, a stride-2 k x k convolution, then the epilogue: (N, O, H/2, W/2).

    StyleGAN2's discriminator layers (and its 1x1 residual skips, k = 1). Differentiable
    twice (R1). Args as :func:`fir_upsample_conv2d`; H and W must be even.
    """
    return fir_resample_conv2d(x, weight, bias, up=False, taps=taps, weight_gain=weight_gain,
                               epilogue=Epilogue(act, negative_slope, gain, clamp),
                               backend=backend)


def fir_resample_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, *, up: bool,
                        taps: Sequence[float], weight_gain: float, epilogue: Epilogue,
                        backend: str | None = None) -> Tensor:
    """:func:`fir_upsample_conv2d` (``up``) or :func:`fir_conv2d_downsample` with the
    epilogue as one :class:`~fastpgan.ops.epilogue.Epilogue` value, as the layers hold it."""
    op = "fir_upsample_conv2d" if up else "fir_conv2d_downsample"
    taps = _validate(op, x, weight, bias, taps, weight_gain, epilogue, up=up)
    if not use_fused(op, x, backend):
        return _reference(x, weight, bias, up=up, taps=taps, weight_gain=weight_gain,
                          epilogue=epilogue)
    taps = list(taps)
    kernel = derived_weight(x, weight, ("fir", up, float(weight_gain), x.dtype, *taps),
                            lambda: torch.ops.fastpgan.fir_kernel(weight, taps, up,
                                                                   float(weight_gain))
                            .to(x.dtype))
    padding = weight.shape[-1] // 2 + len(taps) // 2 - 1
    conv = F.conv_transpose2d if up else F.conv2d
    if epilogue.is_identity:
        return conv(x, kernel, None if bias is None else bias.to(x.dtype), stride=2,
                    padding=padding)
    h = conv(x, kernel, None, stride=2, padding=padding)
    return apply_epilogue(h, bias, epilogue, backend=backend, op=op)


_library = torch.library.Library("fastpgan", "FRAGMENT")
torch.library.define("fastpgan::fir_kernel",
                     "(Tensor weight, float[] taps, bool up, float weight_gain) -> Tensor",
                     lib=_library)


@torch.library.impl("fastpgan::fir_kernel", "CompositeImplicitAutograd", lib=_library)
def _fir_kernel(weight: Tensor, taps: list[float], up: bool, weight_gain: float) -> Tensor:
    """The one kernel of filter-then-convolve: the full 2-D convolution of each weight[o, i]
    with the filter (gain 4 when upsampling), times weight_gain; for ``up``, transposed to
    conv_transpose2d's (I, O) layout and flipped, its orientation there."""
    o, i, k, _ = weight.shape
    t = len(taps)
    f = fir_filter(taps, gain=(4.0 if up else 1.0) * weight_gain, dtype=weight.dtype,
                   device=weight.device)
    # correlating the (t - 1)-padded weight with f is the full convolution with flip(f),
    # the filter as the definition's correlation applies it
    kernel = F.conv2d(F.pad(weight.reshape(o * i, 1, k, k), [t - 1] * 4), f[None, None])
    kernel = kernel.reshape(o, i, k + t - 1, k + t - 1)
    return kernel.transpose(0, 1).flip(2, 3) if up else kernel


def fir_upsampled(x: Tensor, taps: Sequence[float], kernel_size: int) -> Tensor:
    """x upsampled by 2 and filtered as the definition does before a k x k convolution
    without padding, which then gives 2H x 2W (NVlabs' padding: (taps + 1) // 2 before,
    (taps - 2) // 2 after, plus k // 2 each side)."""
    taps = even_taps("fir_upsampled", taps)
    pad = kernel_size // 2 + len(taps) // 2
    return upfirdn2d_reference(x, taps, up=2, padding=(pad, pad - 1) * 2, gain=4.0)


def _reference(x: Tensor, weight: Tensor, bias: Tensor | None, *, up: bool,
               taps: Sequence[float], weight_gain: float, epilogue: Epilogue) -> Tensor:
    k = weight.shape[-1]
    weight = (weight * weight_gain).to(x.dtype)  # a float32 weight on half-precision x
    if up:
        h = F.conv2d(fir_upsampled(x, taps, k), weight)
    else:
        h = upfirdn2d_reference(x, taps, padding=(k // 2 + len(taps) // 2 - 1,) * 4)
        h = F.conv2d(h, weight, stride=2)
    return epilogue_reference(h, bias, epilogue)


def even_taps(op: str, taps: Sequence[float]) -> tuple[float, ...]:
    """``taps`` as an even number of floats: an odd-length filter with a zero in front.

    NVlabs pads a filter of length t by ((t + 1) // 2, (t - 2) // 2) when upsampling and
    ((t - 1) // 2, (t - 2) // 2) more when downsampling; for odd t that is the even
    (0, *taps) with the even-length padding this module uses, tap for tap. ValueError
    unless taps is a non-empty list of finite numbers with a nonzero sum.
    """
    try:
        values = tuple(float(t) for t in taps)
    except (TypeError, ValueError):
        values = ()
    if not values or not all(math.isfinite(t) for t in values) or sum(values) == 0:
        raise ValueError(f"{op}: taps must be finite filter taps with a nonzero sum, such as "
                         f"[1, 3, 3, 1]; got {taps!r}")
    return (0.0, *values) if len(values) % 2 else values


def _validate(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, taps: Sequence[float],
              weight_gain: float, epilogue: Epilogue, *, up: bool) -> tuple[float, ...]:
    """The checks of both convolutions; returns the taps as :func:`even_taps` makes them."""
    check_resample_conv(op, x, weight, bias, weight_gain, epilogue)
    taps = even_taps(op, taps)
    if not up and (x.shape[2] % 2 or x.shape[3] % 2):
        raise ValueError(f"{op}: x's height and width must be even, got {tuple(x.shape)}")
    return taps


_DOUBLE_BACKWARD = ("autograd through the ATen convolutions and the kernel fold, and "
                    "bias_act's differentiable backward")
SAMPLE_TAPS = ((1, 3, 3, 1), (1, 1), (1, 2, 1), (1, 2, 4, 3))
"""Filters the samples draw: StyleGAN2's, ProGAN's box, an odd one, an asymmetric one."""


def _upsample_sample(rng: random.Random) -> OpSample:
    taps = rng.choice(SAMPLE_TAPS)
    return OpSample(lambda x, **b: fir_upsample2d(x, taps, **b),
                    lambda x: fir_upsample2d_reference(x, taps),
                    activations(rng, (rng.randint(1, 4), rng.randint(1, 6), *feature_map(rng))))


def _conv_tests(op: Callable[..., Tensor], reference: Callable[..., Tensor],
                down: bool) -> OpTests:
    def sample(rng: random.Random) -> OpSample:
        return conv_sample(rng, op, reference, {"taps": SAMPLE_TAPS}, even=down)

    # their only statistic is their bias_act epilogue's (bias_act's own case)
    return OpTests(sample, lambda f: f(NOT_AN_ACTIVATION, torch.randn(5, 3, 3, 3)),
                   op.__name__, ("tests/test_fir.py",), None)


register(OpInfo("fir_upsample2d", fir_upsample2d, fir_upsample2d_reference, "torch",
                library_ops=(), double_backward="autograd through the ATen convolution",
                tests=OpTests(_upsample_sample, lambda f: f(NOT_AN_ACTIVATION),
                              "fir_upsample2d", ("tests/test_fir.py",), None)))
_LIBRARY_OPS = ("fastpgan::fir_kernel", "fastpgan::bias_act", "fastpgan::bias_act_backward")
register(OpInfo("fir_upsample_conv2d", fir_upsample_conv2d, fir_upsample_conv2d_reference,
                "torch", library_ops=_LIBRARY_OPS, double_backward=_DOUBLE_BACKWARD,
                tests=_conv_tests(fir_upsample_conv2d, fir_upsample_conv2d_reference, False)))
register(OpInfo("fir_conv2d_downsample", fir_conv2d_downsample,
                fir_conv2d_downsample_reference, "torch", library_ops=_LIBRARY_OPS,
                double_backward=_DOUBLE_BACKWARD,
                tests=_conv_tests(fir_conv2d_downsample, fir_conv2d_downsample_reference,
                                  True)))
