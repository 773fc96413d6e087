"""norm_act (batch or instance norm + activation): fused vs eager torch modules vs compile.

Rows, at the shapes of DCGAN, pix2pix and CycleGAN layers:

- "norm_act": a training step, forward + backward (the batch's statistics, running
  statistics updated), of BatchNormAct / InstanceNormAct against ``nn.BatchNorm2d`` (or
  InstanceNorm, 3d) + ``nn.LeakyReLU`` / ``nn.ReLU`` eager and under torch.compile.
  Bytes: x read, y written forward; dy and x read, dx written backward (each once).
- "norm_act_eval": the normalize pass alone (evaluation: running statistics), forward,
  x read and y written.
"""

from __future__ import annotations

import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh
from torch import nn

from fastpgan.nn import BatchNormAct2d, BatchNormAct3d, InstanceNormAct2d

CASES = {  # name: (shape, fastpgan layer, torch norm, torch activation)
    "batch_64x256x32x32": ((64, 256, 32, 32), BatchNormAct2d, nn.BatchNorm2d, "lrelu"),
    "instance_4x256x64x64": ((4, 256, 64, 64), InstanceNormAct2d, nn.InstanceNorm2d, "relu"),
    "instance_1x64x256x256": ((1, 64, 256, 256), InstanceNormAct2d, nn.InstanceNorm2d, "relu"),
    "batch3d_8x64x32x32x32": ((8, 64, 32, 32, 32), BatchNormAct3d, nn.BatchNorm3d, "relu"),
}
if not CUDA:  # the CPU smoke run: the same code on small shapes, a 2-D and a 3-D case
    CASES = {name: ((2, 8, *[4] * (len(shape) - 2)), *rest)
             for name, (shape, *rest) in CASES.items() if name.startswith("batch")}
IMPLS = ("fused", "eager", "compiled")


def _models(shape, layer, norm, act, impl):
    c = shape[1]
    kwargs = dict(affine=True, track_running_stats=True)
    if impl == "fused":
        return layer(c, activation=act, negative_slope=0.2, backend="fused", **kwargs)
    module = nn.LeakyReLU(0.2) if act == "lrelu" else nn.ReLU()
    return nn.Sequential(norm(c, **kwargs), module)


def _input(shape, layout, dtype, requires_grad):
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}[len(shape)]
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=fmt)
    return x.requires_grad_(requires_grad)


def step_fn(impl: str, case: str, layout: str, train: bool):
    """(step, bytes): a training step's forward + backward, or the evaluation forward."""
    shape, layer, norm, act = CASES[case]
    dtype = torch.bfloat16 if CUDA else torch.float32
    model = _models(shape, layer, norm, act, impl).to(DEVICE, dtype).train(train)
    forward = compile_fresh(model) if impl == "compiled" else model
    x = _input(shape, layout, dtype, train)
    if not train:
        def step():
            with torch.no_grad():
                return forward(x)
        return step, 2 * x.numel() * x.element_size()
    dy = torch.randn_like(x)
    leaves = [x, *model.parameters()]

    def step():
        return torch.autograd.grad(forward(x), leaves, dy)

    return step, 5 * x.numel() * x.element_size()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES)
def test_training_step(benchmark, case, layout, impl):
    benchmark_step(benchmark, step_fn(impl, case, layout, train=True), op="norm_act",
                   shape=CASES[case][0], layout=layout, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES)
def test_normalize_pass(benchmark, case, layout, impl):
    benchmark_step(benchmark, step_fn(impl, case, layout, train=False), op="norm_act_eval",
                   shape=CASES[case][0], layout=layout, impl=impl)
