"""modulated_conv2d: StyleGAN2's weight modulation and demodulation (Karras et al. 2020, 2.2).

Definition: w'[n, o, i] = weight[o, i] * styles[n, i]; with demodulation each w'[n, o]
is divided by sqrt(sum over (i, kh, kw) of w'[n, o]^2 + eps); sample n is convolved with
its own w'[n]. :func:`modulated_conv2d_reference` does exactly that, as one grouped
convolution over N modulated weight copies (N x O x I x k x k values materialized). With
``up``, x is first FIR-upsampled by 2 as :mod:`fastpgan.ops.fir` defines it (StyleGAN2's
upsampling layers; NVlabs' ``modulated_conv2d(..., up=2)``).

Fused path: the same algebra the other way round, the ATen-composite library op
``fastpgan::modulated_conv2d``. Scaling the weight's input channels by styles[n] equals
scaling x's channels, and the demodulation factor is one per (n, o), so

    y = conv2d(x * styles[n, :, None, None], weight) * d[n, :, None, None],
    d[n, o] = (sum_i styles[n, i]^2 * sum_(kh, kw) weight[o, i]^2 + eps)^(-1/2),

one convolution with the shared weight (cuDNN's best case, a batch of N) and d from a
small (N x I) @ (I x O) product, with no per-sample weights and no kernel of ours. With
``up`` the convolution is :func:`fastpgan.ops.fir_upsample_conv2d`'s one transposed
convolution, the filter folded into its kernel.

Double backward: autograd through the composite's ATen operations, at any order; its
fake tensors come from the same decomposition.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import HalfPrecisionCase, OpInfo, OpSample, OpTests, register, use_fused
from fastpgan.ops.checks import check_conv, check_nonnegative
from fastpgan.ops.epilogue import Epilogue
from fastpgan.ops.fir import FIR_TAPS, fir_resample_conv2d, fir_upsampled
from fastpgan.ops.layout import stat_dtype
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations, feature_map, like


def modulated_conv2d_reference(x: Tensor, weight: Tensor, styles: Tensor, *,
                               demodulate: bool = True, eps: float = 1e-8,
                               padding: int | None = None, up: bool = False,
                               taps: Sequence[float] = FIR_TAPS) -> Tensor:
    """The definition: per-sample modulated (and demodulated) weights, grouped conv (after
    FIR upsampling for ``up``); the weights in float32 for half-precision x, the
    convolution in x's dtype."""
    padding = _validate(x, weight, styles, eps, padding, up)
    return _reference(x, weight, styles, demodulate, eps, padding, up, taps)


def _reference(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool, eps: float,
               padding: int, up: bool, taps: Sequence[float]) -> Tensor:
    if up:
        x, padding = fir_upsampled(x, taps, weight.shape[-1]), 0
    n, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    f = stat_dtype(x)
    weights = weight.to(f)[None] * styles[:, None, :, None, None].to(f)  # (N, O, I, k, k)
    if demodulate:
        weights = weights * torch.rsqrt(weights.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    if n == 0:  # no groups to convolve: the empty output, as the rewrite gives it
        return F.conv2d(x, weight.to(x.dtype), padding=padding)
    y = F.conv2d(x.reshape(1, n * i, h, w), weights.reshape(n * o, i, kh, kw).to(x.dtype),
                 padding=padding, groups=n)
    return y.reshape(n, o, *y.shape[2:])


def demodulation(weight: Tensor, styles: Tensor, eps: float = 1e-8) -> Tensor:
    """d[n, o] = (sum_i styles[n, i]^2 * sum_(kh, kw) weight[o, i]^2 + eps)^(-1/2), in
    the inputs' dtype even under autocast (a float16 product can overflow, and float16 has
    no 1e-8)."""
    with torch.autocast(weight.device.type, enabled=False):
        return torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool = True,
                     eps: float = 1e-8, padding: int | None = None, up: bool = False,
                     taps: Sequence[float] = FIR_TAPS, backend: str | None = None) -> Tensor:
    """StyleGAN2's modulated convolution.

    Args:
        x: (N, I, H, W), NCHW or channels_last.
        weight: (O, I, kh, kw), odd square kernel, shared by the batch.
        styles: (N, I), the per-sample input-channel scales (StyleGAN2: an affine map of w).
        demodulate: normalize each output channel's modulated weight to unit norm.
        eps: added under the demodulation's square root.
        padding: default k // 2 ("same" size; the only one ``up`` takes).
        up: FIR-upsample x by 2 first (output 2H x 2W), with the filter ``taps`` (an even
            number of them; default StyleGAN2's [1, 3, 3, 1]). The weight is correlated,
            as in ``F.conv2d``: NVlabs' upsampling layers convolve, so give their weights
            flipped (``weight.flip(2, 3)``).
        backend: "auto" (the rewrite on CUDA tensors, the definition elsewhere), "fused"
            (always the rewrite) or "reference".
    """
    padding = _validate(x, weight, styles, eps, padding, up)
    if not use_fused("modulated_conv2d", x, backend):
        return _reference(x, weight, styles, demodulate, eps, padding, up, taps)
    return torch.ops.fastpgan.modulated_conv2d(x, weight, styles, demodulate, float(eps),
                                               int(padding), up, [float(t) for t in taps])


