"""bias_act: the layer epilogue bias -> activation -> gain -> clamp [-> pixel norm] in one pass.

This is ProGAN's generator epilogue (conv -> bias -> leaky ReLU -> pixel norm, Karras et
al. 2017, sections 4.1-4.2) and its discriminator's bias + leaky ReLU. The fused path is
two ``torch.library`` custom ops, ``fastpgan::bias_act`` and
``fastpgan::bias_act_backward``, so ``torch.compile`` runs through them without a graph
break:

- forward saves only the output y (and, with pixel norm, the per-pixel inverse norm r);
- the backward op is itself differentiable: without pixel norm its derivative is the
  same backward kernel applied to the incoming gradient (the activation's derivative is
  piecewise constant), which gives WGAN-GP and R1 a fused double backward at any order;
  with pixel norm the second-order terms are plain PyTorch expressions (below).

Gradients are read off y: an element whose value lies within one rounding step of
``clamp`` counts as clamped (``clamp_threshold``). y is stored rounded to its dtype, so
a clamped value can read back just below ``clamp``; the price is that an unclamped value
within that band (relative width 2^-7 in bfloat16, 2^-19 in float32) gets no gradient.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import load_kernels, use_fused
from fastpgan.extension import load_extension
from fastpgan.ops.layout import memory_format, stat_dtype

ACTIVATIONS = ("linear", "relu", "lrelu")


def pixel_norm_reference(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean over dim 1 of x^2 + eps), in plain PyTorch (Karras et al. 2017, 4.2).

    Computed in float32 for half-precision x (float16 has no 1e-8: a zero vector would
    give 0 * inf) and rounded once to x's dtype, as the kernels do.
    """
    h = x.to(stat_dtype(x))
    return (h * torch.rsqrt(h.square().mean(dim=1, keepdim=True) + eps)).to(x.dtype)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, -1) + (1,) * (x.dim() - 2)


def bias_act_reference(x: Tensor, bias: Tensor | None = None, *, act: str = "lrelu",
                       negative_slope: float = 0.2, gain: float = 1.0,
                       clamp: float | None = None, pixel_norm: bool = False,
                       eps: float = 1e-8) -> Tensor:
    """The definition of :func:`bias_act` in plain, twice-differentiable PyTorch, in
    float32 for half-precision x and rounded once to x's dtype, as the kernels do."""
    h = x.to(stat_dtype(x))
    if bias is not None:
        h = h + bias.to(h.dtype).view(_channel_shape(x))
    if act == "lrelu":
        h = F.leaky_relu(h, negative_slope)
    elif act == "relu":
        h = F.relu(h)
    if gain != 1.0:
        h = h * gain
    if clamp is not None:
        h = h.clamp(-clamp, clamp)
    return (pixel_norm_reference(h, eps) if pixel_norm else h).to(x.dtype)


def bias_act(x: Tensor, bias: Tensor | None = None, *, act: str = "lrelu",
             negative_slope: float = 0.2, gain: float = 1.0, clamp: float | None = None,
             pixel_norm: bool = False, eps: float = 1e-8, backend: str | None = None) -> Tensor:
    """y = clamp(act(x + bias) * gain, -clamp, clamp), pixel-normalized over dim 1 if asked.

    Args:
        x: (N, C, ...) activations; NCHW or channels_last, float32/float16/bfloat16
            (float64 too). The output keeps x's dtype and memory format.
        bias: (C,) or None.
        act: "linear", "relu" or "lrelu" (leaky ReLU with ``negative_slope``).
        negative_slope: slope of leaky ReLU for negative inputs, >= 0.
        gain: positive factor applied after the activation.
        clamp: if given, the result is clamped to [-clamp, clamp] (before pixel norm).
        pixel_norm: divide by sqrt(mean over channels of the square + eps) per pixel.
        eps: pixel norm's epsilon.
        backend: "auto", "fused", "reference" or None for the process default.
    """
    _validate(x, bias, act, negative_slope, gain, clamp, eps)
    if not use_fused("bias_act", x, backend):
        return bias_act_reference(x, bias, act=act, negative_slope=negative_slope, gain=gain,
                                  clamp=clamp, pixel_norm=pixel_norm, eps=eps)
    return fused_bias_act(x, bias, act=act, negative_slope=negative_slope, gain=gain,
                          clamp=clamp, pixel_norm=pixel_norm, eps=eps, provider="triton")


def fused_bias_act(x: Tensor, bias: Tensor | None, *, act: str, negative_slope: float,
                   gain: float, clamp: float | None, pixel_norm: bool, eps: float,
                   provider: str) -> Tensor:
    """The fused path of :func:`bias_act` (arguments checked by the caller).

    provider names the kernels: "triton" (kernels/bias_act.py) or "extension" (the C++ /
    CUDA epilogue of :mod:`fastpgan.extension`, which the resampling convolutions use).
    """
    if bias is not None and bias.device != x.device:
        raise ValueError(f"bias_act: bias is on {bias.device}, x on {x.device}")
    slope = 0.0 if act == "relu" else float(negative_slope)
    y, _ = torch.ops.fastpgan.bias_act(x, bias, act != "linear", slope, float(gain),
                                      None if clamp is None else float(clamp),
                                      pixel_norm, float(eps), provider)
    return y


