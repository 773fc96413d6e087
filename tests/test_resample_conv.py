"""upsample_conv2d and conv2d_downsample: the one-convolution rewrites against their definitions."""

import pytest
import torch
from helpers import TOLERANCE, assert_close, leaf64, random_input

from fastpgan.ops import (
    conv2d_downsample,
    conv2d_downsample_reference,
    upsample_conv2d,
    upsample_conv2d_reference,
)

OPS = {"upsample": (upsample_conv2d, upsample_conv2d_reference),
       "downsample": (conv2d_downsample, conv2d_downsample_reference)}
CASES = [  # (x shape, out channels, kernel, channels_last, bias)
    ((2, 3, 4, 4), 5, 3, False, True),
    ((2, 3, 5, 7), 4, 3, True, True),  # odd sizes: the pool floors
    ((1, 6, 2, 2), 2, 1, False, False),  # 1x1 kernel (toRGB / fromRGB)
    ((3, 2, 6, 3), 3, 5, False, True),
]


def _ids(case):
    shape, o, k, channels_last, bias = case
    return (f"{'x'.join(map(str, shape))}-o{o}-k{k}{'-cl' if channels_last else ''}"
            f"{'-bias' if bias else ''}")


def _inputs(case, device, dtype=torch.float32):
    shape, o, k, channels_last, with_bias = case
    x = random_input(shape, device, dtype, channels_last)
    weight = torch.randn(o, shape[1], k, k, device=device, dtype=dtype, requires_grad=True)
    bias = torch.randn(o, device=device, dtype=dtype, requires_grad=True) if with_bias else None
    return x, weight, bias


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_values_and_gradients_match_float64(device, op, case):
    fused, reference = OPS[op]
    x, weight, bias = _inputs(case, device)
    leaves = [t for t in (x, weight, bias) if t is not None]
    y = fused(x, weight, bias, backend="fused")
    grad_y = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, grad_y)
    leaves64 = [leaf64(t) for t in leaves]
    y64 = reference(*leaves64) if bias is not None else reference(*leaves64, None)
    grads64 = torch.autograd.grad(y64, leaves64, grad_y.double().cpu())
    assert_close(y, y64, 1e-5, "value")
    for name, g, g64 in zip(("dx", "dweight", "dbias"), grads, grads64, strict=False):
        assert_close(g, g64, 1e-5, name)


def test_downsample_double_backward_in_float64(device):
    """conv2d_downsample sits in the discriminator: R1 / WGAN-GP differentiate it twice."""
    x, weight, bias = _inputs(((2, 2, 4, 4), 2, 3, False, True), device, torch.float64)

    def fn(x, weight, bias):
        return conv2d_downsample(x, weight, bias, backend="fused")

    assert torch.autograd.gradcheck(fn, (x, weight, bias))
    assert torch.autograd.gradgradcheck(fn, (x, weight, bias))


@pytest.mark.parametrize("op", list(OPS))
def test_bfloat16_within_1e_2(device, op):
    fused, reference = OPS[op]
    x, weight, bias = _inputs(CASES[1], device, torch.bfloat16)
    y = fused(x, weight, bias, backend="fused")
    assert y.dtype == torch.bfloat16
    assert_close(y, reference(leaf64(x), leaf64(weight), leaf64(bias)),
                 TOLERANCE[torch.bfloat16], "value")


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("change,message", [
    (dict(weight=torch.randn(4, 2, 3, 3)), "weight takes 2 input channels, x has 3"),
    (dict(weight=torch.randn(4, 3, 2, 2)), "square and odd"),
    (dict(bias=torch.randn(5)), "bias must have shape \\(4,\\)"),
    (dict(x=torch.randn(3, 4, 4)), "x must be \\(N, I, H, W\\)"),
])
def test_bad_arguments_raise_value_error_naming_the_problem(op, change, message):
    kwargs = dict(x=torch.randn(2, 3, 4, 4), weight=torch.randn(4, 3, 3, 3), bias=None)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        OPS[op][0](**kwargs, backend="fused")


def test_downsample_needs_a_2x2_map():
    with pytest.raises(ValueError, match="at least 2x2"):
        conv2d_downsample(torch.randn(1, 3, 1, 4), torch.randn(2, 3, 3, 3), backend="fused")
