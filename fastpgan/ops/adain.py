"""adain: StyleGAN's layer epilogue, noise + bias + leaky ReLU + AdaIN, in one kernel.

Karras et al. 2019, section 2 and appendix C: h = x + noise_weight * noise + bias,
a = leaky_relu(h) when a slope is given, instance normalization of a over H x W per
(n, c) with the biased variance, y = scale[n, c] * a_hat + shift[n, c]. The caller
computes scale and shift from w (StyleGAN: an equalized dense layer, scale = 1 + style).

Fused path: the custom ops ``fastpgan::adain`` and ``fastpgan::adain_backward`` on the
kernels of ``fastpgan.kernels.adain``; every first-order backward runs the fused kernel.

Double backward: the backward op's autograd differentiates the closed-form backward
(:func:`adain_backward_reference`) in plain PyTorch, deliberately: only a penalty on
the generator (StyleGAN2's path length) differentiates AdaIN twice, and fastpgan's
StyleGAN trains with none.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import (
    HalfPrecisionCase,
    OpInfo,
    OpSample,
    OpTests,
    kernel_module,
    register,
    use_fused,
)
from fastpgan.ops.autograd import closed_form_vjp
from fastpgan.ops.checks import check_nonnegative
from fastpgan.ops.dispatch import FusedOp
from fastpgan.ops.layout import dense, memory_format, stat_dtype
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations, feature_map, like


def _per_channel(t: Tensor) -> Tensor:
    return t.view(1, -1, 1, 1)


def _activation(x: Tensor, noise: Tensor | None, noise_weight: Tensor | None,
                bias: Tensor | None, negative_slope: float | None) -> tuple[Tensor, Tensor]:
    """(h, a): the pre-activation and the activation that is normalized."""
    h = x
    if noise is not None:
        h = h + _per_channel(noise_weight).to(h.dtype) * noise.to(h.dtype)
    if bias is not None:
        h = h + _per_channel(bias).to(h.dtype)
    a = h if negative_slope is None else F.leaky_relu(h, negative_slope)
    return h, a


def _instance_norm(a: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(a_hat, rstd): a normalized over H x W per (n, c), biased variance."""
    centered = a - a.mean(dim=(2, 3), keepdim=True)
    rstd = torch.rsqrt(centered.square().mean(dim=(2, 3), keepdim=True) + eps)
    return centered * rstd, rstd


def adain_reference(x: Tensor, scale: Tensor, shift: Tensor, *, noise: Tensor | None = None,
                    noise_weight: Tensor | None = None, bias: Tensor | None = None,
                    negative_slope: float | None = None, eps: float = 1e-8) -> Tensor:
    """The definition of :func:`adain` in plain, differentiable PyTorch, in float32 for
    half-precision x and rounded once to x's dtype, as the kernels do."""
    _validate(x, scale, shift, noise, noise_weight, bias, negative_slope, eps)
    return _reference(x, scale, shift, noise, noise_weight, bias, negative_slope, eps)


def _reference(x: Tensor, scale: Tensor, shift: Tensor, noise: Tensor | None,
               noise_weight: Tensor | None, bias: Tensor | None,
               negative_slope: float | None, eps: float) -> Tensor:
    dtype = stat_dtype(x)
    _, a = _activation(x.to(dtype), noise, noise_weight, bias, negative_slope)
    a_hat, _ = _instance_norm(a, eps)
    y = scale[:, :, None, None].to(dtype) * a_hat + shift[:, :, None, None].to(dtype)
    return y.to(x.dtype)


def adain_backward_reference(grad_y: Tensor, x: Tensor, scale: Tensor,
                             noise: Tensor | None, noise_weight: Tensor | None,
                             bias: Tensor | None, negative_slope: float | None, eps: float
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None,
                                        Tensor | None]:
    """(dx, dscale, dshift, dnoise, dnoise_weight, dbias) in closed form, plain PyTorch.

    With g = scale * dy: da = rstd * (g - mean_p(g) - a_hat * mean_p(g * a_hat)) and
    dh = da * leaky_relu'(h); differentiable again by autograd.
    """
    dh, rows = _closed_form_backward(grad_y, x, scale, noise, noise_weight, bias,
                                     negative_slope, eps)
    return (dh.to(x.dtype), *_parameter_grads(dh, rows, noise, noise_weight, bias))


