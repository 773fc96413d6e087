"""minibatch_stddev, forward + backward: fused vs eager reference vs torch.compile.

Shapes: ProGAN's discriminator input to the 4x4 block (N=16, C=512) and a
bandwidth-sized N=64, C=512, 32x32, both with G=4, F=1.
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh

from fastpgan.ops import minibatch_stddev, minibatch_stddev_reference

SHAPES = [(16, 512, 4, 4), (64, 512, 32, 32)] if CUDA else [(8, 8, 4, 4)]
IMPLS = ("fused", "eager", "compiled")


def step_fn(impl: str, shape: tuple[int, ...], layout: str, group_size: int = 4):
    """(step, bytes): forward + backward on fresh inputs, and the bytes it must move.

    Bytes: x read and out written forward; dout read, x read and dx written backward.
    """
    dtype = torch.bfloat16 if CUDA else torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, device=DEVICE, dtype=dtype).to(memory_format=fmt).requires_grad_()
    n, c, h, w = shape
    dout = torch.randn(n, c + 1, h, w, device=DEVICE, dtype=dtype).to(memory_format=fmt)
    if impl == "compiled":
        forward = compile_fresh(functools.partial(minibatch_stddev_reference,
                                                  group_size=group_size))
    else:
        forward = functools.partial(minibatch_stddev, group_size=group_size,
                                    backend="fused" if impl == "fused" else "reference")

    def step():
        return torch.autograd.grad(forward(x), x, dout)

    return step, (5 * c + 2) * n * h * w * x.element_size()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward(benchmark, shape, layout, impl):
    benchmark_step(benchmark, step_fn(impl, shape, layout), op="minibatch_stddev", shape=shape,
                   layout=layout, impl=impl)
