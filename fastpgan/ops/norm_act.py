"""norm_act: batch or instance normalization, then an activation, in two passes over memory.

The blocks of DCGAN, pix2pix, CycleGAN and SRGAN: ``BatchNorm | InstanceNorm -> ReLU |
LeakyReLU | Tanh | Sigmoid``. The definition is PyTorch's: ``F.batch_norm`` (Ioffe &
Szegedy 2015) or ``F.instance_norm`` (Ulyanov et al. 2016) with their running-statistics
updates (an exponential average of the mean and of the *unbiased* variance; instance
norm averages its per-sample statistics over the batch), then the activation. An
optional ``input_bias`` (a preceding convolution's bias, which ``fastpgan.nn.fuse``
moves here) is added before the statistics.

Fused path: the custom ops ``fastpgan::norm_act`` (y and the rows' mean and biased
variance) and ``fastpgan::norm_act_backward`` on the kernels of
``fastpgan.kernels.norm_act``. The running statistics are updated after it, from its
mean and variance, by ``fastpgan::norm_act_running`` (one small kernel, mutating them
in place as declared, so torch.compile functionalizes it), outside the differentiable
op, which mutates nothing. Statistics are float32
(float64 for float64 input) whatever x's dtype, and reduced in a fixed order.

Double backward: the backward op's autograd differentiates the closed-form backward
(:func:`norm_act_backward_reference`) in plain PyTorch, as AdaIN's: a gradient penalty
(WGAN-GP, R1) needs it once per regularization step, and every first-order backward
runs the fused kernels.
"""

from __future__ import annotations

import math
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
from fastpgan.ops.dispatch import FusedOp, watched
from fastpgan.ops.epilogue import (
    ACTIVATIONS,
    activation_derivative_reference,
    activation_reference,
    activation_slope,
    check_activation,
)
from fastpgan.ops.layout import dense, memory_format, stat_dtype
from fastpgan.ops.samples import activations, feature_map, like


def _channels(t: Tensor, x: Tensor) -> Tensor:
    """A (C,) tensor shaped to broadcast over x's channels."""
    return t.view(1, -1, *[1] * (x.dim() - 2))


def _row_dims(x: Tensor, instance: bool) -> tuple[int, ...]:
    """The dimensions a row's statistics reduce over."""
    return tuple(range(2, x.dim())) if instance else (0, *range(2, x.dim()))


def _count(x: Tensor, instance: bool) -> int:
    """Elements per row."""
    return math.prod(x.shape[2:]) * (1 if instance else x.shape[0])


def norm_act_reference(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
                       *, running_mean: Tensor | None = None,
                       running_var: Tensor | None = None, instance: bool = False,
                       use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                       act: str = "linear", negative_slope: float = 0.2,
                       input_bias: Tensor | None = None) -> Tensor:
    """The definition of :func:`norm_act` in plain, differentiable PyTorch: PyTorch's
    batch or instance norm written out (including the running statistics' update in
    place), then the activation; in float32 for half-precision x, rounded once to x's
    dtype, as the kernels do.

    Written out rather than calling ``F.instance_norm``, whose CPU backward (torch 2.13)
    returns a wrong gradient for a channels_last batch of one.
    """
    _validate(x, weight, bias, running_mean, running_var, input_bias, instance,
              use_input_stats, momentum, eps, act, negative_slope)
    given = None if use_input_stats else (running_mean, running_var)
    z, mean, var = _normalized(x, input_bias, given, instance, eps)
    if given is None and running_mean is not None and x.numel():
        groups = (x.shape[0] if instance else 1, x.shape[1])
        _update_running_statistics(running_mean, running_var, mean.detach().reshape(groups),
                                   var.detach().reshape(groups), _count(x, instance),
                                   momentum)
    return activation_reference(_affine(z, weight, bias), act, negative_slope).to(x.dtype)


def _normalized(x: Tensor, input_bias: Tensor | None,
                given: tuple[Tensor, Tensor] | None, instance: bool, eps: float
                ) -> tuple[Tensor, Tensor, Tensor]:
    """(z, mean, var): x (+ input_bias) normalized in the statistics' dtype, by the rows'
    own mean and biased variance, or by the ``given`` (mean, var) per channel."""
    dtype = stat_dtype(x)
    v = x.to(dtype)
    if input_bias is not None:
        v = v + _channels(input_bias.to(dtype), x)
    if given is None:
        dims = _row_dims(x, instance)
        mean = v.mean(dim=dims, keepdim=True)
        var = (v - mean).square().mean(dim=dims, keepdim=True)
    else:
        mean, var = (_channels(t.to(dtype), x) for t in given)
    return (v - mean) * torch.rsqrt(var + eps), mean, var


