"""minibatch_stddev: ProGAN's minibatch standard deviation layer (Karras et al. 2017, 3).

Official semantics: G = min(group_size, N) must divide N, and sample i belongs to group
i mod (N / G) (the official code reshapes x to (G, N/G, F, C/F, H, W)). Per group and
per channel group f, the standard deviation over the G members, sqrt(biased variance +
eps), is averaged over the C/F channels and H x W pixels, and the result is appended as
F constant channels.

Fused path: the custom ops ``fastpgan::minibatch_stddev`` and
``fastpgan::minibatch_stddev_backward`` on the kernels of
``fastpgan.kernels.minibatch_stddev`` (whose docstring says how the statistic is
reduced); every first-order backward runs the fused kernel.

Double backward (WGAN-GP, R1): the backward op's autograd differentiates the closed-form
backward (:func:`minibatch_stddev_backward_reference`) in plain PyTorch, deliberately:
the layer sits at the discriminator's 4x4 block, where that costs microseconds.
"""

from __future__ import annotations

import random

import torch
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
from fastpgan.ops.layout import memory_format, stat_dtype
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations, feature_map


def _groups(x: Tensor, group_size: int) -> tuple[int, int]:
    """(G, M): the group size actually used and the number of groups."""
    g = min(group_size, x.shape[0])
    return g, x.shape[0] // g


