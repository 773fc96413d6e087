"""What the ops' test declarations (:class:`fastpgan.backend.OpTests`) draw their inputs
from: random activations in every layout, feature-map sizes, parameters cast to the
activation's dtype, and inputs with a zero vector.

Each op's sample function lives in its op file, beside its registration; these are the
pieces they share (and the resampling convolutions' whole sample). Nothing here runs
unless a test asks.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import Tensor

from fastpgan.backend import OpSample

SIDES = (1, 2, 3, 4, 5, 7, 8)
"""Feature-map sides drawn: 1x1 maps and sizes that are not powers of two."""

NOT_AN_ACTIVATION = torch.randn(2, 3, 4)
"""A 3-D tensor: no op takes it as its activation (the bad calls pass it)."""


def activations(rng: random.Random, shape: tuple[int, ...]) -> Tensor:
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


def feature_map(rng: random.Random, low: int = 1) -> tuple[int, int]:
    """A random H x W of at least ``low`` pixels a side, 1x1 included when low is 1."""
    return tuple(rng.choice([side for side in SIDES if side >= low]) for _ in range(2))


def like(value: object, x: Tensor) -> object:
    """A tensor parameter in x's dtype (the references run in float64 and float32);
    anything else as it is."""
    return value.to(x.dtype) if isinstance(value, Tensor) else value


def zero_pixel(shape: tuple[int, int, int, int] = (3, 8, 4, 4)) -> Tensor:
    """Random activations whose pixel (0, 0) is zero in every channel: a zero vector."""
    x = torch.randn(shape)
    x[:, :, 0, 0] = 0
    return x


def conv_sample(rng: random.Random, op: Callable[..., Tensor],
                reference: Callable[..., Tensor], options: dict, *, low: int = 1,
                even: bool = False) -> OpSample:
    """A sample of a resampling convolution ``op(x, weight, bias, **kwargs)``: I -> O
    channels, a 1x1 or 3x3 kernel, a bias most of the time, He's weight gain, a linear or
    leaky ReLU epilogue and the op's own ``options`` (each a list to draw from; "o > 1"
    options only with several output channels); x with sides of at least ``low``, doubled
    when ``even``. An infinity meets the weights folded into one stride-2 kernel, their
    sums, where the definition's convolution and resampling meet inf - inf."""
    i, o, k = rng.randint(1, 12), rng.randint(1, 12), rng.choice([1, 3])
    weight, bias = torch.randn(o, i, k, k), torch.randn(o) if rng.random() < 0.7 else None
    kwargs = dict(weight_gain=(i * k * k) ** -0.5, act=rng.choice(["linear", "lrelu"]),
                  **{name: rng.choice(choices) for name, choices in options.items()})
    if o == 1:
        kwargs.pop("pixel_norm", None)
    h, w = feature_map(rng, low)
    return OpSample(lambda x, **b: op(x, weight, bias, **kwargs, **b),
                    lambda x: reference(x, like(weight, x), like(bias, x), **kwargs),
                    activations(rng, (rng.randint(1, 4), i, *((2 * h, 2 * w) if even
                                                              else (h, w)))),
                    "infinities-fold")
