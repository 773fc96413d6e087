"""fastpgan.nn: equalized-learning-rate layers and PixelNorm."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close, leaf64

from fastpgan.nn import EqualizedConv2d, EqualizedLinear, PixelNorm
from fastpgan.ops import bias_act_reference, pixel_norm_reference


def test_conv_is_a_drop_in_for_nn_conv2d():
    ours = EqualizedConv2d(6, 10, 3, padding=1, bias=True)
    theirs = torch.nn.Conv2d(6, 10, 3, padding=1, bias=True)
    assert isinstance(ours, torch.nn.Conv2d)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())


def test_linear_is_a_drop_in_for_nn_linear():
    ours, theirs = EqualizedLinear(7, 5), torch.nn.Linear(7, 5)
    assert isinstance(ours, torch.nn.Linear)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 7)
    assert ours(x).shape == theirs(x).shape == (3, 5)


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_runtime_he_scaling_and_lr_mul(lr_mul):
    layer = EqualizedLinear(512, 256, he_gain=math.sqrt(2), lr_mul=lr_mul, bias_init=1.0)
    assert layer.weight.std().item() == pytest.approx(1.0 / lr_mul, rel=0.02)
    assert layer.weight_gain == pytest.approx(math.sqrt(2) * lr_mul / math.sqrt(512))
    x = torch.randn(4, 512)
    expected = F.linear(x, layer.weight * math.sqrt(2) * lr_mul / math.sqrt(512),
                        layer.bias * lr_mul)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    # The initial bias is bias_init whatever lr_mul is.
    assert torch.allclose(layer.bias * lr_mul, torch.ones(256))


def test_effective_weight_has_he_init_statistics():
    conv = EqualizedConv2d(64, 128, 3, padding=1)
    effective = conv.weight * conv.weight_gain
    assert effective.std().item() == pytest.approx(math.sqrt(2) / math.sqrt(64 * 9), rel=0.03)


def test_conv_epilogue_matches_reference_definition(device):
    conv = EqualizedConv2d(5, 7, 3, padding=1, activation="lrelu", pixel_norm=True,
                           backend="fused").to(device)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 5, 6, 9, device=device).to(memory_format=torch.channels_last)
    head = torch.randn(2, 7, 6, 9, device=device)
    y = conv(x)
    (y * head).sum().backward()
    x64 = leaf64(x)
    w64, b64 = leaf64(conv.weight), leaf64(conv.bias)
    y64 = bias_act_reference(F.conv2d(x64, w64 * conv.weight_gain, padding=1), b64,
                             act="lrelu", pixel_norm=True)
    (y64 * head.double().cpu()).sum().backward()
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, y64, 1e-5, "value")
    assert_close(conv.weight.grad, w64.grad, 1e-5, "weight grad")
    assert_close(conv.bias.grad, b64.grad, 1e-5, "bias grad")


def test_linear_epilogue_on_extra_leading_dimensions(device):
    layer = EqualizedLinear(6, 4, activation="lrelu", act_gain=math.sqrt(2),
                            backend="fused").to(device)
    x = torch.randn(3, 2, 6, device=device)
    y = layer(x)
    expected = bias_act_reference(F.linear(x, layer.weight * layer.weight_gain).view(-1, 4),
                                  layer.bias, act="lrelu", gain=math.sqrt(2)).view(3, 2, 4)
    assert y.shape == (3, 2, 4)
    assert_close(y, expected, 1e-5, "value")


def test_fused_and_reference_backends_agree_in_a_small_network(device):
    torch.manual_seed(0)

    def net(backend):
        return torch.nn.Sequential(
            EqualizedConv2d(3, 8, 3, padding=1, activation="lrelu", pixel_norm=True,
                            backend=backend),
            EqualizedConv2d(8, 8, 3, padding=1, padding_mode="reflect", activation="lrelu",
                            backend=backend),
            PixelNorm(backend=backend),
        ).to(device)

    fused = net("fused")
    reference = net("reference")
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 8, 8, device=device)
    assert_close(fused(x), reference(x), 1e-5, "network output")


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="activation must be one of"):
        EqualizedConv2d(3, 3, 3, activation="swish")
    with pytest.raises(ValueError, match="lr_mul"):
        EqualizedLinear(3, 3, lr_mul=0)


def test_pixel_norm_module(device):
    x = torch.randn(4, 9, 3, 3, device=device)
    assert_close(PixelNorm(backend="fused")(x), pixel_norm_reference(x.double()), 1e-5, "value")
    assert "eps=1e-08" in repr(PixelNorm())
