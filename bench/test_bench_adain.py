"""adain (noise + bias + leaky ReLU + AdaIN), forward + backward: fused vs eager vs compile.

Shapes: a StyleGAN 64x64 layer (N=8, C=512) and a 512x512 layer (N=4, C=32).
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh

from fastpgan.ops import adain, adain_reference

SHAPES = [(8, 512, 64, 64), (4, 32, 512, 512)] if CUDA else [(2, 8, 4, 4)]
IMPLS = ("fused", "eager", "compiled")


def step_fn(impl: str, shape: tuple[int, ...], layout: str):
    """(step, bytes): forward + backward on fresh inputs, and the bytes it must move.

    Bytes: x and noise read, y written forward; dy, x and noise read, dx written backward.
    """
    dtype = torch.bfloat16 if CUDA else torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    n, c, h, w = shape
    x = torch.randn(shape, device=DEVICE, dtype=dtype).to(memory_format=fmt).requires_grad_()

    def param(*size):
        return torch.randn(*size, device=DEVICE, dtype=dtype, requires_grad=True)

    scale, shift, weight, bias = param(n, c), param(n, c), param(c), param(c)
    noise = torch.randn(n, 1, h, w, device=DEVICE, dtype=dtype)
    dy = torch.randn_like(x)
    kwargs = dict(noise=noise, noise_weight=weight, bias=bias, negative_slope=0.2)
    if impl == "compiled":
        forward = compile_fresh(functools.partial(adain_reference, **kwargs))
    else:
        forward = functools.partial(adain, backend="fused" if impl == "fused" else "reference",
                                    **kwargs)
    leaves = (x, scale, shift, weight, bias)

    def step():
        return torch.autograd.grad(forward(x, scale, shift), leaves, dy)

    return step, (5 * x.numel() + 2 * noise.numel()) * x.element_size()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward(benchmark, shape, layout, impl):
    benchmark_step(benchmark, step_fn(impl, shape, layout), op="adain", shape=shape,
                   layout=layout, impl=impl)
