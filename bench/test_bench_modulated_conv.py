"""modulated_conv2d, forward + backward: the activation-modulation rewrite ("fused") vs the
definition's grouped convolution over per-sample weights ("eager") vs torch.compile of it.

The convolutions are compute-bound, so time is the figure to read; GB/s and % of copy
bandwidth count only the activations read and written (x, y, dy, dx), for scale.
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh

from fastpgan.ops import modulated_conv2d, modulated_conv2d_reference

SHAPES = [(16, 512, 32, 32), (8, 256, 128, 128)] if CUDA else [(2, 8, 4, 4)]
IMPLS = ("fused", "eager", "compiled")


def step_fn(impl: str, shape: tuple[int, ...], layout: str):
    """(step, bytes): a 3x3 modulated conv forward + backward, and its activation bytes."""
    dtype = torch.bfloat16 if CUDA else torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    n, c = shape[:2]
    x = torch.randn(shape, device=DEVICE, dtype=dtype).to(memory_format=fmt).requires_grad_()
    weight = torch.randn(c, c, 3, 3, device=DEVICE, dtype=dtype, requires_grad=True)
    styles = torch.randn(n, c, device=DEVICE, dtype=dtype, requires_grad=True)
    dy = torch.randn_like(x)
    if impl == "compiled":
        forward = compile_fresh(modulated_conv2d_reference)
    else:
        forward = functools.partial(modulated_conv2d,
                                    backend="fused" if impl == "fused" else "reference")

    def step():
        return torch.autograd.grad(forward(x, weight, styles), (x, weight, styles), dy)

    return step, 4 * x.numel() * x.element_size()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward(benchmark, shape, layout, impl):
    benchmark_step(benchmark, step_fn(impl, shape, layout), op="modulated_conv2d",
                   shape=shape, layout=layout, impl=impl)