_library = torch.library.Library("fastpgan", "FRAGMENT")
torch.library.define("fastpgan::modulated_conv2d",
                     "(Tensor x, Tensor weight, Tensor styles, bool demodulate, float eps, "
                     "int padding, bool up=False, float[] taps=[]) -> Tensor", lib=_library)


@torch.library.impl("fastpgan::modulated_conv2d", "CompositeImplicitAutograd", lib=_library)
def _modulated_conv2d_rewrite(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool,
                              eps: float, padding: int, up: bool = False,
                              taps: Sequence[float] = ()) -> Tensor:
    xs = x * styles[:, :, None, None].to(x.dtype)
    if up:
        y = fir_resample_conv2d(xs, weight.to(x.dtype), None, up=True, taps=taps,
                                weight_gain=1.0, epilogue=Epilogue(), backend="fused")
    else:
        y = F.conv2d(xs, weight.to(x.dtype), padding=padding)
    if demodulate:
        f = stat_dtype(x)
        y = y * demodulation(weight.to(f), styles.to(f), eps)[:, :, None, None].to(y.dtype)
    return y


def _validate(x: Tensor, weight: Tensor, styles: Tensor, eps: float, padding: int | None,
              up: bool) -> int:
    """The padding to use, after raising ValueError for a bad argument."""
    check_conv("modulated_conv2d", x, weight)
    same = weight.shape[-1] // 2
    if up and padding not in (None, same):
        raise ValueError(f"modulated_conv2d: up=True takes only the 'same' padding "
                         f"{same}, got {padding}")
    if tuple(styles.shape) != (x.shape[0], x.shape[1]):
        raise ValueError(f"modulated_conv2d: styles must have shape ({x.shape[0]}, "
                         f"{x.shape[1]}), got {tuple(styles.shape)}")
    check_nonnegative("modulated_conv2d", "eps", eps)
    return same if padding is None else padding


def _sample(rng: random.Random) -> OpSample:
    n, i, o, k = rng.randint(1, 4), rng.randint(1, 12), rng.randint(1, 12), rng.choice([1, 3])
    weight, styles = torch.randn(o, i, k, k), torch.randn(n, i)
    demodulate = rng.random() < 0.7
    return OpSample(lambda x, **b: modulated_conv2d(x, weight, styles, demodulate=demodulate,
                                                    **b),
                    lambda x: modulated_conv2d_reference(x, like(weight, x), like(styles, x),
                                                         demodulate=demodulate),
                    activations(rng, (n, i, *feature_map(rng))))


def _half_precision() -> HalfPrecisionCase:
    """A zero modulation (styles of sample 0 all 0: the demodulation's sum is 0); the
    styles' gradient is the reference's grouped convolution's weight gradient."""
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    styles[0] = 0
    return HalfPrecisionCase(modulated_conv2d_reference, (x, weight, styles),
                             weight_gradients=(2,))


register(OpInfo(
    "modulated_conv2d", modulated_conv2d, modulated_conv2d_reference, "torch",
    library_ops=("fastpgan::modulated_conv2d",),
    double_backward="autograd through the composite's ATen operations",
    tests=OpTests(_sample,
                  lambda f: f(NOT_AN_ACTIVATION, torch.randn(5, 3, 3, 3), torch.randn(2, 3)),
                  "modulated_conv2d", ("tests/test_modulated_conv.py",), _half_precision)))
