"""bias_act: the layer epilogue bias -> activation -> gain -> clamp [-> pixel norm] in one pass.

This is ProGAN's generator epilogue (conv -> bias -> leaky ReLU -> pixel norm, Karras et
al. 2017, sections 4.1-4.2) and its discriminator's bias + leaky ReLU, with StyleGAN2's
gain and clamp (NVlabs' bias_act). Its settings are one value, :class:`Epilogue`, which
the layers hold and the resampling convolutions take.

Fused path: the custom ops ``fastpgan::bias_act`` (y and, with pixel norm, the per-pixel
inverse norm r) and ``fastpgan::bias_act_backward`` (dx and the bias gradient from the
saved y and r), on the Triton kernels of ``fastpgan.kernels.bias_act`` or, for the
resampling convolutions, the C++/CUDA extension's epilogue.

The activation is a leaky ReLU (linear and ReLU being slopes 1 and 0), or tanh or the
logistic sigmoid (DCGAN's and pix2pix's output layers; not with pixel norm).

Double backward: the backward op is itself differentiable. Without pixel norm its
derivative with respect to the incoming gradient is the same backward kernel, fused at
any order; a leaky ReLU's derivative is piecewise constant, and tanh's and the sigmoid's
add one closed-form term to y's gradient. With pixel norm the second-order terms are
closed-form PyTorch expressions (``_backward_grad``).

Gradients are read off y: an element whose value lies within one rounding step of
``clamp`` counts as clamped (``clamp_threshold``). y is stored rounded to its dtype, so
a clamped value can read back just below ``clamp``; the price is that an unclamped value
within that band (relative width 2^-7 in bfloat16, 2^-19 in float32) gets no gradient.
"""

from __future__ import annotations

import dataclasses
import math
import random
import types
from dataclasses import dataclass

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
from fastpgan.extension import load_extension
from fastpgan.ops.checks import check_nonnegative
from fastpgan.ops.dispatch import FusedOp
from fastpgan.ops.layout import memory_format, stat_dtype
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations, feature_map, like


@dataclass(frozen=True)
class Activation:
    """An activation as the kernels take it.

    Attributes:
        code: the kernels' ACT (``fastpgan.kernels.common``): 0 leaky ReLU, 1 tanh, 2
            the logistic sigmoid.
        slope: leaky ReLU's slope for negative inputs (1: the identity, 0: ReLU); None:
            the caller's ``negative_slope``.
    """

    code: int
    slope: float | None = None

    @property
    def piecewise_linear(self) -> bool:
        """Whether the derivative is piecewise constant (a leaky ReLU)."""
        return self.code == 0


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(0, 1.0), "relu": Activation(0, 0.0), "lrelu": Activation(0),
    "tanh": Activation(1, 0.0), "sigmoid": Activation(2, 0.0)}
"""Every activation a fused op takes, by name."""


