"""fastpgan.ops.minibatch_stddev: the fused path against its float64 definition."""

import sys

import pytest
import torch
from helpers import TOLERANCE, assert_close, leaf64, random_input, third_order

from fastpgan.nn import MinibatchStdDev
from fastpgan.ops import minibatch_stddev, minibatch_stddev_reference
from fastpgan.ops.minibatch_stddev import minibatch_stddev_backward_reference

CASES = [  # (shape, group_size, num_channels, channels_last)
    ((8, 21, 4, 4), 4, 1, False),
    ((8, 21, 4, 4), 4, 1, True),
    ((6, 16, 3, 5), 3, 2, False),
    ((6, 16, 3, 5), 3, 2, True),
    ((3, 10, 4, 4), 4, 1, False),  # batch smaller than the group: G = N
    ((12, 6, 1, 1), 4, 3, True),
    ((2, 5, 7, 2), 1, 5, False),  # groups of one: the statistic is sqrt(eps)
    ((16, 40, 9, 9), 4, 1, False),  # several tiles per channel group
    ((8, 40, 9, 9), 4, 2, True),  # several flat tiles a sample, rows split between them
    ((12, 6, 1, 1), 4, 3, False),  # 1 x 1 maps: NCHW is also pixel rows
]


def _ids(case):
    shape, g, f, channels_last = case
    return f"{'x'.join(map(str, shape))}-G{g}-F{f}{'-cl' if channels_last else ''}"