def _affine(z: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """z * weight + bias per channel (either may be None)."""
    if weight is not None:
        z = z * _channels(weight.to(z.dtype), z)
    if bias is not None:
        z = z + _channels(bias.to(z.dtype), z)
    return z


def norm_act_backward_reference(grad_y: Tensor, x: Tensor, weight: Tensor | None,
                                bias: Tensor | None, input_bias: Tensor | None,
                                mean: Tensor | None, var: Tensor | None, *, instance: bool,
                                act: str, negative_slope: float, eps: float
                                ) -> tuple[Tensor, Tensor]:
    """(dx, rows) in closed form, plain PyTorch, differentiable again by autograd.

    ``mean`` and ``var`` are the given (running) statistics, or None for the rows' own.
    With z the normalized value and g = dy * act'(h): dx = rstd * w * (g - mean(g) -
    z * mean(g z)) over the rows' own statistics, rstd * w * g over given ones; rows
    (2, groups, C) holds per row sum(g) and sum(g z), the bias and weight gradients
    before the sum over groups (samples for instance norm, one group for batch norm).
    dx is in the statistics' dtype.
    """
    own = mean is None
    z, _, var = _normalized(x, input_bias, None if own else (mean, var), instance, eps)
    h = _affine(z, weight, bias)
    a = activation_reference(h, act, negative_slope)
    g = grad_y.to(z.dtype) * activation_derivative_reference(h, a, act, negative_slope)
    dims = _row_dims(x, instance and own)
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * _channels(weight.to(z.dtype), x)
    if own:
        dx = scale * (g - g.mean(dim=dims, keepdim=True)
                      - z * (g * z).mean(dim=dims, keepdim=True))
    else:
        dx = scale * g
    rows = torch.stack([g.sum(dim=dims), (g * z).sum(dim=dims)])
    return dx, rows.reshape(2, x.shape[0] if instance and own else 1, x.shape[1])


def norm_act(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, *,
             running_mean: Tensor | None = None, running_var: Tensor | None = None,
             instance: bool = False, use_input_stats: bool = True, momentum: float = 0.1,
             eps: float = 1e-5, act: str = "linear", negative_slope: float = 0.2,
             input_bias: Tensor | None = None, backend: str | None = None) -> Tensor:
    """Batch or instance normalization, then an activation, as PyTorch defines them.

    Args:
        x: (N, C, ...) activations, (N, C, H, W) or (N, C, D, H, W) (instance norm needs
            a spatial dimension); NCHW or channels_last(_3d), float32/float16/bfloat16
            (float64 too). The output keeps x's dtype and memory format.
        weight, bias: the affine (C,) parameters, or None.
        running_mean, running_var: (C,) running statistics, both or neither; updated in
            place when the batch's statistics are used, read when not.
        instance: normalize each sample's channel over its own pixels (instance norm)
            rather than each channel over the batch (batch norm).
        use_input_stats: normalize by the batch's statistics (training; ``F.batch_norm``'s
            ``training``) or by the running ones (False; they must be given).
        momentum: the running statistics' update factor.
        eps: added to the variance.
        act: "linear", "relu", "lrelu" (with ``negative_slope``), "tanh" or "sigmoid".
        input_bias: (C,) added to x before everything else (a convolution's bias).
        backend: "auto", "fused", "reference" or None for the process default.
    """
    _validate(x, weight, bias, running_mean, running_var, input_bias, instance,
              use_input_stats, momentum, eps, act, negative_slope)
    if not use_fused("norm_act", x, backend):
        return norm_act_reference(
            x, weight, bias, running_mean=running_mean, running_var=running_var,
            instance=instance, use_input_stats=use_input_stats, momentum=momentum, eps=eps,
            act=act, negative_slope=negative_slope, input_bias=input_bias)
    given = None if use_input_stats else (running_mean, running_var)
    y, mean, var = _norm_act_op(
        x, input_bias, weight, bias, *(given or (None, None)), instance,
        ACTIVATIONS[act].code, activation_slope(act, negative_slope), float(eps))
    if given is None and running_mean is not None and x.numel():
        _update_running(running_mean, running_var, mean, var, _count(x, instance),
                        float(momentum))
    return y


def _update_running_statistics(running_mean: Tensor, running_var: Tensor, mean: Tensor,
                               var: Tensor, count: int, momentum: float) -> None:
    """running = (1 - momentum) * running + momentum * the batch's, with the unbiased
    variance and, for instance norm's (N, C) statistics, their mean over the batch: the
    reference's update, and the fused path's for running statistics in strided views
    (``running_update_kernel`` does the rest in one launch)."""
    with torch.no_grad():
        if mean.shape[0] > 1:
            mean, var = mean.mean(dim=0), var.mean(dim=0)
        else:
            mean, var = mean[0], var[0]
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        running_var.lerp_((var * (count / (count - 1))).to(running_var.dtype), momentum)


def _validate(x: Tensor, weight: Tensor | None, bias: Tensor | None,
              running_mean: Tensor | None, running_var: Tensor | None,
              input_bias: Tensor | None, instance: bool, use_input_stats: bool,
              momentum: float, eps: float, act: str, negative_slope: float) -> None:
    least = 3 if instance else 2
    if x.dim() < least:
        raise ValueError(f"norm_act: x must be (N, C{', H, ...' if instance else ', ...'}) "
                         f"for {'instance' if instance else 'batch'} norm, got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"norm_act: x must be a floating-point tensor, got {x.dtype}")
    c = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var), ("input_bias", input_bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"norm_act: {name} must have shape ({c},) for x of shape "
                             f"{tuple(x.shape)}, got {tuple(t.shape)}")
        if t is not None and t.device != x.device:
            raise ValueError(f"norm_act: {name} is on {t.device}, x on {x.device}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("norm_act: running_mean and running_var must be given together")
    if not use_input_stats and running_mean is None:
        raise ValueError("norm_act: use_input_stats=False normalizes by running_mean and "
                         "running_var; give both, or use the batch's statistics")
    if use_input_stats and x.numel() and _count(x, instance) < 2:
        raise ValueError(f"norm_act: a row of one value has no variance; the batch's "
                         f"statistics need more than one value per "
                         f"{'sample and channel' if instance else 'channel'}, got x of "
                         f"shape {tuple(x.shape)}")
    check_nonnegative("norm_act", "momentum", momentum)
    check_nonnegative("norm_act", "eps", eps)
    check_activation("norm_act", act, negative_slope)


# ---------------------------------------------------------------- fused path (custom ops)


def _statistics(t: Tensor | None, x: Tensor) -> Tensor | None:
    """A given statistic, contiguous in the statistics' dtype."""
    return None if t is None else t.to(stat_dtype(x)).contiguous()


def _output(x: Tensor) -> Tensor:
    """y (or dx) laid out like x."""
    return torch.empty_like(x.contiguous(memory_format=memory_format(x)))


def _row_statistics(x: Tensor, instance: bool, given: bool) -> tuple[Tensor, Tensor]:
    """The rows' mean and variance to fill: (N, C) per sample, (1, C) for the batch,
    (0, C) when the statistics are given."""
    groups = 0 if given else (x.shape[0] if instance else 1)
    stats = x.new_empty((groups, x.shape[1]), dtype=stat_dtype(x))
    return stats, torch.empty_like(stats)


def _norm_act_impl(x: Tensor, input_bias: Tensor | None, weight: Tensor | None,
                   bias: Tensor | None, running_mean: Tensor | None,
                   running_var: Tensor | None, instance: bool, act: int, slope: float,
                   eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Normalizes by the given running statistics, or by the rows' own without them."""
    given = running_mean is not None
    x = x.contiguous(memory_format=memory_format(x))
    y, (mean, var) = _output(x), _row_statistics(x, instance, given)
    if x.numel():
        kernel_module("norm_act").norm_act_forward(
            x, dense(input_bias), dense(weight), dense(bias), y,
            *((_statistics(running_mean, x), _statistics(running_var, x)) if given
              else (mean, var)),
            per_sample=instance, stats_given=given, act=act, slope=slope, eps=eps)
    return y, mean, var


def _norm_act_fake(x, input_bias, weight, bias, running_mean, running_var, instance, act,
                   slope, eps):
    return _output(x), *_row_statistics(x, instance, running_mean is not None)


def _norm_act_setup(ctx, inputs, output) -> None:
    x, input_bias, weight, bias, running_mean, running_var, instance, act, slope, eps = inputs
    _, mean, var = output
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(mean, var)  # they feed the running statistics only
    given = running_mean is not None
    ctx.save_for_backward(x, input_bias, weight, bias, running_mean if given else mean,
                          running_var if given else var)
    ctx.config = (given, instance, act, slope, eps)
    ctx.dtypes = tuple(None if t is None else t.dtype for t in (input_bias, weight, bias))


def _norm_act_grad(ctx, grad_y: Tensor | None, grad_mean: Tensor | None,
                   grad_var: Tensor | None):
    x, input_bias, weight, bias, mean, var = ctx.saved_tensors
    if grad_y is None:
        return (None,) * 10
    given, instance, act, slope, eps = ctx.config
    dx, rows = _norm_act_backward_op(grad_y, x, input_bias, weight, bias, mean, var, given,
                                     instance, act, slope, eps)
    d_input_bias, d_weight, d_bias = _parameter_grads(rows, weight, var, given, eps,
                                                      ctx.needs_input_grad[1:4])
    return (dx, *(None if g is None else g.to(dtype) for g, dtype in
                  zip((d_input_bias, d_weight, d_bias), ctx.dtypes, strict=True)),
            *(None,) * 6)


def _parameter_grads(rows: Tensor, weight: Tensor | None, var: Tensor,
                     given: bool, eps: float, needed: tuple[bool, ...]
                     ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(d input_bias, d weight, d bias) from the per-row sums of g and g z. Normalized by
    the batch's own statistics, a constant added before them has no effect: its
    gradient is exactly zero, the third plane the kernels zero (no launch of its own)."""
    sums = rows.sum(dim=1) if rows.shape[1] > 1 else rows[:, 0]  # over the groups
    d_weight = sums[1] if needed[1] else None
    d_bias = sums[0] if needed[2] else None
    d_input_bias = None
    if needed[0] and not given:
        d_input_bias = sums[2]
    elif needed[0]:
        scale = torch.rsqrt(var.to(rows.dtype) + eps)
        if weight is not None:
            scale = scale * weight.to(rows.dtype)
        d_input_bias = sums[0] * scale
    return d_input_bias, d_weight, d_bias


def _norm_act_backward_impl(grad_y: Tensor, x: Tensor, input_bias: Tensor | None,
                            weight: Tensor | None, bias: Tensor | None, mean: Tensor,
                            var: Tensor, given: bool, instance: bool, act: int, slope: float,
                            eps: float) -> tuple[Tensor, Tensor]:
    x = x.contiguous(memory_format=memory_format(x))
    grad_y = grad_y.contiguous(memory_format=memory_format(x))
    dx, rows = _output(x), _row_sums(x, instance, given)
    if x.numel():
        kernel_module("norm_act").norm_act_backward(
            grad_y, x, dense(input_bias), dense(weight), dense(bias),
            _statistics(mean, x), _statistics(var, x), dx, rows, per_sample=instance,
            stats_given=given, act=act, slope=slope, eps=eps)
    else:
        rows.zero_()
    return dx, rows


def _row_sums(x: Tensor, instance: bool, given: bool) -> Tensor:
    """The per-row sums of g and g z to fill, (2, 1, C) by given statistics, and by the
    batch's (3, groups, C), the third plane zeros (the input bias's gradient)."""
    if given:
        return x.new_empty((2, 1, x.shape[1]), dtype=stat_dtype(x))
    groups = x.shape[0] if instance else 1
    return x.new_empty((3, groups, x.shape[1]), dtype=stat_dtype(x))


def _norm_act_backward_fake(grad_y, x, input_bias, weight, bias, mean, var, given, instance,
                            act, slope, eps):
    return _output(x), _row_sums(x, instance, given)


def _backward_setup(ctx, inputs, output) -> None:
    grad_y, x, input_bias, weight, bias, mean, var, given, instance, act, slope, eps = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(grad_y, x, weight, bias, input_bias, mean, var)
    ctx.config = (given, instance, act, slope, eps)


_NAMES = {0: "lrelu", 1: "tanh", 2: "sigmoid"}
"""The activation a kernel code stands for (leaky ReLU's slope says which one)."""


def _backward_grad(ctx, grad_dx: Tensor | None, grad_rows: Tensor | None):
    """The double backward: autograd through the closed-form backward (the batch's mean
    and variance are recomputed from x there, so their dependence on x is included)."""
    given, instance, act, slope, eps = ctx.config
    grad_y, x, weight, bias, input_bias, mean, var = ctx.saved_tensors

    def closed_form(grad_y, x, weight, bias, input_bias):
        dx, rows = norm_act_backward_reference(
            grad_y, x, weight, bias, input_bias, mean if given else None,
            var if given else None, instance=instance, act=_NAMES[act],
            negative_slope=slope, eps=eps)
        return dx.to(x.dtype), rows

    needed = ctx.needs_input_grad
    grads = closed_form_vjp(closed_form, (grad_y, x, weight, bias, input_bias),
                            (needed[0], needed[1], needed[3], needed[4], needed[2]),
                            (grad_dx, None if grad_rows is None else grad_rows[:2]))
    d_grad_y, d_x, d_weight, d_bias, d_input_bias = grads
    return (d_grad_y, d_x, d_input_bias, d_weight, d_bias, None, None, None, None, None, None,
            None)


_norm_act_backward_op = FusedOp("norm_act_backward", _norm_act_backward_impl,
                                fake=_norm_act_backward_fake, setup_context=_backward_setup,
                                backward=_backward_grad)
_norm_act_op = FusedOp("norm_act", _norm_act_impl, fake=_norm_act_fake,
                       setup_context=_norm_act_setup, backward=_norm_act_grad)


def _running_impl(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor,
                  count: int, momentum: float) -> None:
    """The running statistics updated in place by one kernel (no gradient: buffers)."""
    if running_mean.is_contiguous() and running_var.is_contiguous():
        kernel_module("norm_act").running_update(running_mean, running_var, mean, var,
                                                 count=count, momentum=momentum)
    else:  # a strided view of other buffers: the kernel addresses dense ones
        _update_running_statistics(running_mean, running_var, mean, var, count, momentum)


_running_op = torch.library.custom_op("fastpgan::norm_act_running",
                                      mutates_args=("running_mean", "running_var"))(
    _running_impl)
_running_op.register_fake(lambda running_mean, running_var, mean, var, count, momentum: None)


def _update_running(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor,
                    count: int, momentum: float) -> None:
    """The fused path's running-statistics update: the operator where something traces
    or watches (see :func:`fastpgan.ops.dispatch.watched`), the function otherwise."""
    update = _running_op if watched(running_mean) else _running_impl
    update(running_mean, running_var, mean, var, count, momentum)


# ---------------------------------------------------------------- registration


def _sample(rng: random.Random) -> OpSample:
    instance = rng.random() < 0.5
    n, c = rng.randint(1, 4), rng.randint(1, 24)
    spatial = (*feature_map(rng),) if rng.random() < 0.8 else (rng.randint(1, 3),) * 3
    if rng.random() < 0.15:
        spatial = (rng.randint(65, 80), rng.randint(64, 70))  # rows longer than one tile
    use_input_stats = rng.random() < 0.7
    # two values normalize to +-1 whatever they are: a gradient of pure cancellation
    while use_input_stats and instance and torch.Size(spatial).numel() < 3:
        spatial = feature_map(rng)
    while use_input_stats and not instance and n * torch.Size(spatial).numel() < 3:
        n += 1
    kwargs = dict(instance=instance, use_input_stats=use_input_stats,
                  act=rng.choice(list(ACTIVATIONS)), negative_slope=rng.choice([0.01, 0.2]),
                  eps=rng.choice([1e-5, 1e-3]))
    if rng.random() < 0.7:
        kwargs.update(weight=1 + 0.3 * torch.randn(c), bias=0.3 * torch.randn(c))
    if rng.random() < 0.3:
        kwargs.update(input_bias=torch.randn(c))
    if not use_input_stats:
        kwargs.update(running_mean=0.3 * torch.randn(c), running_var=0.5 + torch.rand(c))
    return OpSample(lambda x, **b: norm_act(x, **kwargs, **b),
                    lambda x: norm_act_reference(x, **{k: like(v, x) for k, v in
                                                       kwargs.items()}),
                    activations(rng, (n, c, *spatial)))


def _half_precision() -> HalfPrecisionCase:
    x = torch.randn(2, 4, 3, 3)
    x[:, 0] = 1.5  # a constant channel: variance 0
    x[1, 1] = -0.25  # a constant map beside a varying one
    return HalfPrecisionCase(
        lambda x, w, b: (norm_act_reference(x, w, b, act="lrelu")
                         + norm_act_reference(x, w, b, instance=True, act="tanh")),
        (x, 1 + 0.3 * torch.randn(4), torch.randn(4)))


register(OpInfo(
    "norm_act", norm_act, norm_act_reference, "triton", kernels="norm_act",
    library_ops=("fastpgan::norm_act", "fastpgan::norm_act_backward",
                 "fastpgan::norm_act_running"),
    double_backward="autograd through the closed-form backward (PyTorch), as AdaIN's",
    tests=OpTests(_sample, lambda f: f(torch.randn(4)), "norm_act: x must be",
                  ("tests/test_norm_act.py",), _half_precision)))