def check_activation(op: str, act: str, negative_slope: float) -> None:
    """Raises ValueError naming ``op`` for an unknown activation or a negative_slope
    outside [0, inf)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"{op}: the activation must be one of {tuple(ACTIVATIONS)}, got "
                         f"{act!r}")
    check_nonnegative(op, "negative_slope", negative_slope)


def activation_slope(act: str, negative_slope: float) -> float:
    """The slope for negative inputs the kernels take for ``act`` (1 for linear, 0 for
    ReLU and for the smooth activations, which ignore it)."""
    slope = ACTIVATIONS[act].slope
    return float(negative_slope if slope is None else slope)


def activation_derivative_reference(h: Tensor, a: Tensor, act: str,
                                    negative_slope: float) -> Tensor:
    """d act(h) / dh given a = act(h), as the kernels compute it: from a for tanh
    (1 - a^2) and sigmoid (a (1 - a)), differentiable again; from the sign of h for leaky
    ReLU (its slope at 0), a constant."""
    code = ACTIVATIONS[act].code
    if code == 1:
        return 1 - a * a
    if code == 2:
        return a * (1 - a)
    slope = activation_slope(act, negative_slope)
    return torch.where(h.detach() > 0, h.new_tensor(1.0), h.new_tensor(slope))


def activation_reference(h: Tensor, act: str, negative_slope: float) -> Tensor:
    """``act`` applied to h in plain PyTorch, leaky ReLU as the kernels compute it
    (h > 0 ? h : h * slope, so ReLU's derivative at 0 is 0)."""
    code = ACTIVATIONS[act].code
    if code == 1:
        return torch.tanh(h)
    if code == 2:
        return torch.sigmoid(h)
    slope = activation_slope(act, negative_slope)
    return h if slope == 1.0 else F.leaky_relu(h, slope)


@dataclass(frozen=True)
class Epilogue:
    """What follows a layer's convolution or matrix product: y = clamp(act(h + bias) *
    gain, -clamp, clamp), pixel-normalized over channels if asked.

    Attributes:
        act: "linear", "relu", "lrelu" (leaky ReLU with ``negative_slope``), "tanh" or
            "sigmoid" (these two without pixel norm).
        negative_slope: leaky ReLU's slope for negative inputs, >= 0.
        gain: positive factor applied after the activation.
        clamp: if given, the result is clamped to [-clamp, clamp] (before pixel norm).
        pixel_norm: divide by sqrt(mean over channels of the square + eps) per pixel.
        eps: pixel norm's epsilon.
    """

    act: str = "linear"
    negative_slope: float = 0.2
    gain: float = 1.0
    clamp: float | None = None
    pixel_norm: bool = False
    eps: float = 1e-8

    @property
    def slope(self) -> float:
        """The activation's slope for negative inputs (1 for linear, 0 for ReLU)."""
        return activation_slope(self.act, self.negative_slope)

    @property
    def is_identity(self) -> bool:
        """True when the epilogue only adds the bias, which a convolution can do itself."""
        return (ACTIVATIONS[self.act].piecewise_linear and self.slope == 1.0
                and self.gain == 1.0 and self.clamp is None and not self.pixel_norm)

    def checked(self, op: str) -> Epilogue:
        """self, after raising ValueError (naming ``op``) for a setting outside its domain:
        an unknown activation, or a number that is negative, zero where it may not be,
        infinite or NaN."""
        check_activation(op, self.act, self.negative_slope)
        if self.pixel_norm and not ACTIVATIONS[self.act].piecewise_linear:
            raise ValueError(f"{op}: pixel norm follows linear, relu or lrelu, got "
                             f"{self.act!r}")
        if not 0 < self.gain < math.inf:
            raise ValueError(f"{op}: gain must be > 0 and finite, got {self.gain}")
        if self.clamp is not None and not 0 < self.clamp < math.inf:
            raise ValueError(f"{op}: clamp must be > 0 and finite, or None, got {self.clamp}")
        check_nonnegative(op, "eps", self.eps)
        return self

    def kernel_arguments(self) -> tuple[int, float, float, float | None, bool, float]:
        """(act code, slope, gain, clamp, pixel_norm, eps): the epilogue as the custom op
        takes it."""
        return (ACTIVATIONS[self.act].code, self.slope, float(self.gain),
                None if self.clamp is None else float(self.clamp), bool(self.pixel_norm),
                float(self.eps))

    def describe(self) -> str:
        """The settings that differ from the defaults, e.g. "act=lrelu, pixel_norm=True"."""
        return ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                         if getattr(self, f.name) != f.default
                         and not (f.name == "negative_slope" and self.act != "lrelu"))


def pixel_norm_reference(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean over dim 1 of x^2 + eps), in plain PyTorch (Karras et al. 2017, 4.2).

    Computed in float32 for half-precision x (float16 has no 1e-8: a zero vector would
    give 0 * inf) and rounded once to x's dtype, as the kernels do.
    """
    _validate("pixel_norm", x, None)
    return _pixel_norm(x.to(stat_dtype(x)), eps).to(x.dtype)


def _pixel_norm(h: Tensor, eps: float) -> Tensor:
    return h * torch.rsqrt(h.square().mean(dim=1, keepdim=True) + eps)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, -1) + (1,) * (x.dim() - 2)


def bias_act_reference(x: Tensor, bias: Tensor | None = None, *, act: str = "lrelu",
                       negative_slope: float = 0.2, gain: float = 1.0,
                       clamp: float | None = None, pixel_norm: bool = False,
                       eps: float = 1e-8) -> Tensor:
    """The definition of :func:`bias_act` in plain, twice-differentiable PyTorch, in
    float32 for half-precision x and rounded once to x's dtype, as the kernels do."""
    epilogue = Epilogue(act, negative_slope, gain, clamp, pixel_norm, eps).checked("bias_act")
    _validate("bias_act", x, bias)
    return epilogue_reference(x, bias, epilogue)


