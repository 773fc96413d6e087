"""bias_act and pixel_norm, forward + backward: fused vs eager reference vs torch.compile.

Bytes moved once per step: x read and y written forward, dy and y read and dx written
backward (5 tensors), plus the float32 per-pixel statistic written and read with pixel
norm. That over the measured copy bandwidth is the floor the fused kernels aim at.
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import CUDA, time_calls

from fastpgan.ops import bias_act, bias_act_reference

SHAPES = [(16, 512, 64, 64), (8, 64, 256, 256)] if CUDA else [(2, 8, 4, 4)]
OPS = {
    "pixel_norm": (dict(act="linear", pixel_norm=True), False),
    "bias_lrelu": (dict(act="lrelu", gain=2**0.5), True),
    "bias_lrelu_pixel_norm": (dict(act="lrelu", pixel_norm=True), True),
}
IMPLS = ("fused", "eager", "compiled")


@functools.cache
def _compiled(op: str):
    kwargs, _ = OPS[op]
    return torch.compile(functools.partial(bias_act_reference, **kwargs))


def _step_fn(op: str, impl: str, x: torch.Tensor, b: torch.Tensor | None, dy: torch.Tensor):
    kwargs, _ = OPS[op]
    if impl == "compiled":
        forward = _compiled(op)
    else:
        backend = "fused" if impl == "fused" else "reference"
        forward = functools.partial(bias_act, backend=backend, **kwargs)
    leaves = [t for t in (x, b) if t is not None]

    def step():
        return torch.autograd.grad(forward(x, b), leaves, dy)

    return step


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", list(OPS))
def test_forward_backward(benchmark, device, op, shape, layout, impl):
    dtype = torch.bfloat16 if CUDA else torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, device=device, dtype=dtype).to(memory_format=fmt).requires_grad_()
    with_bias = OPS[op][1]
    b = torch.randn(shape[1], device=device, dtype=dtype, requires_grad=True) if with_bias else None
    dy = torch.randn_like(x)
    step = _step_fn(op, impl, x, b, dy)
    step()  # compile / warm up outside the timing
    pixels = shape[0] * shape[2] * shape[3]
    stat_bytes = 2 * 4 * pixels if OPS[op][0].get("pixel_norm") else 0
    benchmark.group = f"{op} {'x'.join(map(str, shape))} {layout} {str(dtype)[6:]}"
    time_calls(benchmark, step, 5 * x.numel() * x.element_size() + stat_bytes,
               op=op, shape=list(shape), layout=layout, dtype=str(dtype), impl=impl)
