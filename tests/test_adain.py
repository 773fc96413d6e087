"""fastpgan.ops.adain and the StyleGAN layers: the fused path against its float64 definition."""

import sys

import pytest
import torch
from helpers import TOLERANCE, assert_close, leaf64, random_input, third_order

from fastpgan.nn import AdaIN, NoiseInjection
from fastpgan.ops import adain, adain_reference
from fastpgan.ops.adain import adain_backward_reference

CASES = [  # (shape, channels_last, noise batch (0: no noise), bias, negative_slope)
    ((4, 21, 4, 4), False, 4, True, 0.2),
    ((4, 21, 4, 4), True, 4, True, 0.2),
    ((3, 6, 5, 7), True, 1, False, 0.2),  # one noise map for the batch
    ((2, 40, 9, 9), True, 2, True, None),  # several channel blocks
    ((2, 3, 70, 70), False, 2, True, 0.2),  # rows longer than one tile: split into chunks
    ((2, 40, 20, 20), True, 1, True, 0.2),  # the same in channels_last
    ((2, 5, 3, 3), False, 0, False, None),  # plain AdaIN
    ((1, 3, 1, 1), False, 1, True, 0.2),  # one pixel: normalizes to zero
]


def _ids(case):
    shape, channels_last, noise_n, bias, slope = case
    return (f"{'x'.join(map(str, shape))}{'-cl' if channels_last else ''}-noise{noise_n}"
            f"{'-bias' if bias else ''}-slope{slope}")


def _inputs(case, device, dtype=torch.float32):
    """Leaf tensors (x, scale, shift, noise, noise_weight, bias) and the keyword arguments."""
    shape, channels_last, noise_n, with_bias, slope = case
    n, c, h, w = shape
    x = random_input(shape, device, dtype, channels_last)
    scale = (1 + 0.5 * torch.randn(n, c, device=device)).requires_grad_()
    shift = torch.randn(n, c, device=device, requires_grad=True)
    noise = torch.randn(noise_n, 1, h, w, device=device, requires_grad=True) if noise_n else None
    weight = torch.randn(c, device=device, requires_grad=True) if noise_n else None
    bias = torch.randn(c, device=device, requires_grad=True) if with_bias else None
    return (x, scale, shift, noise, weight, bias), slope


def _call(fn, tensors, slope, **kwargs):
    x, scale, shift, noise, weight, bias = tensors
    return fn(x, scale, shift, noise=noise, noise_weight=weight, bias=bias,
              negative_slope=slope, **kwargs)


def _grads(out, tensors, grad_out=None, **kwargs):
    leaves = [t for t in tensors if t is not None]
    return torch.autograd.grad(out, leaves, grad_out, **kwargs)


def _as64(tensors):
    return tuple(None if t is None else leaf64(t) for t in tensors)


def _fused_and_float64(tensors, slope):
    """(y, grads) of the fused op and of the float64 reference, for one random grad_y."""
    y = _call(adain, tensors, slope, backend="fused")
    grad_y = torch.randn_like(y)
    tensors64 = _as64(tensors)
    y64 = _call(adain_reference, tensors64, slope)
    return (y, _grads(y, tensors, grad_y),
            y64, _grads(y64, tensors64, grad_y.double().cpu()))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_values_and_gradients_match_float64(device, poisoned_outputs, case):
    tensors, slope = _inputs(case, device)
    y, grads, y64, grads64 = _fused_and_float64(tensors, slope)
    assert y.dtype == tensors[0].dtype
    assert_close(y, y64, 1e-5, "value")
    names = [n for n, t in zip(("dx", "dscale", "dshift", "dnoise", "dnoise_weight", "dbias"),
                               tensors, strict=True) if t is not None]
    for name, g, g64 in zip(names, grads, grads64, strict=True):
        if name == "dbias" and case[4] is None:
            # Without an activation the norm removes any bias: its gradient is 0 up to
            # rounding, which a relative error cannot measure.
            assert g.abs().max() < 1e-4, "dbias"
        else:
            assert_close(g, g64, 1e-5, name)
    if case[1]:
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert grads[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3]], ids=_ids)
def test_closed_form_backward_matches_autograd_of_the_reference(case):
    tensors, slope = _inputs(case, "cpu", torch.float64)
    tensors = _as64(tensors)
    y = _call(adain_reference, tensors, slope)
    grad_y = torch.randn_like(y)
    expected = _grads(y, tensors, grad_y)
    x, scale, _, noise, weight, bias = tensors
    actual = [g for g in adain_backward_reference(grad_y, x, scale, noise, weight, bias, slope,
                                                  1e-8) if g is not None]
    for i, (g, ref) in enumerate(zip(actual, expected, strict=True)):
        if i == len(actual) - 1 and bias is not None and slope is None:
            assert g.abs().max() < 1e-10, "dbias"  # zero up to rounding, as above
        else:
            assert_close(g, ref, 1e-12, "closed form")