def epilogue_reference(x: Tensor, bias: Tensor | None, epilogue: Epilogue) -> Tensor:
    """:func:`bias_act_reference` for an :class:`Epilogue` (arguments checked by the caller)."""
    h = x.to(stat_dtype(x))
    if bias is not None:
        h = h + bias.to(h.dtype).view(_channel_shape(x))
    h = activation_reference(h, epilogue.act, epilogue.negative_slope)
    if epilogue.gain != 1.0:
        h = h * epilogue.gain
    if epilogue.clamp is not None:
        h = h.clamp(-epilogue.clamp, epilogue.clamp)
    return (_pixel_norm(h, epilogue.eps) if epilogue.pixel_norm else h).to(x.dtype)


def bias_act(x: Tensor, bias: Tensor | None = None, *, act: str = "lrelu",
             negative_slope: float = 0.2, gain: float = 1.0, clamp: float | None = None,
             pixel_norm: bool = False, eps: float = 1e-8, backend: str | None = None) -> Tensor:
    """y = clamp(act(x + bias) * gain, -clamp, clamp), pixel-normalized over dim 1 if asked.

    Args:
        x: (N, C, ...) activations; NCHW or channels_last, float32/float16/bfloat16
            (float64 too). The output keeps x's dtype and memory format.
        bias: (C,) or None.
        act, negative_slope, gain, clamp, pixel_norm, eps: the :class:`Epilogue`.
        backend: "auto", "fused", "reference" or None for the process default.
    """
    epilogue = Epilogue(act, negative_slope, gain, clamp, pixel_norm, eps).checked("bias_act")
    return apply_epilogue(x, bias, epilogue, backend=backend)


def apply_epilogue(x: Tensor, bias: Tensor | None, epilogue: Epilogue, *,
                   backend: str | None = None, op: str = "bias_act") -> Tensor:
    """:func:`bias_act` with its settings as one checked :class:`Epilogue` (what the layers
    hold); ``op`` names the caller in errors."""
    _validate(op, x, bias)
    if not use_fused("bias_act", x, backend):
        return epilogue_reference(x, bias, epilogue)
    return fused_epilogue(x, bias, epilogue, provider="triton")


def fused_epilogue(x: Tensor, bias: Tensor | None, epilogue: Epilogue, *,
                   provider: str) -> Tensor:
    """The fused path of :func:`bias_act` (arguments checked by the caller).

    provider names the kernels: "triton" (kernels/bias_act.py) or "extension" (the C++ /
    CUDA epilogue of :mod:`fastpgan.extension`, which the resampling convolutions use).
    """
    y, _ = _bias_act_op(x, bias, *epilogue.kernel_arguments(), provider)
    return y


def _validate(op: str, x: Tensor, bias: Tensor | None) -> None:
    if x.dim() < 2:
        raise ValueError(f"{op}: x must be (N, C, ...) with at least 2 dimensions, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must be a floating-point tensor, got {x.dtype}")
    if bias is not None and (bias.dim() != 1 or bias.numel() != x.shape[1]):
        raise ValueError(f"{op}: bias must have shape ({x.shape[1]},) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(bias.shape)}")
    if bias is not None and bias.device != x.device:
        raise ValueError(f"{op}: bias is on {bias.device}, x on {x.device}")


# ---------------------------------------------------------------- fused path (custom ops)


def _kernels(provider: str) -> types.ModuleType:
    """The module whose bias_act_forward / bias_act_backward launch the kernels."""
    return kernel_module("bias_act") if provider == "triton" else load_extension()


def _forward_buffers(x: Tensor, pixel_norm: bool) -> tuple[Tensor, Tensor, Tensor]:
    """x made dense in its own memory format, and the outputs y and r to fill."""
    x = x.contiguous(memory_format=memory_format(x))
    stat_shape = (x.shape[0], 1, *x.shape[2:]) if pixel_norm else (0,)
    return x, torch.empty_like(x), x.new_empty(stat_shape, dtype=stat_dtype(x))


def _act_argument(act: int, provider: str) -> dict[str, int]:
    """The activation code as the provider's launchers take it: the extension's epilogue
    (the resampling convolutions') has leaky ReLU only and takes no code."""
    return {} if provider == "extension" else {"act": act}


def _bias_act_impl(x: Tensor, bias: Tensor | None, act: int, slope: float, gain: float,
                   clamp: float | None, pixel_norm: bool, eps: float,
                   provider: str = "triton") -> tuple[Tensor, Tensor]:
    x, y, r = _forward_buffers(x, pixel_norm)
    if x.numel():
        _kernels(provider).bias_act_forward(
            x, None if bias is None else bias.contiguous(), y, r if pixel_norm else None,
            slope=slope, gain=gain, clamp=clamp, eps=eps, **_act_argument(act, provider))
    return y, r


