"""Random-shape property tests: every registered fused op against its float64 reference.

The cases are the ops' own sample inputs (``OpTests.sample``, declared beside each op's
registration). Each run draws PROPERTY_CASES cases per op from the test's seed (printed; replay with
FASTPGAN_TEST_SEED): channel counts that are not powers of two, 1x1 maps, a batch of 1,
and inputs in NCHW, channels_last or as non-contiguous views, with outputs poisoned with
NaN so an element a kernel forgot fails. The value must agree to float32's bound, and
the input gradient too where float32 can reach it: measured against its own scale (or a
thousandth of the incoming gradient's, where it is far smaller, i.e. cancellation), and
never more than four times the error of the plain-PyTorch reference in float32 on the
same case (a few channels under pixel norm cancel in either).

Pixel norm is drawn over two or more channels only: over one it outputs +-1, with a
gradient of about eps / |x|^3 (1e-5 to 1e-11 in the cases seen), which float32 cannot
resolve in the reference either. For the same reason AdaIN never normalizes over
exactly two pixels (centred, they are d and -d, so a_hat is +-1 whatever d is, and the
gradient is pure cancellation); over one it is exactly zero, which both compute.
"""

from __future__ import annotations

import functools
import os
import random

import pytest
import torch

from fastpgan.backend import OPS, OpInfo

PROPERTY_CASES = int(os.environ.get("FASTPGAN_PROPERTY_CASES", "6"))
"""Cases per op and run (CI's budget; more with the environment variable)."""


def _value_and_dx(fn, x, grad_y, device="cpu"):
    leaf = x.to(device).requires_grad_()
    y = fn(leaf)
    (dx,) = torch.autograd.grad(y, leaf, grad_y.to(device, y.dtype))
    return y.detach().double().cpu(), dx.double().cpu()


def _error(a, b, scale):
    return (a - b).norm().item() / scale


@pytest.mark.parametrize("op", sorted(OPS))
def test_random_shapes_and_layouts_match_float64(device, poisoned_outputs, fresh_seed, op):
    check_random_shapes(OPS[op], random.Random(f"{fresh_seed}-{op}"), device)


def check_random_shapes(info: OpInfo, rng: random.Random, device: str,
                        cases: int = PROPERTY_CASES) -> None:
    """``cases`` of the op's samples: the fused value and input gradient against float64."""
    op = info.name
    for case in range(cases):
        sample = info.tests.sample(rng)
        fused, reference, x = sample.op, sample.reference, sample.x
        what = f"{op} case {case}: x {tuple(x.shape)} strides {x.stride()}"
        grad_y = torch.randn(reference(x.double()).shape)
        y, dx = _value_and_dx(functools.partial(fused, backend="fused"), x, grad_y, device)
        y64, dx64 = _value_and_dx(reference, x.double(), grad_y.double())
        _, dx32 = _value_and_dx(reference, x, grad_y)  # plain PyTorch in float32
        assert y.shape == y64.shape and dx.shape == x.shape, what
        assert _error(y, y64, y64.norm().item() or 1.0) < 1e-5, f"{what}, value"
        # The gradient within 1e-5 of its scale (or of a thousandth of the incoming
        # gradient's, where it is far smaller: cancellation), unless float32 cannot do
        # that here: then no worse than the plain-PyTorch reference in float32 does.
        scale = max(dx64.norm().item(), 1e-3 * grad_y.norm().item())
        err, err32 = _error(dx, dx64, scale), _error(dx32, dx64, scale)
        assert err < max(1e-5, 4 * err32), (
            f"{what}, dx: error {err:.3e} of the gradient's scale; float32 PyTorch {err32:.3e}")