def _kernels(provider: str) -> types.ModuleType:
    """The module whose bias_act_forward / bias_act_backward launch the kernels."""
    return load_kernels().bias_act if provider == "triton" else load_extension()


def _validate(x: Tensor, bias: Tensor | None, act: str, negative_slope: float, gain: float,
              clamp: float | None, eps: float) -> None:
    if x.dim() < 2:
        raise ValueError(f"bias_act: x must be (N, C, ...) with at least 2 dimensions, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"bias_act: x must be a floating-point tensor, got {x.dtype}")
    if bias is not None and (bias.dim() != 1 or bias.numel() != x.shape[1]):
        raise ValueError(f"bias_act: bias must have shape ({x.shape[1]},) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(bias.shape)}")
    check_epilogue("bias_act", act, negative_slope, gain, clamp, eps)


def check_epilogue(op: str, act: str, negative_slope: float, gain: float, clamp: float | None,
                   eps: float) -> None:
    """Raises ValueError, naming ``op``, for epilogue arguments outside their domain."""
    if act not in ACTIVATIONS:
        raise ValueError(f"{op}: act must be one of {ACTIVATIONS}, got {act!r}")
    if negative_slope < 0:
        raise ValueError(f"{op}: negative_slope must be >= 0, got {negative_slope}")
    if gain <= 0:
        raise ValueError(f"{op}: gain must be > 0, got {gain}")
    if clamp is not None and clamp <= 0:
        raise ValueError(f"{op}: clamp must be > 0 or None, got {clamp}")
    if eps < 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")


# ---------------------------------------------------------------- fused path (custom ops)


def _forward_buffers(x: Tensor, pixel_norm: bool) -> tuple[Tensor, Tensor, Tensor]:
    """x made dense in its own memory format, and the outputs y and r to fill."""
    x = x.contiguous(memory_format=memory_format(x))
    stat_shape = (x.shape[0], 1, *x.shape[2:]) if pixel_norm else (0,)
    return x, torch.empty_like(x), x.new_empty(stat_shape, dtype=stat_dtype(x))


@torch.library.custom_op("fastpgan::bias_act", mutates_args=())
def _bias_act_op(x: Tensor, bias: Tensor | None, lrelu: bool, slope: float, gain: float,
                 clamp: float | None, pixel_norm: bool, eps: float,
                 provider: str = "triton") -> tuple[Tensor, Tensor]:
    x, y, r = _forward_buffers(x, pixel_norm)
    if x.numel():
        _kernels(provider).bias_act_forward(
            x, None if bias is None else bias.contiguous(), y, r if pixel_norm else None,
            act=int(lrelu), slope=slope, gain=gain, clamp=clamp, eps=eps)
    return y, r


@_bias_act_op.register_fake
def _bias_act_fake(x, bias, lrelu, slope, gain, clamp, pixel_norm, eps, provider="triton"):
    _, y, r = _forward_buffers(x, pixel_norm)
    return y, r


def _bias_act_setup(ctx, inputs, output) -> None:
    _, bias, lrelu, slope, gain, clamp, pixel_norm, _, provider = inputs
    y, r = output
    # Unused outputs (r, outside double backward) get None rather than a zero-filled grad.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(y, r if pixel_norm else None)
    ctx.epilogue = (lrelu, slope, gain, clamp)
    ctx.provider = provider
    ctx.bias_dtype = None if bias is None else bias.dtype


def _bias_act_grad(ctx, grad_y: Tensor | None, grad_r: Tensor | None):
    y, r = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(y)
    if r is None:
        grad_r = None
    dx, db = torch.ops.fastpgan.bias_act_backward(grad_y, y, r, grad_r,
                                                  ctx.bias_dtype is not None, *ctx.epilogue,
                                                  ctx.provider)
    db = None if ctx.bias_dtype is None else db.to(ctx.bias_dtype)
    return dx, db, None, None, None, None, None, None, None


_bias_act_op.register_autograd(_bias_act_grad, setup_context=_bias_act_setup)


def _backward_buffers(grad_y: Tensor, y: Tensor, bias_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
    """grad_y in y's layout, and the outputs dx and db to fill."""
    grad_y = grad_y.contiguous(memory_format=memory_format(y))
    db = y.new_empty((y.shape[1],) if bias_grad else (0,), dtype=stat_dtype(y))
    return grad_y, torch.empty_like(y), db


@torch.library.custom_op("fastpgan::bias_act_backward", mutates_args=())
def _bias_act_backward_op(grad_y: Tensor, y: Tensor, r: Tensor | None, grad_r: Tensor | None,
                          bias_grad: bool, lrelu: bool, slope: float, gain: float,
                          clamp: float | None, provider: str = "triton") -> tuple[Tensor, Tensor]:
    # The kernel launcher returns the bias gradient itself; only an empty y needs a buffer.
    grad_y, dx, db = _backward_buffers(grad_y, y, bias_grad and y.numel() == 0)
    if y.numel() == 0:
        return dx, db.zero_()
    bias_grad_sum = _kernels(provider).bias_act_backward(
        grad_y, y, r, None if grad_r is None else grad_r.contiguous(), dx,
        with_bias_grad=bias_grad, act=int(lrelu), slope=slope, gain=gain,
        clamp=None if clamp is None else clamp_threshold(clamp, y.dtype))
    return dx, db if bias_grad_sum is None else bias_grad_sum


@_bias_act_backward_op.register_fake
def _bias_act_backward_fake(grad_y, y, r, grad_r, bias_grad, lrelu, slope, gain, clamp,
                            provider="triton"):
    _, dx, db = _backward_buffers(grad_y, y, bias_grad)
    return dx, db


def _backward_setup(ctx, inputs, output) -> None:
    grad_y, y, r, grad_r, bias_grad, lrelu, slope, gain, clamp, provider = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(grad_y, y, r, grad_r)
    ctx.epilogue = (lrelu, slope, gain, clamp)
    ctx.provider = provider
    ctx.bias_grad = bias_grad


def clamp_threshold(clamp: float, dtype: torch.dtype) -> float:
    """The |y| (before pixel norm) from which a stored output of this dtype counts as clamped.

    One rounding step of the storage type below clamp, and never closer than 16 steps
    of the arithmetic type, which covers the few ulps by which the compiled kernel's
    recomputed pixel norm may differ from the one that scaled y.
    """
    arithmetic = torch.float64 if dtype == torch.float64 else torch.float32
    return clamp * (1 - max(torch.finfo(dtype).eps, 16 * torch.finfo(arithmetic).eps))


def _act_derivative(y: Tensor, r: Tensor | None, lrelu: bool, slope: float, gain: float,
                    clamp: float | None, stored: torch.dtype) -> Tensor:
    """d clamp(act(h) * gain) / dh as a function of the output y (constant a.e.).

    stored is the dtype y was saved in, which sets how close to clamp counts as clamped.
    """
    d = torch.where(y > 0, gain, gain * slope) if lrelu else torch.full_like(y, gain)
    if clamp is not None:
        clamp = clamp_threshold(clamp, stored)
        limit = clamp if r is None else clamp * r
        d = torch.where(y.abs() < limit, d, 0.0)
    return d


def _backward_grad(ctx, g_dx: Tensor | None, g_db: Tensor | None):
    """Vector-Jacobian product of the backward op: the double backward of bias_act."""
    grad_y, y, r, grad_r = ctx.saved_tensors
    g = torch.zeros_like(y) if g_dx is None else g_dx
    if ctx.bias_grad and g_db is not None:
        g = g + g_db.to(g.dtype).view(_channel_shape(y))
    if r is None:
        # dx = D(y) * grad_y with D piecewise constant: linear in grad_y, flat in y.
        d_grad_y, _ = torch.ops.fastpgan.bias_act_backward(g, y, None, None, False,
                                                           *ctx.epilogue, ctx.provider)
        return d_grad_y, None, None, None, None, None, None, None, None, None
    # With pixel norm, dx = D * r * (dy - y * (q + r * g_r / C)), q = mean_c(dy * y).
    # For L = sum(g * dx) and u = D * g, s = sum_c(u * y), t = sum_c(u * dy):
    #   L = r t - r s q - r^2 s g_r / C, differentiated by hand below (D constant a.e.).
    f = r.dtype
    dy, yf, gf = grad_y.to(f), y.to(f), g.to(f)
    c = y.shape[1]
    gr = torch.zeros_like(r) if grad_r is None else grad_r
    u = _act_derivative(yf, r, *ctx.epilogue, stored=y.dtype).detach() * gf
    s = (u * yf).sum(1, keepdim=True)
    t = (u * dy).sum(1, keepdim=True)
    q = (dy * yf).sum(1, keepdim=True) / c
    d_grad_y = r * (u - yf * s / c)
    d_y = -r * (u * q + s * dy / c) - r * r * u * gr / c
    d_r = t - s * q - 2 * r * s * gr / c
    d_grad_r = None if grad_r is None else -r * r * s / c
    return (d_grad_y.to(grad_y.dtype), d_y.to(y.dtype), d_r, d_grad_r,
            None, None, None, None, None, None)


_bias_act_backward_op.register_autograd(_backward_grad, setup_context=_backward_setup)
