"""Every fused op propagates NaN and Inf exactly as its reference does, in its value and its
gradient, so a diverging run shows the divergence instead of hiding it."""

import pytest
import torch
from helpers import assert_close

from fastpgan.backend import OPS
from fastpgan.ops import (
    adain,
    adain_reference,
    bias_act,
    bias_act_reference,
    conv2d_downsample,
    conv2d_downsample_reference,
    fir_conv2d_downsample,
    fir_conv2d_downsample_reference,
    fir_upsample2d,
    fir_upsample2d_reference,
    fir_upsample_conv2d,
    fir_upsample_conv2d_reference,
    minibatch_stddev,
    minibatch_stddev_reference,
    modulated_conv2d,
    modulated_conv2d_reference,
    pixel_norm,
    pixel_norm_reference,
    upsample_conv2d,
    upsample_conv2d_reference,
)

# numpy, under Triton's interpreter, warns about the NaN arithmetic these tests ask for
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _bias_act(clamp=None, pixel_norm=False):
    bias = torch.randn(8)
    kwargs = dict(act="lrelu", clamp=clamp, pixel_norm=pixel_norm)
    return (lambda x, **b: bias_act(x, bias, **kwargs, **b),
            lambda x: bias_act_reference(x, bias, **kwargs), (4, 8, 6, 6))


def _adain(shape):
    n, c = shape[:2]
    scale, shift, bias = torch.randn(n, c), torch.randn(n, c), torch.randn(c)
    noise, weight = torch.randn(n, 1, *shape[2:]), torch.randn(c)
    kwargs = dict(noise=noise, noise_weight=weight, bias=bias, negative_slope=0.2)
    return (lambda x, **b: adain(x, scale, shift, **kwargs, **b),
            lambda x: adain_reference(x, scale, shift, **kwargs), shape)


def _modulated_conv():
    weight, styles = torch.randn(5, 8, 3, 3), torch.randn(4, 8)
    return (lambda x, **b: modulated_conv2d(x, weight, styles, **b),
            lambda x: modulated_conv2d_reference(x, weight, styles), (4, 8, 6, 6))


def _resample(op, reference):
    weight, bias = torch.randn(5, 8, 3, 3), torch.randn(5)
    kwargs = dict(weight_gain=0.1, act="lrelu", pixel_norm=True)
    return (lambda x, **b: op(x, weight, bias, **kwargs, **b),
            lambda x: reference(x, weight, bias, **kwargs), (4, 8, 6, 6))


def _fir(op, reference):
    weight, bias = torch.randn(5, 8, 3, 3), torch.randn(5)
    kwargs = dict(weight_gain=0.1, act="lrelu", gain=1.4)  # a clamp would hide an inf
    return (lambda x, **b: op(x, weight, bias, **kwargs, **b),
            lambda x: reference(x, weight, bias, **kwargs), (4, 8, 6, 6))


CASES = {  # name: (fused op, its reference, x's shape)
    "bias_act": _bias_act(),
    "bias_act-clamp": _bias_act(clamp=1.0),
    "bias_act-pixel_norm": _bias_act(clamp=1.0, pixel_norm=True),
    "pixel_norm": (pixel_norm, pixel_norm_reference, (4, 8, 6, 6)),
    "minibatch_stddev": (lambda x, **b: minibatch_stddev(x, 2, 2, **b),
                         lambda x: minibatch_stddev_reference(x, 2, 2), (4, 8, 6, 6)),
    "adain": _adain((2, 8, 6, 6)),
    "adain-long-rows": _adain((2, 3, 70, 70)),  # the chunked kernels
    "modulated_conv2d": _modulated_conv(),
    "upsample_conv2d": _resample(upsample_conv2d, upsample_conv2d_reference),
    "conv2d_downsample": _resample(conv2d_downsample, conv2d_downsample_reference),
    "fir_upsample_conv2d": _fir(fir_upsample_conv2d, fir_upsample_conv2d_reference),
    "fir_conv2d_downsample": _fir(fir_conv2d_downsample, fir_conv2d_downsample_reference),
    "fir_upsample2d": (fir_upsample2d, fir_upsample2d_reference, (4, 8, 6, 6)),
}


def test_every_registered_op_has_a_case():
    assert {name.split("-")[0] for name in CASES} == set(OPS)


def _value_and_gradient(fn, x, grad_y):
    x = x.clone().requires_grad_()
    y = fn(x)
    (dx,) = torch.autograd.grad(y, x, grad_y)
    return y.detach(), dx


def _same_pattern(a, b, what, more_nan_allowed=False, finite_only=False, values=True):
    """a (fused) non-finite exactly where b (the reference) is; with ``more_nan_allowed``,
    NaN wherever b has one, and perhaps elsewhere, but never fewer; with ``finite_only``
    only which elements are finite must agree (and, with ``values``, the finite ones)."""
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
    finite = a.isfinite() & b.isfinite()
    assert_close(a[finite], b[finite], 1e-4, f"{what}, finite part")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=str)
@pytest.mark.parametrize("case", CASES)
def test_non_finite_inputs_propagate_as_in_the_reference(device, case, value):
    fused, reference, shape = CASES[case]
    x = torch.randn(shape)
    x[1, 2, 3, 3] = value
    grad_y = torch.randn_like(reference(x))
    y, dx = _value_and_gradient(lambda t: fused(t.to(device), backend="fused").cpu(), x, grad_y)
    y_ref, dx_ref = _value_and_gradient(reference, x, grad_y)
    # An infinity through the FIR definition's two convolutions meets weights of both
    # signs (inf - inf = NaN); through the one folded kernel, their sum (+-inf): both
    # non-finite at the same places, of different kinds, and the leaky ReLU's slope there
    # (NaN is not > 0, -inf neither, +inf is) changes the finite gradients they reach.
    folded = case.startswith("fir_") and case != "fir_upsample2d" and value == value
    _same_pattern(y, y_ref, "value", finite_only=folded)
    # With a clamp before pixel norm, a NaN makes its whole pixel NaN, so the fused
    # backward, which reads which elements were clamped off the output, cannot tell: it
    # gives NaN where the reference's clamp gives a zero gradient. More NaN, never fewer.
    _same_pattern(dx, dx_ref, "gradient",
                  more_nan_allowed=case == "bias_act-pixel_norm" and value != value,
                  finite_only=folded, values=False)
