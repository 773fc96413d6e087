"""Random-shape property tests: every fused op against its float64 reference.

Each run draws PROPERTY_CASES cases per op from the test's seed (printed; replay with
FASTPGAN_TEST_SEED): channel counts that are not powers of two, 1x1 maps, a batch of 1,
and inputs in NCHW, channels_last or as non-contiguous views, with outputs poisoned with
NaN so an element a kernel forgot fails. The value must agree to float32's bound, and
the input gradient too where float32 can reach it: measured against its own scale (or a
thousandth of the incoming gradient's, where it is far smaller, i.e. cancellation), and
never more than four times the error of the plain-PyTorch reference in float32 on the
same case (a few channels under pixel norm cancel in either).

Pixel norm is drawn over two or more channels only: over one it outputs +-1, with a
gradient of about eps / |x|^3 (1e-5 to 1e-11 in the cases seen), which float32 cannot
resolve in the reference either. For the same reason AdaIN never normalizes over
exactly two pixels (centred, they are d and -d, so a_hat is +-1 whatever d is, and the
gradient is pure cancellation); over one it is exactly zero, which both compute.
"""

from __future__ import annotations

import functools
import os
import random

import pytest
import torch
from helpers import clear_of_clamp_band

from fastpgan.backend import OPS
from fastpgan.ops import (
    adain,
    adain_reference,
    bias_act,
    bias_act_reference,
    conv2d_downsample,
    conv2d_downsample_reference,
    fir_conv2d_downsample,
    fir_conv2d_downsample_reference,
    fir_upsample2d,
    fir_upsample2d_reference,
    fir_upsample_conv2d,
    fir_upsample_conv2d_reference,
    minibatch_stddev,
    minibatch_stddev_reference,
    modulated_conv2d,
    modulated_conv2d_reference,
    pixel_norm,
    pixel_norm_reference,
    upsample_conv2d,
    upsample_conv2d_reference,
)

PROPERTY_CASES = int(os.environ.get("FASTPGAN_PROPERTY_CASES", "6"))
"""Cases per op and run (CI's budget; more with the environment variable)."""


def _activations(rng: random.Random, shape: tuple[int, ...]) -> torch.Tensor:
    """Random x of ``shape`` in a random layout: NCHW, channels_last, or a view with
    gaps (every other channel of a larger tensor, or a crop of larger maps)."""
    layout = rng.choice(["nchw", "channels_last", "strided"]) if len(shape) == 4 else "nchw"
    if layout == "channels_last":
        return torch.randn(shape).to(memory_format=torch.channels_last)
    if layout == "strided":
        n, c, h, w = shape
        if rng.random() < 0.5:
            return torch.randn(n, 2 * c, h, w)[:, ::2]
        return torch.randn(n, c, h + 2, w + 3)[:, :, 1:h + 1, 2:w + 2]
    return torch.randn(shape)


SIDES = (1, 2, 3, 4, 5, 7, 8)


def _map(rng: random.Random, low: int = 1) -> tuple[int, int]:
    """A random H x W of at least ``low`` pixels a side, 1x1 included when low is 1."""
    return tuple(rng.choice([side for side in SIDES if side >= low]) for _ in range(2))


def _like(value, x: torch.Tensor):
    """A tensor parameter in x's dtype (the references run in float64 and float32)."""
    return value.to(x.dtype) if isinstance(value, torch.Tensor) else value


def _bias_act(rng):
    c = rng.randint(1, 40)
    shape = (rng.randint(1, 5), c, *_map(rng)) if rng.random() < 0.8 else (rng.randint(1, 9), c)
    kwargs = dict(act=rng.choice(["linear", "relu", "lrelu"]), gain=rng.choice([1.0, 2 ** 0.5]),
                  clamp=rng.choice([None, 0.8, 3.0]), pixel_norm=c > 1 and rng.random() < 0.5)
    bias = torch.randn(c) if rng.random() < 0.8 else None
    x = clear_of_clamp_band(_activations(rng, shape), bias, kwargs).detach()
    return (lambda x, **b: bias_act(x, bias, **kwargs, **b),
            lambda x: bias_act_reference(x, _like(bias, x), **kwargs),
            x)


def _pixel_norm(rng):
    c = rng.randint(2, 40)
    shape = (rng.randint(1, 5), c, *_map(rng)) if rng.random() < 0.8 else (rng.randint(1, 9), c)
    return pixel_norm, pixel_norm_reference, _activations(rng, shape)


def _minibatch_stddev(rng):
    group, groups, f = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 3)
    shape = (group * groups, f * rng.randint(1, 7), *_map(rng))
    return (lambda x, **b: minibatch_stddev(x, group, f, **b),
            lambda x: minibatch_stddev_reference(x, group, f), _activations(rng, shape))


def _adain(rng):
    n, c, (h, w) = rng.randint(1, 4), rng.randint(1, 24), _map(rng)
    while h * w == 2:
        h, w = _map(rng)
    if rng.random() < 0.2:
        h, w = rng.randint(65, 80), rng.randint(64, 70)  # rows longer than one tile
    scale, shift = 1 + 0.5 * torch.randn(n, c), torch.randn(n, c)
    kwargs = dict(bias=torch.randn(c) if rng.random() < 0.7 else None,
                  negative_slope=rng.choice([None, 0.2]))
    if rng.random() < 0.7:
        kwargs.update(noise=torch.randn(rng.choice([1, n]), 1, h, w), noise_weight=torch.randn(c))
    return (lambda x, **b: adain(x, scale, shift, **kwargs, **b),
            lambda x: adain_reference(x, _like(scale, x), _like(shift, x),
                                      **{k: _like(v, x) for k, v in kwargs.items()}),
            _activations(rng, (n, c, h, w)))


