"""upsample_conv2d and conv2d_downsample with ProGAN's epilogues, forward + backward: the C++
extension ("fused": one stride-2 convolution + the epilogue kernel) vs the definition
("eager": interpolate + conv2d or conv2d + avg_pool2d, then bias, leaky ReLU [and pixel
norm] in PyTorch, the epilogue in float32 as our reference computes it) vs torch.compile
of the definition, and for ProGAN's two ops "plain": the same layer as a bf16
reimplementation writes it, every op in the input's dtype (bench/plain.py). Time and peak
memory are the figures to read (the convolutions are compute-bound); GB/s counts only x,
y, dy and dx.

Shapes are ProGAN's (Karras et al. 2017, table 2, minibatch as in appendix A.1), 3x3
kernels: the generator's upsampling layers and the discriminator's downsampling layers
at 64^2, 128^2 and 1024^2, in channels_last. StyleGAN2's FIR resampling convolutions
([1, 3, 3, 1] filter; fused: the filter folded into one stride-2 convolution's kernel,
eager: NVlabs' definition, upfirdn2d then the convolution) at config F's 512 channels,
32 -> 64 in the generator and 64 -> 32 in the discriminator, batch 8.
"""

from __future__ import annotations

import functools

import plain
import pytest
import torch
from benchutil import CUDA, DEVICE, benchmark_step, compile_fresh

from fastpgan.ops import (
    conv2d_downsample,
    conv2d_downsample_reference,
    fir_conv2d_downsample,
    fir_conv2d_downsample_reference,
    fir_upsample_conv2d,
    fir_upsample_conv2d_reference,
    upsample_conv2d,
    upsample_conv2d_reference,
)

# (op, (N, C_in, H, W) of the input, C_out)
CASES = [("upsample_conv2d", (16, 512, 32, 32), 256),  # G, 32 -> 64
         ("upsample_conv2d", (16, 256, 64, 64), 128),  # G, 64 -> 128
         ("upsample_conv2d", (3, 32, 512, 512), 16),  # G, 512 -> 1024
         ("conv2d_downsample", (16, 256, 64, 64), 512),  # D, 64 -> 32
         ("conv2d_downsample", (16, 128, 128, 128), 256),  # D, 128 -> 64
         ("conv2d_downsample", (3, 16, 1024, 1024), 32),
         ("fir_upsample_conv2d", (8, 512, 32, 32), 512),  # StyleGAN2 G, 32 -> 64
         ("fir_conv2d_downsample", (8, 512, 64, 64), 512)] if CUDA else [  # D, 64 -> 32
    ("upsample_conv2d", (2, 8, 4, 4), 8), ("conv2d_downsample", (2, 8, 4, 4), 8),
    ("fir_upsample_conv2d", (2, 8, 4, 4), 8), ("fir_conv2d_downsample", (2, 8, 4, 4), 8)]
DTYPES = [torch.bfloat16, torch.float32] if CUDA else [torch.float32]
IMPLS = ("fused", "eager", "compiled")
OPS = {"upsample_conv2d": (upsample_conv2d, upsample_conv2d_reference,
                           dict(act="lrelu", pixel_norm=True)),
       "conv2d_downsample": (conv2d_downsample, conv2d_downsample_reference,
                             dict(act="lrelu")),
       "fir_upsample_conv2d": (fir_upsample_conv2d, fir_upsample_conv2d_reference,
                               dict(act="lrelu", gain=2 ** 0.5)),
       "fir_conv2d_downsample": (fir_conv2d_downsample, fir_conv2d_downsample_reference,
                                 dict(act="lrelu", gain=2 ** 0.5))}
PLAIN = {"upsample_conv2d": functools.partial(plain.upsample_conv, normalize=True),
         "conv2d_downsample": plain.conv_downsample}
"""The plain-PyTorch layer of each op that has one, with OPS' epilogue."""


def step_fn(impl: str, op: str, shape: tuple[int, ...], out_channels: int,
            dtype: torch.dtype):
    """(step, bytes): the layer's forward + backward, and its activation bytes."""
    fused, reference, epilogue = OPS[op]
    x = torch.randn(shape, device=DEVICE, dtype=dtype).to(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = torch.randn(out_channels, shape[1], 3, 3, device=DEVICE, dtype=dtype,
                         requires_grad=True)
    bias = torch.randn(out_channels, device=DEVICE, dtype=dtype, requires_grad=True)
    gain = (2 / (shape[1] * 9)) ** 0.5
    if impl == "compiled":
        forward = compile_fresh(functools.partial(reference, weight_gain=gain, **epilogue))
    elif impl == "plain":
        forward = functools.partial(PLAIN[op], weight_gain=gain)
    elif impl == "fused":
        forward = functools.partial(fused, weight_gain=gain, **epilogue, backend="fused")
    else:
        forward = functools.partial(reference, weight_gain=gain, **epilogue)
    y = forward(x, weight, bias)
    dy = torch.randn_like(y)

    def step():
        return torch.autograd.grad(forward(x, weight, bias), (x, weight, bias), dy)

    return step, 2 * (x.numel() + y.numel()) * x.element_size()


def _case_id(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,shape,out_channels,impl", [
    pytest.param(*case, impl, id="-".join(map(_case_id, (*case, impl))))
    for case in CASES for impl in (*IMPLS, "plain") if impl != "plain" or case[0] in PLAIN])
def test_forward_backward(benchmark, op, shape, out_channels, dtype, impl):
    benchmark_step(benchmark, step_fn(impl, op, shape, out_channels, dtype), op=op,
                   shape=(*shape, out_channels), layout="channels_last", impl=impl,
                   dtype=str(dtype).removeprefix("torch."))


@pytest.mark.parametrize("op", list(PLAIN))
def test_plain_layers_compute_the_definition(op):
    """The "plain" column is the same layer: equal to our float64 definition to round-off."""
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    weight = torch.randn(7, 5, 3, 3, dtype=torch.float64)
    bias = torch.randn(7, dtype=torch.float64)
    _, reference, epilogue = OPS[op]
    expected = reference(x, weight, bias, weight_gain=0.3, **epilogue)
    actual = PLAIN[op](x, weight, bias, weight_gain=0.3)
    assert (actual - expected).norm() / expected.norm() < 1e-12