def test_plain_backward_runs_the_fused_kernel(device, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("closed-form reference used for a first-order backward")

    # The package exports a function of the module's name, so patch the module object.
    monkeypatch.setattr(sys.modules["fastpgan.ops.adain"], "_closed_form_backward", fail)
    tensors, slope = _inputs(CASES[0], device)
    _call(adain, tensors, slope, backend="fused").square().sum().backward()
    assert torch.isfinite(tensors[0].grad).all()


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=_ids)
def test_second_gradients_match_float64(device, case):
    """A gradient penalty through the layer: the backward is differentiated again."""
    tensors, slope = _inputs(case, device)
    head = torch.randn(case[0], device=device)

    def penalty(fn, tensors):
        score = (torch.tanh(_call(fn, tensors, slope)) * head.to(tensors[0])).sum()
        (grad,) = torch.autograd.grad(score, tensors[0], create_graph=True)
        return grad.square().sum()

    fused = penalty(lambda *a, **k: adain(*a, backend="fused", **k), tensors)
    tensors64 = _as64(tensors)
    reference = penalty(adain_reference, tensors64)
    assert_close(fused, reference, 1e-5, "penalty")
    for g, g64 in zip(_grads(fused, tensors), _grads(reference, tensors64), strict=True):
        assert_close(g, g64, 1e-5, "second gradient")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_within_1e_2(device, poisoned_outputs, dtype):
    tensors, slope = _inputs(CASES[1], device, dtype)
    y, grads, y64, grads64 = _fused_and_float64(tensors, slope)
    assert y.dtype == dtype and grads[0].dtype == dtype
    assert_close(y, y64, TOLERANCE[dtype], "value")
    for g, g64 in zip(grads, grads64, strict=True):
        assert_close(g, g64, TOLERANCE[dtype], "gradient")


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 3, 70, 70)])  # one tile; two passes
def test_large_means_keep_their_precision(device, shape):
    """Values of 1000 with a spread of 0.01: naive sum(x^2) - sum(x)^2 cancels to noise.

    float32 holds the mean of such a row only to 3e-5, 0.3 % of the spread, so the
    bound is 1e-2 (torch's own float32 reference is off by about 0.5 % here).
    """
    x = 1000 + 0.01 * torch.randn(shape, device=device)
    scale, shift = torch.ones(shape[:2], device=device), torch.zeros(shape[:2], device=device)
    y = adain(x, scale, shift, backend="fused")
    assert_close(y, adain_reference(x.double().cpu(), scale.double().cpu(),
                                    shift.double().cpu()), 1e-2, "value")


def test_opcheck(device):
    tensors, slope = _inputs(CASES[2], device)
    x, scale, shift, noise, weight, bias = (None if t is None else t.detach() for t in tensors)
    args = (x, scale, shift, noise, weight, bias, slope, 1e-8)
    torch.library.opcheck(torch.ops.fastpgan.adain.default, args)
    y, mean, rstd = torch.ops.fastpgan.adain(*args)
    torch.library.opcheck(torch.ops.fastpgan.adain_backward.default,
                          (torch.randn_like(y), x, scale, noise, weight, bias, mean, rstd, slope,
                           1e-8))


def test_torch_compile_runs_through_without_graph_break(device):
    tensors, slope = _inputs(CASES[0], device)

    def loss(*tensors):
        return _call(adain, tensors, slope, backend="fused").square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    expected = _grads(loss(*tensors), tensors)
    actual = _grads(compiled(*tensors), tensors)
    for g, ref in zip(actual, expected, strict=True):
        assert_close(g, ref, 1e-6, "gradient")


@pytest.mark.parametrize("change,message", [
    (dict(x=torch.randn(2, 3, 4)), "x must be \\(N, C, H, W\\)"),
    (dict(scale=torch.randn(2, 4)), "scale must have shape \\(2, 3\\)"),
    (dict(noise=torch.randn(2, 1, 4, 4)), "noise and noise_weight must be given together"),
    (dict(noise=torch.randn(2, 2, 4, 4), noise_weight=torch.randn(3)), "noise must have shape"),
    (dict(bias=torch.randn(4)), "bias must have shape \\(3,\\)"),
    (dict(negative_slope=-1.0), "negative_slope must be >= 0"),
])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_bad_arguments_raise_value_error_naming_the_problem(change, message, backend):
    kwargs = dict(x=torch.randn(2, 3, 4, 4), scale=torch.randn(2, 3), shift=torch.randn(2, 3))
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        adain(backend=backend, **kwargs)


def test_noise_injection_modes():
    layer = NoiseInjection(4, resolution=3)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.zeros(2, 4, 3, 3)
    assert not torch.equal(layer(x), layer(x))  # fresh noise every call
    layer.noise_mode = "const"
    assert torch.equal(layer(x), layer(x)) and torch.equal(layer(x)[0], layer(x)[1])
    layer.noise_mode = "none"
    assert torch.equal(layer(x), x)
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        layer.noise_mode = "sometimes"
    with pytest.raises(ValueError, match="needs a resolution"):
        NoiseInjection(4, noise_mode="const")
    assert "fixed_noise" in layer.state_dict()


def test_adain_module_is_the_styled_epilogue(device):
    layer = AdaIN(6, 10, resolution=5, backend="fused").to(device)
    layer.noise.noise_mode = "const"
    with torch.no_grad():
        layer.noise.weight.normal_()
        layer.bias.normal_()
    x, w = torch.randn(3, 6, 5, 5, device=device), torch.randn(3, 10, device=device)
    scale, shift = layer.style(w).chunk(2, dim=1)
    expected = adain_reference(x.double().cpu(), 1 + scale.double().cpu(), shift.double().cpu(),
                               noise=layer.noise.fixed_noise.double().cpu(),
                               noise_weight=layer.noise.weight.double().cpu(),
                               bias=layer.bias.double().cpu(), negative_slope=0.2)
    assert_close(layer(x, w), expected, 1e-5, "module")


def test_third_order_gradients_match_float64(device):
    """The double backward is itself differentiable: a third derivative is exact too."""
    tensors, slope = _inputs(CASES[1], device, torch.float64)
    x, *rest = (None if t is None else t.detach().requires_grad_() for t in tensors)
    fused = third_order(lambda x: _call(adain, (x, *rest), slope, backend="fused"), x)
    reference = third_order(lambda x: _call(adain_reference, (x, *rest), slope), x)
    for order, (a, b) in enumerate(zip(fused, reference, strict=True), 1):
        assert_close(a, b, 1e-10, f"order {order}")