def _looped_definition(x, group_size, num_channels, eps):
    """The layer written sample by sample from the paper's description (float64)."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    m = n // g
    cf = c // num_channels
    out = torch.empty(n, c + num_channels, h, w, dtype=torch.float64)
    out[:, :c] = x
    for i in range(n):
        members = x[[k * m + i % m for k in range(g)]]  # the official reshape's group
        for f in range(num_channels):
            part = members[:, f * cf:(f + 1) * cf]
            var = ((part - part.mean(0)) ** 2).mean(0)
            out[i, c + f] = (var + eps).sqrt().mean()
    return out


@pytest.mark.parametrize("case", CASES[:3] + CASES[4:6], ids=_ids)
def test_reference_matches_the_looped_definition(case):
    shape, g, f, _ = case
    x = torch.randn(shape, dtype=torch.float64)
    assert_close(minibatch_stddev_reference(x, g, f), _looped_definition(x, g, f, 1e-8), 1e-12,
                 "reference")


@pytest.mark.parametrize("case", CASES[:4], ids=_ids)
def test_closed_form_backward_matches_autograd_of_the_reference(case):
    shape, g, f, _ = case
    x = leaf64(torch.randn(shape))
    y = minibatch_stddev_reference(x, g, f)
    grad_out = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, grad_out)
    actual = minibatch_stddev_backward_reference(grad_out, x, g, f, 1e-8)
    assert_close(actual, expected, 1e-12, "dx")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_values_and_gradients_match_float64(device, poisoned_outputs, case):
    shape, g, f, channels_last = case
    x = random_input(shape, device, channels_last=channels_last)
    y = minibatch_stddev(x, g, f, backend="fused")
    grad_out = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, grad_out)

    x64 = leaf64(x)
    y64 = minibatch_stddev_reference(x64, g, f)
    (dx64,) = torch.autograd.grad(y64, x64, grad_out.double().cpu())
    assert y.dtype == x.dtype and y.shape == (shape[0], shape[1] + f, *shape[2:])
    assert_close(y, y64, 1e-5, "value")
    assert_close(dx, dx64, 1e-5, "dx")
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert dx.is_contiguous(memory_format=torch.channels_last)


def test_plain_backward_runs_the_fused_kernel(device, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("closed-form reference used for a first-order backward")

    # The package exports a function of the module's name, so patch the module object.
    module = sys.modules["fastpgan.ops.minibatch_stddev"]
    monkeypatch.setattr(module, "minibatch_stddev_backward_reference", fail)
    x = random_input((4, 8, 2, 2), device)
    minibatch_stddev(x, backend="fused").square().sum().backward()
    assert torch.isfinite(x.grad).all()


def _gradient_penalty(fn, x, head):
    """WGAN-GP style: (||d head(fn(x)) / dx|| - 1)^2 summed, to be differentiated again."""
    score = (torch.tanh(fn(x)) * head).sum()
    (grad,) = torch.autograd.grad(score, x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().sum()


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[4]], ids=_ids)
def test_second_gradients_match_float64(device, case):
    shape, g, f, channels_last = case
    x = random_input(shape, device, channels_last=channels_last)
    head = torch.randn(shape[0], shape[1] + f, *shape[2:], device=device)
    penalty = _gradient_penalty(lambda x: minibatch_stddev(x, g, f, backend="fused"), x, head)
    (d2x,) = torch.autograd.grad(penalty, x)

    x64 = leaf64(x)
    penalty64 = _gradient_penalty(lambda x: minibatch_stddev_reference(x, g, f), x64,
                                  head.double().cpu())
    (d2x64,) = torch.autograd.grad(penalty64, x64)
    assert_close(penalty, penalty64, 1e-5, "penalty")
    assert_close(d2x, d2x64, 1e-5, "d2x")


@pytest.mark.parametrize("case", [((4, 4, 1, 2), 2, 2), ((3, 2, 2, 1), 4, 1)])
def test_gradcheck_and_gradgradcheck_in_float64(device, case):
    shape, g, f = case
    x = random_input(shape, device, torch.float64)

    def fn(x):
        return minibatch_stddev(x, g, f, backend="fused")

    assert torch.autograd.gradcheck(fn, (x,))
    # Random projections of the Hessian: the full one takes minutes in the interpreter.
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_within_1e_2(device, poisoned_outputs, dtype):
    x = random_input((8, 24, 4, 4), device, dtype, channels_last=True)
    y = minibatch_stddev(x, 4, 2, backend="fused")
    grad_out = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, grad_out)
    x64 = leaf64(x)
    y64 = minibatch_stddev_reference(x64, 4, 2)
    (dx64,) = torch.autograd.grad(y64, x64, grad_out.double().cpu())
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y64, TOLERANCE[dtype], "value")
    assert_close(dx, dx64, TOLERANCE[dtype], "dx")


def test_large_offsets_from_the_group_mean_keep_their_precision(device):
    """Values of 1000 with a spread of 0.01: sum(x^2) - sum(x)^2 would cancel to noise."""
    x = (1000 + 0.01 * torch.randn(8, 6, 3, 3, device=device)).requires_grad_()
    y = minibatch_stddev(x, backend="fused")
    assert_close(y[:, 6:], minibatch_stddev_reference(leaf64(x))[:, 6:], 1e-4, "statistic")


def test_opcheck(device):
    x = random_input((6, 8, 3, 2), device, channels_last=True)
    torch.library.opcheck(torch.ops.fastpgan.minibatch_stddev.default, (x, 3, 2, 1e-8))
    grad_out = torch.randn(6, 10, 3, 2, device=device)
    torch.library.opcheck(torch.ops.fastpgan.minibatch_stddev_backward.default,
                          (grad_out, x.detach(), 3, 2, 1e-8))


def test_torch_compile_runs_through_without_graph_break(device):
    x = random_input((8, 12, 4, 4), device)

    def loss(x):
        return minibatch_stddev(x * 2, backend="fused").square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    (expected,) = torch.autograd.grad(loss(x), x)
    (actual,) = torch.autograd.grad(compiled(x), x)
    assert_close(actual, expected, 1e-6, "dx")


@pytest.mark.parametrize("shape,kwargs,message", [
    ((6, 4, 2, 2), dict(group_size=4), "N = 6 is not a multiple of the group size G = "),
    ((4, 6, 2, 2), dict(num_channels=4), "C = 6 channels do not split"),
    ((4, 6, 2), dict(), "must be \\(N, C, H, W\\)"),
    ((0, 6, 2, 2), dict(), "empty"),
    ((4, 6, 2, 2), dict(group_size=0), "must be >= 1"),
])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_bad_arguments_raise_value_error_naming_the_problem(shape, kwargs, message, backend):
    with pytest.raises(ValueError, match=message):
        minibatch_stddev(torch.randn(shape), backend=backend, **kwargs)


def test_module_matches_the_op(device):
    layer = MinibatchStdDev(group_size=2, num_channels=3, backend="fused")
    x = torch.randn(4, 9, 3, 3, device=device)
    assert_close(layer(x), minibatch_stddev_reference(x.double().cpu(), 2, 3), 1e-5, "module")
    assert "group_size=2, num_channels=3" in repr(layer)


def test_third_order_gradients_match_float64(device):
    """The double backward is itself differentiable: a third derivative is exact too."""
    x = random_input((8, 6, 3, 3), device, torch.float64)
    fused = third_order(lambda x: minibatch_stddev(x, 4, 2, backend="fused"), x)
    reference = third_order(lambda x: minibatch_stddev_reference(x, 4, 2), x)
    for order, (a, b) in enumerate(zip(fused, reference, strict=True), 1):
        assert_close(a, b, 1e-12, f"order {order}")


@pytest.mark.parametrize("n,group", [(14, 2), (6, 3), (3, 3), (8, 4), (7, 1), (1, 1)])
def test_fit_batch_groups_by_the_largest_divisor_not_above_the_group_size(device, n, group):
    """The discriminator's layer: the paper's 14 and 6 images form groups of 2 and 3."""
    layer = MinibatchStdDev(group_size=4, fit_batch=True, backend="fused")
    x = torch.randn(n, 5, 4, 4, device=device)
    assert_close(layer(x), minibatch_stddev_reference(x.double().cpu(), group), 1e-5, "value")
    assert "fit_batch=True" in repr(layer)
    if n % min(4, n):
        with pytest.raises(ValueError, match="not a multiple of the group size"):
            MinibatchStdDev(group_size=4)(x)
