"""Every fused op propagates NaN and Inf exactly as its reference does, in its value and its
gradient, so a diverging run shows the divergence instead of hiding it.

The cases are the ops' own sample inputs (``OpTests.sample``) with one element of x made
NaN or infinite; how the comparison is made is the sample's rule
(``fastpgan.backend.NONFINITE_RULES``)."""

import random

import pytest
import torch
from helpers import assert_close

from fastpgan.backend import OPS, OpInfo

# numpy, under Triton's interpreter, warns about the NaN arithmetic these tests ask for
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

NONFINITE_CASES = 3
"""Samples per op and value."""


def _value_and_gradient(fn, x, grad_y):
    x = x.clone().requires_grad_()
    y = fn(x)
    (dx,) = torch.autograd.grad(y, x, grad_y)
    return y.detach(), dx


def _same_pattern(a, b, what, more_nan_allowed=False, finite_only=False, values=True,
                  spreads=False):
    """a (fused) non-finite exactly where b (the reference) is; with ``more_nan_allowed``,
    NaN wherever b has one, and perhaps elsewhere, but never fewer; with ``finite_only``
    only which elements are finite must agree; with ``spreads`` a non-finite wherever b
    has one, of any kind, perhaps elsewhere; with ``values`` the finite ones too."""
    if spreads:
        assert (~a.isfinite() | b.isfinite()).all(), (
            f"{what}: the reference is non-finite at {(~b.isfinite() & a.isfinite()).sum()} "
            "places where the fused value is finite")
        if values:
            finite = a.isfinite() & b.isfinite()
            assert_close(a[finite], b[finite], 1e-4, f"{what}, finite part")
        return
    if finite_only:
        assert torch.equal(a.isfinite(), b.isfinite()), (
            f"{what}: non-finite at {(~a.isfinite()).sum()} places fused, "
            f"{(~b.isfinite()).sum()} in the reference")
        if values:
            assert_close(a[a.isfinite()], b[a.isfinite()], 1e-4, f"{what}, finite part")
        return
    nan_agrees = ((a.isnan() | ~b.isnan()).all() if more_nan_allowed
                  else torch.equal(a.isnan(), b.isnan()))
    assert nan_agrees, (
        f"{what}: NaN at {a.isnan().sum()} places fused, {b.isnan().sum()} in the reference")
    assert torch.equal(a == float("inf"), b == float("inf")), f"{what}: +Inf differs"
    assert torch.equal(a == -float("inf"), b == -float("inf")), f"{what}: -Inf differs"
    if values:
        finite = a.isfinite() & b.isfinite()
        assert_close(a[finite], b[finite], 1e-4, f"{what}, finite part")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=str)
@pytest.mark.parametrize("op", sorted(OPS))
def test_non_finite_inputs_propagate_as_in_the_reference(device, fresh_seed, op, value):
    check_non_finite(OPS[op], random.Random(f"{fresh_seed}-{op}-{value}"), device, value)


def check_non_finite(info: OpInfo, rng: random.Random, device: str, value: float,
                     cases: int = NONFINITE_CASES) -> None:
    """``cases`` of the op's samples with one element of x set to ``value``: the fused
    value and gradient non-finite where the reference's are, by the sample's rule."""
    for case in range(cases):
        sample = info.tests.sample(rng)
        x = sample.x.detach().clone()  # its layout kept
        x[tuple(rng.randrange(size) for size in x.shape)] = value
        what = f"{info.name} case {case}: x {tuple(x.shape)}, {value}"
        grad_y = torch.randn_like(sample.reference(x))
        y, dx = _value_and_gradient(
            lambda t, op=sample.op: op(t.to(device), backend="fused").cpu(), x, grad_y)
        y_ref, dx_ref = _value_and_gradient(sample.reference, x, grad_y)
        # an infinity through the FIR definition's two convolutions meets weights of both
        # signs (inf - inf = NaN); through the one folded kernel, their sum (+-inf): both
        # non-finite at the same places, of different kinds, and the leaky ReLU's slope
        # there (NaN is not > 0, -inf neither, +inf is) changes the finite gradients
        folded = sample.nonfinite == "infinities-fold" and value == value
        _same_pattern(y, y_ref, f"{what}: value", finite_only=folded,
                      spreads=sample.nonfinite == "spreads")
        # the gradient's finite values: test_properties holds them to float64 on finite
        # inputs; beside a NaN they can be small sums whose float32 rounding shows
        _same_pattern(dx, dx_ref, f"{what}: gradient",
                      more_nan_allowed=sample.nonfinite in ("nan-spreads", "spreads"),
                      finite_only=folded, values=False)
