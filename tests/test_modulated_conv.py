"""fastpgan.ops.modulated_conv2d: the activation-modulation rewrite against the definition."""

import pytest
import torch
import torch.nn.functional as F
from helpers import TOLERANCE, assert_close, leaf64, random_input

from fastpgan.nn import ModulatedConv2d
from fastpgan.ops import modulated_conv2d, modulated_conv2d_reference

CASES = [  # (x shape, out channels, kernel, channels_last, demodulate)
    ((3, 5, 6, 7), 4, 3, False, True),
    ((3, 5, 6, 7), 4, 3, True, True),
    ((2, 6, 4, 4), 3, 1, False, True),  # toRGB-style 1x1
    ((1, 4, 5, 5), 2, 3, False, False),  # modulation only, batch of one
    ((4, 3, 8, 8), 5, 5, True, True),
]


def _ids(case):
    shape, o, k, channels_last, demodulate = case
    return f"{'x'.join(map(str, shape))}-o{o}-k{k}{'-cl' if channels_last else ''}-d{demodulate:d}"


def _inputs(case, device, dtype=torch.float32):
    shape, o, k, channels_last, _ = case
    x = random_input(shape, device, dtype, channels_last)
    weight = torch.randn(o, shape[1], k, k, device=device, requires_grad=True)
    styles = (1 + 0.5 * torch.randn(shape[0], shape[1], device=device)).requires_grad_()
    return x, weight, styles


def test_reference_matches_a_per_sample_loop():
    x, weight, styles = (t.double() for t in _inputs(CASES[0], "cpu"))
    expected = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        expected.append(F.conv2d(x[n:n + 1], w, padding=1))
    assert_close(modulated_conv2d_reference(x, weight, styles), torch.cat(expected), 1e-12,
                 "reference")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_values_and_gradients_match_float64(device, case):
    x, weight, styles = _inputs(case, device)
    demodulate = case[4]
    y = modulated_conv2d(x, weight, styles, demodulate=demodulate, backend="fused")
    grad_y = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, weight, styles), grad_y)
    leaves64 = tuple(leaf64(t) for t in (x, weight, styles))
    y64 = modulated_conv2d_reference(*leaves64, demodulate=demodulate)
    grads64 = torch.autograd.grad(y64, leaves64, grad_y.double().cpu())
    assert_close(y, y64, 1e-5, "value")
    for name, g, g64 in zip(("dx", "dweight", "dstyles"), grads, grads64, strict=True):
        assert_close(g, g64, 1e-5, name)


def test_gradcheck_and_gradgradcheck_in_float64(device):
    x, weight, styles = (t.detach().double().requires_grad_()
                         for t in _inputs(((2, 3, 4, 4), 2, 3, False, True), device))

    def fn(x, weight, styles):
        return modulated_conv2d(x, weight, styles, backend="fused")

    assert torch.autograd.gradcheck(fn, (x, weight, styles))
    assert torch.autograd.gradgradcheck(fn, (x, weight, styles), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_within_1e_2(device, dtype):
    x, weight, styles = _inputs(CASES[1], device)
    x = x.detach().to(dtype).requires_grad_()
    y = modulated_conv2d(x, weight, styles, backend="fused")
    (dx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    leaves64 = tuple(leaf64(t) for t in (x, weight, styles))
    y64 = modulated_conv2d_reference(*leaves64)
    (dx64,) = torch.autograd.grad(y64, leaves64[0], torch.ones_like(y64))
    assert y.dtype == dtype
    assert_close(y, y64, TOLERANCE[dtype], "value")
    assert_close(dx, dx64, TOLERANCE[dtype], "dx")


@pytest.mark.parametrize("change,message", [
    (dict(x=torch.randn(2, 3, 4)), "x must be \\(N, I, H, W\\)"),
    (dict(weight=torch.randn(4, 2, 3, 3)), "weight takes 2 input channels, x has 3"),
    (dict(weight=torch.randn(4, 3, 2, 2)), "square and odd"),
    (dict(styles=torch.randn(3, 3)), "styles must have shape \\(2, 3\\)"),
])
def test_bad_arguments_raise_value_error_naming_the_problem(change, message):
    kwargs = dict(x=torch.randn(2, 3, 4, 4), weight=torch.randn(4, 3, 3, 3),
                  styles=torch.randn(2, 3))
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        modulated_conv2d(**kwargs)


def test_module_starts_unmodulated_and_matches_the_op(device):
    layer = ModulatedConv2d(6, 4, 3, w_dim=8, backend="fused").to(device)
    x, w = torch.randn(2, 6, 5, 5, device=device), torch.zeros(2, 8, device=device)
    with torch.no_grad():
        layer.style.weight.zero_()  # styles = the bias, initialized to 1
    weight = layer.weight.double().cpu() / (6 * 9) ** 0.5
    expected = modulated_conv2d_reference(x.double().cpu(), weight,
                                          torch.ones(2, 6, dtype=torch.float64))
    assert_close(layer(x, w), expected, 1e-5, "module")


@pytest.mark.parametrize("demodulate", [True, False])
def test_opcheck(demodulate):
    """The rewrite is a registered ATen composite: schema, fakes and autograd hold."""
    x, weight, styles = (random_input((2, 3, 5, 5), "cpu", channels_last=True),
                         random_input((4, 3, 3, 3), "cpu"), random_input((2, 3), "cpu"))
    torch.library.opcheck(torch.ops.fastpgan.modulated_conv2d.default,
                          (x, weight, styles, demodulate, 1e-8, 1))