def _closed_form_backward(grad_y: Tensor, x: Tensor, scale: Tensor, noise: Tensor | None,
                          noise_weight: Tensor | None, bias: Tensor | None,
                          negative_slope: float | None, eps: float) -> tuple[Tensor, Tensor]:
    """(dh, rows): dL/dh in the statistics' dtype and, per row (n, c), the sums the fused
    backward also yields, rows[k, n, c] for k = 0 sum(dy), 1 sum(dy * a_hat), 2 sum(dh),
    3 sum(dh * noise)."""
    dtype = stat_dtype(x)
    h, a = _activation(x.to(dtype), noise, noise_weight, bias, negative_slope)
    a_hat, rstd = _instance_norm(a, eps)
    dy = grad_y.to(dtype)
    g = scale[:, :, None, None].to(dtype) * dy
    da = rstd * (g - g.mean(dim=(2, 3), keepdim=True)
                 - a_hat * (g * a_hat).mean(dim=(2, 3), keepdim=True))
    dh = da if negative_slope is None else torch.where(h > 0, da, da * negative_slope)
    noise_sums = (torch.zeros_like(dh[:, :, 0, 0]) if noise is None
                  else (dh * noise.to(dtype)).sum(dim=(2, 3)))
    rows = torch.stack([dy.sum(dim=(2, 3)), (dy * a_hat).sum(dim=(2, 3)), dh.sum(dim=(2, 3)),
                        noise_sums])
    return dh, rows


