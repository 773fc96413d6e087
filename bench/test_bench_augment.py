"""augment_bgc (ADA's bgc transform at p = 1), forward + backward: fused vs eager vs compile.

Shapes: the issue's 256x256 at batch 32 and 1024x1024 at batch 4, RGB. The transforms are
ADA's own draws at p = 1, so every geometric and colour transform applies and the batch's
padding is the largest (what a run with p near 1 pays). The compiled column compiles the
reference; its grid_sample and convolutions stay ATen calls.
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh

from fastpgan.ops import augment_bgc, augment_bgc_reference
from fastpgan.train.augment import draw_bgc

SHAPES = [(32, 3, 256, 256), (4, 3, 1024, 1024)] if CUDA else [(2, 3, 16, 16)]
IMPLS = ("fused", "eager", "compiled")


def step_fn(impl: str, shape: tuple[int, ...]):
    """(step, bytes): forward + backward on fresh inputs, and the bytes it must move at
    the least: x read and y written forward, dy read and dx written backward."""
    dtype = torch.bfloat16 if CUDA else torch.float32
    n, c, h, w = shape
    x = torch.randn(shape, device=DEVICE, dtype=dtype, requires_grad=True)
    g_inv, color = draw_bgc(n, c, h, w, 1.0, DEVICE, torch.Generator(DEVICE).manual_seed(0))
    dy = torch.randn_like(x)
    if impl == "compiled":
        forward = compile_fresh(functools.partial(augment_bgc_reference, g_inv=g_inv,
                                                  color=color))
    else:
        forward = functools.partial(augment_bgc, g_inv=g_inv, color=color,
                                    backend="fused" if impl == "fused" else "reference")

    def step():
        return torch.autograd.grad(forward(x), x, dy)

    return step, 4 * x.numel() * x.element_size()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward(benchmark, shape, impl):
    benchmark_step(benchmark, step_fn(impl, shape), op="augment_bgc", shape=shape,
                   layout="nchw", impl=impl)
