"""fastpgan.ops.pixel_norm against its definition, and its fused path in float64 terms."""

import numpy as np
import pytest
import torch
from helpers import assert_close, leaf64, random_input

from fastpgan.ops import pixel_norm, pixel_norm_reference


def test_reference_is_the_papers_formula():
    x = np.random.default_rng().standard_normal((3, 7, 2, 5))
    expected = x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)
    actual = pixel_norm_reference(torch.from_numpy(x))
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("shape,channels_last", [
    ((16, 512), False),
    ((7, 3), False),
    ((1, 21, 1, 1), False),
    ((4, 17, 4, 4), True),
    ((3, 10, 5, 7), False),
    ((2, 6, 3, 2, 4), True),  # 3-D maps, channels_last_3d
])
def test_fused_matches_float64_with_gradients(device, poisoned_outputs, shape, channels_last):
    x = random_input(shape, device, channels_last=channels_last)
    y = pixel_norm(x, backend="fused")
    grad_y = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, grad_y)
    x64 = leaf64(x)
    y64 = pixel_norm_reference(x64)
    (dx64,) = torch.autograd.grad(y64, x64, grad_y.double().cpu())
    assert_close(y, y64, 1e-5, "value")
    assert_close(dx, dx64, 1e-5, "dx")
    if channels_last:
        layout = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        assert y.is_contiguous(memory_format=layout)
        assert dx.is_contiguous(memory_format=layout)


def test_fused_second_gradient_matches_float64(device):
    x = random_input((3, 9, 2, 3), device)
    head = torch.randn(x.shape, device=device)

    def hessian_vector(fn, x, head):
        (g,) = torch.autograd.grad((fn(x).sin() * head).sum(), x, create_graph=True)
        return torch.autograd.grad(g.square().sum(), x)[0]

    actual = hessian_vector(lambda t: pixel_norm(t, backend="fused"), x, head)
    expected = hessian_vector(pixel_norm_reference, leaf64(x), head.double().cpu())
    assert_close(actual, expected, 1e-5, "d2x")


def test_eps_dominates_for_zero_input(device):
    x = torch.zeros(2, 4, 3, 3, device=device)
    assert torch.equal(pixel_norm(x, backend="fused"), x)


def test_one_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(N, C, \.\.\.\) with at least 2 dimensions"):
        pixel_norm(torch.randn(8))


def test_fused_third_gradient_matches_float64(device):
    """Third order reaches the gradient of the saved inverse norm (the g_r kernel input)."""
    x = random_input((2, 6, 2, 2), device)
    v, w = torch.randn(x.shape, device=device), torch.randn(x.shape, device=device)

    def third(fn, x, v, w):
        (g1,) = torch.autograd.grad(fn(x).sin().sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad((g1 * v).sum(), x, create_graph=True)
        return torch.autograd.grad((g2 * w).sum(), x)[0]

    actual = third(lambda t: pixel_norm(t, backend="fused"), x, v, w)
    expected = third(pixel_norm_reference, leaf64(x), v.double().cpu(), w.double().cpu())
    assert_close(actual, expected, 1e-5, "d3x")
