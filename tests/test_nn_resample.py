"""fastpgan.nn.UpsampleConv2d and ConvDownsample2d: EqualizedConv2d's parameters, one pass."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close, leaf64

from fastpgan.nn import ConvDownsample2d, EqualizedConv2d, UpsampleConv2d


@pytest.mark.parametrize("lr_mul", [1.0, 0.5])
@pytest.mark.parametrize("layer_type", [UpsampleConv2d, ConvDownsample2d])
def test_matches_equalized_conv_with_resampling_and_shares_its_checkpoint(device, layer_type,
                                                                          lr_mul):
    generator = layer_type is UpsampleConv2d
    settings = dict(activation="lrelu", pixel_norm=generator, lr_mul=lr_mul)
    layer = layer_type(6, 4, 3, **settings, backend="fused").to(device)
    plain = EqualizedConv2d(6, 4, 3, padding=1, **settings, backend="reference").to(device)
    with torch.no_grad():
        layer.bias.normal_()
    plain.load_state_dict(layer.state_dict())  # same names and shapes both ways
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(3, 6, 5, 7, device=device).to(memory_format=torch.channels_last)
    x.requires_grad_()
    y = layer(x)
    x64 = leaf64(x)
    plain64 = plain.double().cpu()
    y64 = (plain64(F.interpolate(x64, scale_factor=2, mode="nearest")) if generator else
           _pooled_plain(plain64, x64))
    head = torch.randn_like(y)
    (y * head).sum().backward()
    (y64 * head.double().cpu()).sum().backward()
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, y64, 1e-5, "value")
    assert_close(x.grad, x64.grad, 1e-5, "input grad")
    assert_close(layer.weight.grad, plain64.weight.grad, 1e-5, "weight grad")
    assert_close(layer.bias.grad, plain64.bias.grad, 1e-5, "bias grad")


def _pooled_plain(plain: EqualizedConv2d, x: torch.Tensor) -> torch.Tensor:
    """avg_pool2d between the convolution and the epilogue, the downsample's definition."""
    h = F.avg_pool2d(F.conv2d(x, plain.weight * plain.weight_gain, padding=1), 2)
    return plain._epilogue(h, plain.bias * plain.lr_mul)


def test_output_sizes_and_1x1_kernels():
    up = UpsampleConv2d(3, 5, kernel_size=1, backend="reference")
    down = ConvDownsample2d(3, 5, kernel_size=1, backend="reference")
    x = torch.randn(2, 3, 5, 7)
    assert up(x).shape == (2, 5, 10, 14)
    assert down(x).shape == (2, 5, 2, 3)


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        UpsampleConv2d(3, 5, kernel_size=4)