def _group_deviation(x: Tensor, g: int, m: int, num_channels: int,
                     eps: float) -> tuple[Tensor, Tensor]:
    """(d, std): x - its group mean, (G, M, F, C/F, H*W), and sqrt(mean_g(d^2) + eps)."""
    y = x.reshape(g, m, num_channels, x.shape[1] // num_channels, -1)
    d = y - y.mean(dim=0)
    return d, (d.square().mean(dim=0) + eps).sqrt()


def minibatch_stddev_reference(x: Tensor, group_size: int = 4, num_channels: int = 1,
                               eps: float = 1e-8) -> Tensor:
    """The definition of :func:`minibatch_stddev` in plain, differentiable PyTorch; the
    statistic in float32 for half-precision x (float16 has no 1e-8), as the kernels do."""
    _validate(x, group_size, num_channels, eps)
    return _reference(x, group_size, num_channels, eps)


def _reference(x: Tensor, group_size: int, num_channels: int, eps: float) -> Tensor:
    n, _, h, w = x.shape
    g, m = _groups(x, group_size)
    _, std = _group_deviation(x.to(stat_dtype(x)), g, m, num_channels, eps)
    stat = std.mean(dim=(2, 3))  # (M, F)
    stat = stat.repeat(g, 1).reshape(n, num_channels, 1, 1).expand(n, num_channels, h, w)
    return torch.cat([x, stat.to(x.dtype)], dim=1)


def minibatch_stddev_backward_reference(grad_out: Tensor, x: Tensor, group_size: int,
                                        num_channels: int, eps: float) -> Tensor:
    """dL/dx from dL/d(output) in closed form, plain PyTorch (differentiable again).

    With d = x - group mean and std = sqrt(mean_g(d^2) + eps):
    dx = grad_out[:, :C] + gs / (G * C/F * H * W) * d / std, where gs sums the statistic
    channel's gradient over the group's members and H x W.
    """
    n, c, h, w = x.shape
    g, m = _groups(x, group_size)
    cf = c // num_channels
    d, std = _group_deviation(x.to(stat_dtype(x)), g, m, num_channels, eps)
    gs = grad_out[:, c:].to(d.dtype).reshape(g, m, num_channels, 1, h * w).sum(dim=(0, 4),
                                                                             keepdim=True)
    dx = gs * d / (std * (g * cf * h * w))
    return grad_out[:, :c] + dx.reshape(n, c, h, w).to(grad_out.dtype)


def minibatch_stddev(x: Tensor, group_size: int = 4, num_channels: int = 1,
                     eps: float = 1e-8, *, backend: str | None = None) -> Tensor:
    """x with F = num_channels minibatch standard-deviation channels appended.

    Args:
        x: (N, C, H, W), NCHW or channels_last; the output (N, C + F, H, W) keeps x's
            dtype and memory format.
        group_size: G is min(group_size, N); N must be a multiple of G.
        num_channels: F, the number of channel groups (and of appended channels); must
            divide C.
        eps: added to the variance before the square root.
        backend: "auto", "fused", "reference" or None for the process default.
    """
    _validate(x, group_size, num_channels, eps)
    if not use_fused("minibatch_stddev", x, backend):
        return _reference(x, group_size, num_channels, eps)
    return _minibatch_stddev_op(x, int(group_size), int(num_channels), float(eps))


def _validate(x: Tensor, group_size: int, num_channels: int, eps: float) -> None:
    if x.dim() != 4:
        raise ValueError(f"minibatch_stddev: x must be (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"minibatch_stddev: x must be a floating-point tensor, got {x.dtype}")
    if group_size < 1 or num_channels < 1:
        raise ValueError(f"minibatch_stddev: group_size and num_channels must be >= 1, got "
                         f"{group_size} and {num_channels}")
    n, c = x.shape[:2]
    if n == 0:
        raise ValueError("minibatch_stddev: the batch is empty (N = 0)")
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch_stddev: the batch size N = {n} is not a multiple of the "
                         f"group size G = min(group_size, N) = {g}")
    if c % num_channels:
        raise ValueError(f"minibatch_stddev: C = {c} channels do not split into "
                         f"num_channels = {num_channels} groups")
    check_nonnegative("minibatch_stddev", "eps", eps)


# ---------------------------------------------------------------- fused path (custom ops)


def _output(x: Tensor, num_channels: int) -> Tensor:
    n, c, h, w = x.shape
    return x.new_empty((n, c + num_channels, h, w)).contiguous(memory_format=memory_format(x))


def _minibatch_stddev_impl(x: Tensor, group_size: int, num_channels: int, eps: float) -> Tensor:
    x = x.contiguous(memory_format=memory_format(x))
    out = _output(x, num_channels)
    g, _ = _groups(x, group_size)
    kernel_module("minibatch_stddev").minibatch_stddev_forward(
        x, out, group_size=g, num_channels=num_channels, eps=eps)
    return out


def _minibatch_stddev_fake(x, group_size, num_channels, eps):
    return _output(x, num_channels)


def _setup(ctx, inputs, output) -> None:
    x, group_size, num_channels, eps = inputs
    ctx.save_for_backward(x)
    ctx.config = (group_size, num_channels, eps)


def _grad(ctx, grad_out: Tensor):
    (x,) = ctx.saved_tensors
    dx = _minibatch_stddev_backward_op(grad_out, x, *ctx.config)
    return dx, None, None, None


def _minibatch_stddev_backward_impl(grad_out: Tensor, x: Tensor, group_size: int,
                                    num_channels: int, eps: float) -> Tensor:
    x = x.contiguous(memory_format=memory_format(x))
    grad_out = grad_out.contiguous(memory_format=memory_format(x))
    dx = torch.empty_like(x)
    g, _ = _groups(x, group_size)
    kernel_module("minibatch_stddev").minibatch_stddev_backward(
        grad_out, x, dx, group_size=g, num_channels=num_channels, eps=eps)
    return dx


def _minibatch_stddev_backward_fake(grad_out, x, group_size, num_channels, eps):
    return torch.empty_like(x.contiguous(memory_format=memory_format(x)))


def _backward_setup(ctx, inputs, output) -> None:
    grad_out, x, group_size, num_channels, eps = inputs
    ctx.save_for_backward(grad_out, x)
    ctx.config = (group_size, num_channels, eps)


def _backward_grad(ctx, grad_dx: Tensor):
    """The double backward: autograd through the closed-form backward."""
    def closed_form(grad_out: Tensor, x: Tensor) -> tuple[Tensor]:
        return (minibatch_stddev_backward_reference(grad_out, x, *ctx.config),)

    grads = closed_form_vjp(closed_form, ctx.saved_tensors, ctx.needs_input_grad[:2],
                            (grad_dx,))
    return (*grads, None, None, None)


_minibatch_stddev_backward_op = FusedOp(
    "minibatch_stddev_backward", _minibatch_stddev_backward_impl,
    fake=_minibatch_stddev_backward_fake, setup_context=_backward_setup, backward=_backward_grad)
_minibatch_stddev_op = FusedOp("minibatch_stddev", _minibatch_stddev_impl,
                               fake=_minibatch_stddev_fake, setup_context=_setup, backward=_grad)

def _sample(rng: random.Random) -> OpSample:
    group, groups, f = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 3)
    shape = (group * groups, f * rng.randint(1, 7), *feature_map(rng))
    return OpSample(lambda x, **b: minibatch_stddev(x, group, f, **b),
                    lambda x: minibatch_stddev_reference(x, group, f), activations(rng, shape))


def _half_precision() -> HalfPrecisionCase:
    x = torch.randn(8, 6, 3, 3)
    x[:, :3] = x[:1, :3]  # channel group 0 identical in every sample: variance 0
    return HalfPrecisionCase(lambda x: minibatch_stddev_reference(x, 4, 2), (x,))


register(OpInfo(
    "minibatch_stddev", minibatch_stddev, minibatch_stddev_reference, "triton",
    kernels="minibatch_stddev",
    library_ops=("fastpgan::minibatch_stddev", "fastpgan::minibatch_stddev_backward"),
    double_backward="autograd through the closed-form backward (PyTorch): at the 4x4 "
                    "block it costs microseconds",
    tests=OpTests(_sample, lambda f: f(NOT_AN_ACTIVATION), "minibatch_stddev",
                  ("tests/test_minibatch_stddev.py",), _half_precision)))
