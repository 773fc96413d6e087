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

from fastpgan.backend import OPS, OpInfo
from fastpgan.ops import modulated_conv2d, modulated_conv2d_reference

HALF = [torch.float16, torch.bfloat16]

WEIGHT_GRAD_TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 1e-2}
"""For a gradient that is a half-precision convolution's weight gradient summed further
(``HalfPrecisionCase.weight_gradients``): modulated_conv2d's styles gradient (its
reference's grouped convolution) reached 1.5 % in bfloat16 over 300 seeds (0.16 % in
float16), as a convolution's own weight gradient rounds. (The ops whose only statistic is
their bias_act epilogue's declare no case of their own.)"""
WITH_CASES = sorted(name for name, op in OPS.items() if op.tests.half_precision is not None)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("op", WITH_CASES)
def test_degenerate_inputs_give_finite_values_and_gradients_near_float64(op, dtype):
    check_half_precision(OPS[op], dtype)


def check_half_precision(info: OpInfo, dtype: torch.dtype) -> None:
    """The op's degenerate case: the reference in ``dtype`` finite and near float64, its
    value and every gradient."""
    case = info.tests.half_precision()
    fn = case.function
    # the activations in half precision; parameters (bias, styles, weight) stay float32
    leaves = [case.inputs[0].to(dtype).requires_grad_(),
              *(t.clone().requires_grad_() for t in case.inputs[1:])]
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
        assert_close(g, g64, WEIGHT_GRAD_TOLERANCE[dtype] if i in case.weight_gradients
                     else TOLERANCE[dtype], f"gradient {i}")


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_modulated_conv_rewrite_demodulates_in_float32_under_autocast(dtype):
    """Autocast would run the demodulation's (N x I) @ (I x O) product in half precision."""
    x, weight, styles = OPS["modulated_conv2d"].tests.half_precision().inputs
    with torch.autocast("cpu", dtype=dtype):
        y = modulated_conv2d(x, weight, styles, backend="fused")
    assert torch.isfinite(y).all()
    expected = modulated_conv2d_reference(x.double(), weight.double(), styles.double())
    assert_close(y, expected, TOLERANCE[dtype], "value")