def _bias_act_fake(x, bias, act, slope, gain, clamp, pixel_norm, eps, provider="triton"):
    _, y, r = _forward_buffers(x, pixel_norm)
    return y, r


def _bias_act_setup(ctx, inputs, output) -> None:
    _, bias, act, slope, gain, clamp, pixel_norm, _, provider = inputs
    y, r = output
    # Unused outputs (r, outside double backward) get None rather than a zero-filled grad.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(y, r if pixel_norm else None)
    ctx.epilogue = (act, slope, gain, clamp)
    ctx.provider = provider
    ctx.bias_dtype = None if bias is None else bias.dtype


def _bias_act_grad(ctx, grad_y: Tensor | None, grad_r: Tensor | None):
    y, r = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(y)
    if r is None:
        grad_r = None
    dx, db = _bias_act_backward_op(grad_y, y, r, grad_r, ctx.bias_dtype is not None,
                                   *ctx.epilogue, ctx.provider)
    db = None if ctx.bias_dtype is None else db.to(ctx.bias_dtype)
    return dx, db, None, None, None, None, None, None, None


def _backward_buffers(grad_y: Tensor, y: Tensor, bias_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
    """grad_y in y's layout, and the outputs dx and db to fill."""
    grad_y = grad_y.contiguous(memory_format=memory_format(y))
    db = y.new_empty((y.shape[1],) if bias_grad else (0,), dtype=stat_dtype(y))
    return grad_y, torch.empty_like(y), db


def _bias_act_backward_impl(grad_y: Tensor, y: Tensor, r: Tensor | None,
                            grad_r: Tensor | None, bias_grad: bool, act: int, slope: float,
                            gain: float, clamp: float | None,
                            provider: str = "triton") -> tuple[Tensor, Tensor]:
    # The kernel launcher returns the bias gradient itself; only an empty y needs a buffer.
    grad_y, dx, db = _backward_buffers(grad_y, y, bias_grad and y.numel() == 0)
    if y.numel() == 0:
        return dx, db.zero_()
    bias_grad_sum = _kernels(provider).bias_act_backward(
        grad_y, y, r, None if grad_r is None else grad_r.contiguous(), dx,
        with_bias_grad=bias_grad, slope=slope, gain=gain,
        clamp=None if clamp is None else clamp_threshold(clamp, y.dtype),
        **_act_argument(act, provider))
    return dx, db if bias_grad_sum is None else bias_grad_sum


def _bias_act_backward_fake(grad_y, y, r, grad_r, bias_grad, act, slope, gain, clamp,
                            provider="triton"):
    _, dx, db = _backward_buffers(grad_y, y, bias_grad)
    return dx, db


def _backward_setup(ctx, inputs, output) -> None:
    grad_y, y, r, grad_r, bias_grad, act, slope, gain, clamp, provider = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(grad_y, y, r, grad_r)
    ctx.epilogue = (act, slope, gain, clamp)
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


def _clamped(y: Tensor, r: Tensor | None, clamp: float, stored: torch.dtype) -> Tensor:
    """Where the output y was clamped; stored is the dtype y was saved in, which sets how
    close to clamp counts as clamped."""
    limit = clamp_threshold(clamp, stored)
    return y.abs() >= (limit if r is None else limit * r)


def _act_derivative(y: Tensor, r: Tensor | None, act: int, slope: float, gain: float,
                    clamp: float | None, stored: torch.dtype) -> Tensor:
    """d clamp(lrelu(h) * gain) / dh as a function of the output y (constant a.e.)."""
    d = torch.where(y > 0, y.new_tensor(gain), y.new_tensor(gain * slope))
    return d if clamp is None else d.masked_fill(_clamped(y, r, clamp, stored), 0)


def _smooth_second_derivative(y: Tensor, act: int, gain: float, clamp: float | None,
                              stored: torch.dtype) -> Tensor:
    """d D(y) / dy for D(y) = gain * act'(h) read off y = gain * act(h), tanh
    (D = gain (1 - t^2), t = y / gain) or sigmoid (D = gain s (1 - s), s = y / gain);
    zero where y was clamped."""
    t = y / gain
    dd = -2 * t if act == 1 else 1 - 2 * t
    return dd if clamp is None else dd.masked_fill(_clamped(y, None, clamp, stored), 0)


def _backward_grad(ctx, g_dx: Tensor | None, g_db: Tensor | None):
    """Vector-Jacobian product of the backward op: the double backward of bias_act."""
    grad_y, y, r, grad_r = ctx.saved_tensors
    g = torch.zeros_like(y) if g_dx is None else g_dx
    if ctx.bias_grad and g_db is not None:
        g = g + g_db.to(g.dtype).view(_channel_shape(y))
    if r is None:
        # dx = D(y) * grad_y: linear in grad_y, and in y flat for leaky ReLU (D piecewise
        # constant), D'(y) * grad_y for tanh and sigmoid
        d_grad_y, _ = _bias_act_backward_op(g, y, None, None, False, *ctx.epilogue,
                                            ctx.provider)
        act, _, gain, clamp = ctx.epilogue
        d_y = None
        if act != 0:
            d_y = (g * grad_y * _smooth_second_derivative(y, act, gain, clamp, y.dtype)
                   ).to(y.dtype)
        return d_grad_y, d_y, None, None, None, None, None, None, None, None
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


_bias_act_backward_op = FusedOp("bias_act_backward", _bias_act_backward_impl,
                                fake=_bias_act_backward_fake, setup_context=_backward_setup,
                                backward=_backward_grad)
_bias_act_op = FusedOp("bias_act", _bias_act_impl, fake=_bias_act_fake,
                       setup_context=_bias_act_setup, backward=_bias_act_grad)

def clear_of_clamp_band(x: Tensor, b: Tensor | None, kwargs: dict) -> Tensor:
    """x with every element whose pre-clamp output lies in twice the band below clamp
    that reads back as clamped (``clamp_threshold``) set to -b (an output of exactly 0).

    The kernels count an output within one rounding step of clamp as clamped (the
    documented convention: a half-precision output there rounds onto clamp; float32
    allows 16 steps), while the float64 reference still passes its gradient. In float32
    about 1 in 3 million elements falls there.
    """
    if kwargs.get("clamp") is None:
        return x
    clamp = kwargs["clamp"]
    unclamped = {k: v for k, v in kwargs.items() if k not in ("clamp", "pixel_norm")}
    b64 = None if b is None else b.detach().double()
    a = bias_act_reference(x.detach().double(), b64, **unclamped).abs()
    band = (a >= clamp - 2 * (clamp - clamp_threshold(clamp, x.dtype))) & (a < clamp)
    fill = (torch.zeros_like(x) if b is None
            else (-b.detach()).view(1, -1, *[1] * (x.dim() - 2)).expand_as(x))
    return torch.where(band, fill, x.detach()).requires_grad_()



# ---------------------------------------------------------------- registration


def _sample(rng: random.Random) -> OpSample:
    c = rng.randint(1, 40)
    shape = ((rng.randint(1, 5), c, *feature_map(rng)) if rng.random() < 0.8
             else (rng.randint(1, 9), c))
    act = rng.choice(list(ACTIVATIONS))
    kwargs = dict(act=act, gain=rng.choice([1.0, 2 ** 0.5]), clamp=rng.choice([None, 0.8, 3.0]),
                  pixel_norm=(c > 1 and ACTIVATIONS[act].piecewise_linear
                              and rng.random() < 0.5))
    bias = torch.randn(c) if rng.random() < 0.8 else None
    x = clear_of_clamp_band(activations(rng, shape), bias, kwargs).detach()
    # with a clamp before pixel norm a non-finite input makes its whole pixel NaN, and the
    # fused backward, which reads what was clamped off the output, cannot tell where the
    # reference's clamp gives a zero gradient
    spreads = kwargs["clamp"] is not None and kwargs["pixel_norm"]
    return OpSample(lambda x, **b: bias_act(x, bias, **kwargs, **b),
                    lambda x: bias_act_reference(x, like(bias, x), **kwargs), x,
                    "nan-spreads" if spreads else "exact")


def _half_precision() -> HalfPrecisionCase:
    bias = torch.randn(8).half().float()  # exact in half, so x + bias is exactly 0 below
    x = torch.randn(3, 8, 4, 4)
    x[:, :, 0, 0] = -bias
    return HalfPrecisionCase(lambda x, b: bias_act_reference(x, b, pixel_norm=True), (x, bias))


register(OpInfo(
    "bias_act", bias_act, bias_act_reference, "triton", kernels="bias_act",
    library_ops=("fastpgan::bias_act", "fastpgan::bias_act_backward"),
    double_backward="the backward op's own autograd: fused without pixel norm, closed-form "
                    "PyTorch second-order terms with it",
    tests=OpTests(_sample, lambda f: f(NOT_AN_ACTIVATION, torch.randn(4)), "bias_act",
                  ("tests/test_bias_act.py",), _half_precision)))
