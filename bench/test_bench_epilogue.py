"""bias_act and pixel_norm, forward + backward: fused vs eager reference vs torch.compile.

The bytes each step must move (step_fn) over the measured copy bandwidth are the floor
the fused kernels aim at.
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh

from fastpgan.ops import bias_act, bias_act_reference

SHAPES = [(16, 512, 64, 64), (8, 64, 256, 256)] if CUDA else [(2, 8, 4, 4)]
OPS = {
    "pixel_norm": (dict(act="linear", pixel_norm=True), False),
    "bias_lrelu": (dict(act="lrelu", gain=2**0.5), True),
    "bias_lrelu_pixel_norm": (dict(act="lrelu", pixel_norm=True), True),
}
IMPLS = ("fused", "eager", "compiled")


def step_fn(op: str, impl: str, shape: tuple[int, ...], layout: str):
    """(step, bytes): one forward + backward of op on fresh inputs, and the bytes it must move.

    Bytes: x read and y written forward, dy and y read and dx written backward, plus the
    float32 per-pixel statistic written and read with pixel norm.
    """
    kwargs, with_bias = OPS[op]
    dtype = torch.bfloat16 if CUDA else torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, device=DEVICE, dtype=dtype).to(memory_format=fmt).requires_grad_()
    b = torch.randn(shape[1], device=DEVICE, dtype=dtype, requires_grad=True) if with_bias else None
    dy = torch.randn_like(x)
    if impl == "compiled":
        forward = compile_fresh(functools.partial(bias_act_reference, **kwargs))
    else:
        backend = "fused" if impl == "fused" else "reference"
        forward = functools.partial(bias_act, backend=backend, **kwargs)
    leaves = [t for t in (x, b) if t is not None]

    def step():
        return torch.autograd.grad(forward(x, b), leaves, dy)

    pixels = shape[0] * shape[2] * shape[3]
    stat_bytes = 2 * 4 * pixels if kwargs.get("pixel_norm") else 0
    return step, 5 * x.numel() * x.element_size() + stat_bytes


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", list(OPS))
def test_forward_backward(benchmark, op, shape, layout, impl):
    benchmark_step(benchmark, step_fn(op, impl, shape, layout), op=op, shape=shape,
                   layout=layout, impl=impl)
