"""fastpgan.nn's BiasAct, ToRGB, FromRGB and FadeIn."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close, leaf64

from fastpgan.nn import BiasAct, FadeIn, FromRGB, ToRGB


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_bias_act_module_matches_its_formula(device, lr_mul):
    layer = BiasAct(6, "lrelu", negative_slope=0.1, gain=1.5, pixel_norm=True, lr_mul=lr_mul,
                    backend="fused").to(device)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 6, 5, 4, device=device, requires_grad=True)
    y = layer(x)
    x64, b64 = leaf64(x), leaf64(layer.bias)
    h = F.leaky_relu(x64 + (b64 * lr_mul).view(1, -1, 1, 1), 0.1) * 1.5
    y64 = h / h.square().mean(1, keepdim=True).add(1e-8).sqrt()
    head = torch.randn_like(y)
    (y * head).sum().backward()
    (y64 * head.double().cpu()).sum().backward()
    assert_close(y, y64, 1e-5, "value")
    assert_close(x.grad, x64.grad, 1e-5, "input grad")
    assert_close(layer.bias.grad, b64.grad, 1e-5, "bias grad")


def test_bias_act_without_bias_and_bad_settings():
    assert BiasAct(4, bias=False).bias is None
    with pytest.raises(ValueError, match="activation must be one of"):
        BiasAct(4, "gelu")
    with pytest.raises(ValueError, match="pixel norm follows linear, relu or lrelu"):
        BiasAct(4, "tanh", pixel_norm=True)


def test_to_rgb_is_linear_1x1_with_unit_gain():
    layer = ToRGB(16, 3, backend="reference")
    x = torch.randn(2, 16, 4, 4)
    expected = F.conv2d(x, layer.weight / math.sqrt(16), layer.bias)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_from_rgb_is_1x1_with_leaky_relu():
    layer = FromRGB(3, 8, backend="reference")
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 4, 4)
    expected = F.leaky_relu(F.conv2d(x, layer.weight * math.sqrt(2 / 3), layer.bias), 0.2)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_fade_in_endpoints_are_exact_and_the_middle_is_the_weighted_sum():
    old, new = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    fade = FadeIn()
    assert torch.equal(fade(old, new, 0.0), old)
    assert torch.equal(fade(old, new, 1.0), new)
    assert torch.allclose(fade(old, new, 0.25), 0.75 * old + 0.25 * new, atol=1e-6)
    with pytest.raises(ValueError, match="alpha must be in"):
        fade(old, new, -0.1)
