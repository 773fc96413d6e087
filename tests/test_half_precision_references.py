"""The plain-PyTorch references in half precision compute their statistics in float32, as
the kernels do.

Under autocast the trainer feeds the ops float16/bfloat16 activations, and on the CPU (or
with backend="reference") the references run. float16 has no 1e-8, so a zero vector,
identical samples or a constant map would give sqrt(0) and 0 * inf = NaN in the value or
the gradient; each case below holds such a degenerate part beside random values.
"""

import pytest
import torch
from helpers import TOLERANCE, assert_close, leaf64

from fastpgan.backend import OPS
from fastpgan.ops import (
    adain_reference,
    bias_act_reference,
    minibatch_stddev_reference,
    modulated_conv2d,
    modulated_conv2d_reference,
    pixel_norm_reference,
)

HALF = [torch.float16, torch.bfloat16]


def _zero_pixel(shape=(3, 8, 4, 4)):
    x = torch.randn(shape)
    x[:, :, 0, 0] = 0
    return x


def _pixel_norm_case():
    return pixel_norm_reference, (_zero_pixel(),)


def _bias_act_case():
    bias = torch.randn(8).half().float()  # exact in half, so x + bias is exactly 0 below
    x = torch.randn(3, 8, 4, 4)
    x[:, :, 0, 0] = -bias
    return (lambda x, b: bias_act_reference(x, b, pixel_norm=True)), (x, bias)


def _minibatch_stddev_case():
    x = torch.randn(8, 6, 3, 3)
    x[:, :3] = x[:1, :3]  # channel group 0 identical in every sample: variance 0
    return (lambda x: minibatch_stddev_reference(x, 4, 2)), (x,)


def _adain_case():
    x = torch.randn(2, 4, 3, 3)
    x[0, 0] = 1.5  # a constant map: variance 0
    scale, shift = torch.randn(2, 4), torch.randn(2, 4)
    return (lambda x, s, t: adain_reference(x, s, t, negative_slope=0.2)), (x, scale, shift)


def _modulated_conv_case():
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    styles[0] = 0  # a zero modulation: the demodulation's sum is 0
    return modulated_conv2d_reference, (x, weight, styles)


CASES = {"pixel_norm": _pixel_norm_case, "bias_act": _bias_act_case,
         "minibatch_stddev": _minibatch_stddev_case, "adain": _adain_case,
         "modulated_conv2d": _modulated_conv_case}
COVERED_BY_BIAS_ACT = {"upsample_conv2d", "conv2d_downsample", "fir_upsample_conv2d",
                       "fir_conv2d_downsample", "fir_upsample2d"}
"""Ops whose only statistic is their bias_act epilogue's, or that have none (the FIR
image upsampling). (A half-precision convolution rounds its own weight gradient by more
than this file's bound: up to 2 % in bfloat16.)"""


WEIGHT_GRAD_TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 1e-2}
"""For a gradient that is a half-precision convolution's weight gradient summed further:
modulated_conv2d's styles gradient (its reference's grouped convolution) reached 1.5 %
in bfloat16 over 300 seeds (0.16 % in float16), as the convolution's own weight
gradient rounds (above)."""


def test_every_registered_op_has_a_degenerate_case():
    assert set(CASES) | COVERED_BY_BIAS_ACT == set(OPS)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_degenerate_inputs_give_finite_values_and_gradients_near_float64(case, dtype):
    fn, inputs = CASES[case]()
    # the activations in half precision; parameters (bias, styles, weight) stay float32
    leaves = [inputs[0].to(dtype).requires_grad_(),
              *(t.clone().requires_grad_() for t in inputs[1:])]
    y = fn(*leaves)
    assert y.dtype == dtype
    grad_y = torch.randn(y.shape)
    grads = torch.autograd.grad(y, leaves, grad_y.to(dtype))
    leaves64 = [leaf64(t) for t in leaves]
    y64 = fn(*leaves64)
    grads64 = torch.autograd.grad(y64, leaves64, grad_y.double())
    assert torch.isfinite(y).all(), "value"
    assert_close(y, y64, TOLERANCE[dtype], "value")
    for i, (g, g64) in enumerate(zip(grads, grads64, strict=True)):
        assert torch.isfinite(g).all(), f"gradient {i}"
        through_weight_grad = case == "modulated_conv2d" and i == 2
        assert_close(g, g64, WEIGHT_GRAD_TOLERANCE[dtype] if through_weight_grad
                     else TOLERANCE[dtype], f"gradient {i}")


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_modulated_conv_rewrite_demodulates_in_float32_under_autocast(dtype):
    """Autocast would run the demodulation's (N x I) @ (I x O) product in half precision."""
    _, (x, weight, styles) = _modulated_conv_case()
    with torch.autocast("cpu", dtype=dtype):
        y = modulated_conv2d(x, weight, styles, backend="fused")
    assert torch.isfinite(y).all()
    expected = modulated_conv2d_reference(x.double(), weight.double(), styles.double())
    assert_close(y, expected, TOLERANCE[dtype], "value")