def _modulated_conv(rng):
    n, i, o, k = rng.randint(1, 4), rng.randint(1, 12), rng.randint(1, 12), rng.choice([1, 3])
    weight, styles = torch.randn(o, i, k, k), torch.randn(n, i)
    demodulate = rng.random() < 0.7
    return (lambda x, **b: modulated_conv2d(x, weight, styles, demodulate=demodulate, **b),
            lambda x: modulated_conv2d_reference(x, _like(weight, x), _like(styles, x),
                                                 demodulate=demodulate),
            _activations(rng, (n, i, *_map(rng))))


def _resample(op, reference, low):
    def draw(rng):
        i, o, k = rng.randint(1, 12), rng.randint(1, 12), rng.choice([1, 3])
        weight, bias = torch.randn(o, i, k, k), torch.randn(o) if rng.random() < 0.7 else None
        kwargs = dict(weight_gain=(i * k * k) ** -0.5, act=rng.choice(["linear", "lrelu"]),
                      pixel_norm=o > 1 and rng.random() < 0.5)
        return (lambda x, **b: op(x, weight, bias, **kwargs, **b),
                lambda x: reference(x, _like(weight, x), _like(bias, x), **kwargs),
                _activations(rng, (rng.randint(1, 4), i, *_map(rng, low))))
    return draw


def _fir(op, reference, down):
    def draw(rng):
        i, o, k = rng.randint(1, 12), rng.randint(1, 12), rng.choice([1, 3])
        weight, bias = torch.randn(o, i, k, k), torch.randn(o) if rng.random() < 0.7 else None
        kwargs = dict(weight_gain=(i * k * k) ** -0.5, act=rng.choice(["linear", "lrelu"]),
                      taps=rng.choice([(1, 3, 3, 1), (1, 1), (1, 2, 4, 3)]))
        h, w = _map(rng)
        return (lambda x, **b: op(x, weight, bias, **kwargs, **b),
                lambda x: reference(x, _like(weight, x), _like(bias, x), **kwargs),
                _activations(rng, (rng.randint(1, 4), i, *((2 * h, 2 * w) if down
                                                             else (h, w)))))
    return draw


def _fir_upsample(rng):
    taps = rng.choice([(1, 3, 3, 1), (1, 1)])
    return (lambda x, **b: fir_upsample2d(x, taps, **b),
            lambda x: fir_upsample2d_reference(x, taps),
            _activations(rng, (rng.randint(1, 4), rng.randint(1, 6), *_map(rng))))


DRAWS = {"bias_act": _bias_act, "pixel_norm": _pixel_norm,
         "minibatch_stddev": _minibatch_stddev, "adain": _adain,
         "modulated_conv2d": _modulated_conv,
         "upsample_conv2d": _resample(upsample_conv2d, upsample_conv2d_reference, 1),
         "conv2d_downsample": _resample(conv2d_downsample, conv2d_downsample_reference, 2),
         "fir_upsample_conv2d": _fir(fir_upsample_conv2d, fir_upsample_conv2d_reference, False),
         "fir_conv2d_downsample": _fir(fir_conv2d_downsample, fir_conv2d_downsample_reference,
                                       True),
         "fir_upsample2d": _fir_upsample}


def test_every_registered_op_is_drawn():
    assert set(DRAWS) == set(OPS)


def _value_and_dx(fn, x, grad_y, device="cpu"):
    leaf = x.to(device).requires_grad_()
    y = fn(leaf)
    (dx,) = torch.autograd.grad(y, leaf, grad_y.to(device, y.dtype))
    return y.detach().double().cpu(), dx.double().cpu()


def _error(a, b, scale):
    return (a - b).norm().item() / scale


@pytest.mark.parametrize("op", sorted(DRAWS))
def test_random_shapes_and_layouts_match_float64(device, poisoned_outputs, fresh_seed, op):
    rng = random.Random(f"{fresh_seed}-{op}")
    for case in range(PROPERTY_CASES):
        fused, reference, x = DRAWS[op](rng)
        what = f"{op} case {case}: x {tuple(x.shape)} strides {x.stride()}"
        grad_y = torch.randn(reference(x.double()).shape)
        y, dx = _value_and_dx(functools.partial(fused, backend="fused"), x, grad_y, device)
        y64, dx64 = _value_and_dx(reference, x.double(), grad_y.double())
        _, dx32 = _value_and_dx(reference, x, grad_y)  # plain PyTorch in float32
        assert y.shape == y64.shape and dx.shape == x.shape, what
        assert _error(y, y64, y64.norm().item() or 1.0) < 1e-5, f"{what}, value"
        # The gradient within 1e-5 of its scale (or of a thousandth of the incoming
        # gradient's, where it is far smaller: cancellation), unless float32 cannot do
        # that here: then no worse than the plain-PyTorch reference in float32 does.
        scale = max(dx64.norm().item(), 1e-3 * grad_y.norm().item())
        err, err32 = _error(dx, dx64, scale), _error(dx32, dx64, scale)
        assert err < max(1e-5, 4 * err32), (
            f"{what}, dx: error {err:.3e} of the gradient's scale; float32 PyTorch {err32:.3e}")