def _parameter_grads(dh: Tensor, rows: Tensor, noise: Tensor | None,
                     noise_weight: Tensor | None, bias: Tensor | None, *,
                     with_dnoise: bool = True
                     ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(dscale, dshift, dnoise, dnoise_weight, dbias) from dL/dh and the per-row sums;
    dnoise, a pass over dh, only ``with_dnoise``."""
    dnoise = dnoise_weight = dbias = None
    if noise is not None:
        if with_dnoise:
            dnoise = (dh * _per_channel(noise_weight).to(dh.dtype)).sum(dim=1, keepdim=True)
            dnoise = dnoise.sum(dim=0, keepdim=True) if noise.shape[0] == 1 else dnoise
        dnoise_weight = rows[3].sum(0)
    if bias is not None:
        dbias = rows[2].sum(0)
    return rows[1], rows[0], dnoise, dnoise_weight, dbias


def adain(x: Tensor, scale: Tensor, shift: Tensor, *, noise: Tensor | None = None,
          noise_weight: Tensor | None = None, bias: Tensor | None = None,
          negative_slope: float | None = None, eps: float = 1e-8,
          backend: str | None = None) -> Tensor:
    """Noise injection, bias, leaky ReLU and adaptive instance normalization in one pass.

    Args:
        x: (N, C, H, W), NCHW or channels_last; the output keeps its dtype and layout.
        scale, shift: (N, C) style coefficients (StyleGAN: scale = 1 + style).
        noise: (N, 1, H, W) or (1, 1, H, W) (one map for the whole batch), with
            noise_weight (C,); both or neither.
        bias: (C,) or None.
        negative_slope: leaky ReLU slope (StyleGAN: 0.2), or None for no activation.
        eps: added to the variance.
        backend: "auto", "fused", "reference" or None for the process default.
    """
    _validate(x, scale, shift, noise, noise_weight, bias, negative_slope, eps)
    if not use_fused("adain", x, backend):
        return _reference(x, scale, shift, noise, noise_weight, bias, negative_slope, eps)
    y, _, _ = _adain_op(
        x, scale, shift, noise, noise_weight, bias,
        None if negative_slope is None else float(negative_slope), float(eps))
    return y


def _validate(x: Tensor, scale: Tensor, shift: Tensor, noise: Tensor | None,
              noise_weight: Tensor | None, bias: Tensor | None, negative_slope: float | None,
              eps: float) -> None:
    if x.dim() != 4:
        raise ValueError(f"adain: x must be (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"adain: x must be a floating-point tensor, got {x.dtype}")
    n, c, h, w = x.shape
    for name, t in (("scale", scale), ("shift", shift)):
        if tuple(t.shape) != (n, c):
            raise ValueError(f"adain: {name} must have shape ({n}, {c}) for x of shape "
                             f"{tuple(x.shape)}, got {tuple(t.shape)}")
    if (noise is None) != (noise_weight is None):
        raise ValueError("adain: noise and noise_weight must be given together")
    if noise is not None and (noise.dim() != 4 or noise.shape[0] not in (1, n)
                              or tuple(noise.shape[1:]) != (1, h, w)):
        raise ValueError(f"adain: noise must have shape ({n}, 1, {h}, {w}) or (1, 1, {h}, {w}), "
                         f"got {tuple(noise.shape)}")
    for name, t in (("noise_weight", noise_weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"adain: {name} must have shape ({c},), got {tuple(t.shape)}")
    for name, t in (("scale", scale), ("shift", shift), ("noise", noise),
                    ("noise_weight", noise_weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"adain: {name} is on {t.device}, x on {x.device}")
    if negative_slope is not None:
        check_nonnegative("adain", "negative_slope", negative_slope)
    check_nonnegative("adain", "eps", eps)


# ---------------------------------------------------------------- fused path (custom ops)


def _adain_impl(x: Tensor, scale: Tensor, shift: Tensor, noise: Tensor | None,
                noise_weight: Tensor | None, bias: Tensor | None, slope: float | None,
                eps: float) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous(memory_format=memory_format(x))
    y, mean, rstd = _forward_outputs(x)
    if x.numel():
        kernel_module("adain").adain_forward(
            x, scale.contiguous(), shift.contiguous(), dense(noise), dense(noise_weight),
            dense(bias), y, mean, rstd, slope=slope, eps=eps)
    else:
        mean.zero_(), rstd.zero_()
    return y, mean, rstd


def _forward_outputs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """y laid out like x, and the (N, C) row statistics mean and rstd."""
    y = torch.empty_like(x.contiguous(memory_format=memory_format(x)))
    stats = x.new_empty(x.shape[:2], dtype=stat_dtype(x))
    return y, stats, torch.empty_like(stats)


def _adain_fake(x, scale, shift, noise, noise_weight, bias, slope, eps):
    return _forward_outputs(x)


def _adain_setup(ctx, inputs, output) -> None:
    x, scale, shift, noise, noise_weight, bias, slope, eps = inputs
    _, mean, rstd = output
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, scale, noise, noise_weight, bias, mean, rstd)
    ctx.config = (slope, eps)
    ctx.dtypes = (scale.dtype, shift.dtype)


def _adain_grad(ctx, grad_y: Tensor | None, grad_mean: Tensor | None, grad_rstd: Tensor | None):
    x, scale, noise, noise_weight, bias, mean, rstd = ctx.saved_tensors
    if grad_y is None:
        return None, None, None, None, None, None, None, None
    dx, rows = _adain_backward_op(grad_y, x, scale, noise, noise_weight, bias, mean, rstd,
                                  *ctx.config)
    dscale, dshift, dnoise, dnoise_weight, dbias = _parameter_grads(
        dx, rows, noise, noise_weight, bias, with_dnoise=ctx.needs_input_grad[3])
    return (dx, dscale.to(ctx.dtypes[0]), dshift.to(ctx.dtypes[1]),
            None if dnoise is None else dnoise.to(noise.dtype),
            None if dnoise_weight is None else dnoise_weight.to(noise_weight.dtype),
            None if dbias is None else dbias.to(bias.dtype), None, None)


def _adain_backward_impl(grad_y: Tensor, x: Tensor, scale: Tensor, noise: Tensor | None,
                         noise_weight: Tensor | None, bias: Tensor | None, mean: Tensor,
                         rstd: Tensor, slope: float | None, eps: float
                         ) -> tuple[Tensor, Tensor]:
    x = x.contiguous(memory_format=memory_format(x))
    grad_y = grad_y.contiguous(memory_format=memory_format(x))
    dx, rows = _backward_outputs(x)
    if x.numel():
        kernel_module("adain").adain_backward(
            grad_y, x, scale.contiguous(), dense(noise), dense(noise_weight), dense(bias),
            mean, rstd, dx, rows, slope=slope)
    else:
        rows.zero_()
    return dx, rows


def _backward_outputs(x: Tensor) -> tuple[Tensor, Tensor]:
    """dx laid out like x, and the (4, N, C) per-row sums."""
    dx = torch.empty_like(x.contiguous(memory_format=memory_format(x)))
    return dx, x.new_empty((4, *x.shape[:2]), dtype=stat_dtype(x))


def _adain_backward_fake(grad_y, x, scale, noise, noise_weight, bias, mean, rstd, slope, eps):
    return _backward_outputs(x)


def _backward_setup(ctx, inputs, output) -> None:
    grad_y, x, scale, noise, noise_weight, bias, _, _, slope, eps = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(grad_y, x, scale, noise, noise_weight, bias)
    ctx.config = (slope, eps)


def _backward_grad(ctx, grad_dx: Tensor | None, grad_rows: Tensor | None):
    """The double backward: autograd through the closed-form backward (the mean and rstd
    inputs are functions of x, whose gradient this already holds in full)."""
    slope, eps = ctx.config

    def closed_form(grad_y, x, scale, noise, noise_weight, bias):
        dh, rows = _closed_form_backward(grad_y, x, scale, noise, noise_weight, bias, slope,
                                         eps)
        return dh.to(x.dtype), rows

    grads = closed_form_vjp(closed_form, ctx.saved_tensors, ctx.needs_input_grad[:6],
                            (grad_dx, grad_rows))
    return (*grads, None, None, None, None)


_adain_backward_op = FusedOp("adain_backward", _adain_backward_impl, fake=_adain_backward_fake,
                             setup_context=_backward_setup, backward=_backward_grad)
_adain_op = FusedOp("adain", _adain_impl, fake=_adain_fake, setup_context=_adain_setup,
                    backward=_adain_grad)

def _sample(rng: random.Random) -> OpSample:
    n, c, (h, w) = rng.randint(1, 4), rng.randint(1, 24), feature_map(rng)
    while h * w == 2:  # centred, two pixels are d and -d: a gradient of pure cancellation
        h, w = feature_map(rng)
    if rng.random() < 0.2:
        h, w = rng.randint(65, 80), rng.randint(64, 70)  # rows longer than one tile
    scale, shift = 1 + 0.5 * torch.randn(n, c), torch.randn(n, c)
    kwargs = dict(bias=torch.randn(c) if rng.random() < 0.7 else None,
                  negative_slope=rng.choice([None, 0.2]))
    if rng.random() < 0.7:
        kwargs.update(noise=torch.randn(rng.choice([1, n]), 1, h, w), noise_weight=torch.randn(c))
    return OpSample(lambda x, **b: adain(x, scale, shift, **kwargs, **b),
                    lambda x: adain_reference(x, like(scale, x), like(shift, x),
                                              **{k: like(v, x) for k, v in kwargs.items()}),
                    activations(rng, (n, c, h, w)))


def _half_precision() -> HalfPrecisionCase:
    x = torch.randn(2, 4, 3, 3)
    x[0, 0] = 1.5  # a constant map: variance 0
    return HalfPrecisionCase(lambda x, s, t: adain_reference(x, s, t, negative_slope=0.2),
                             (x, torch.randn(2, 4), torch.randn(2, 4)))


register(OpInfo(
    "adain", adain, adain_reference, "triton", kernels="adain",
    library_ops=("fastpgan::adain", "fastpgan::adain_backward"),
    double_backward="autograd through the closed-form backward (PyTorch): only a "
                    "generator penalty would need it fused",
    tests=OpTests(_sample,
                  lambda f: f(NOT_AN_ACTIVATION, torch.randn(2, 3), torch.randn(2, 3)), "adain",
                  ("tests/test_adain.py",), _half_precision)))
