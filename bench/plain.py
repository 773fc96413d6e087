"""fastpgan's ops as a GAN author writes them in plain PyTorch: every step in the input's
dtype (no float32 round trip, unlike fastpgan's references), no argument checks, ProGAN's
settings (leaky ReLU 0.2, group of 4, eps 1e-8).

The baseline that ``host_costs.py`` calls "plain torch" and the resampling benchmark's
"plain" column: a bf16 reimplementation of ProGAN would run this, not our references.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lrelu(h: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) times ``gain``."""
    return F.leaky_relu(h, 0.2) * gain


def pixel_norm(h: torch.Tensor) -> torch.Tensor:
    """Each pixel's feature vector divided by its root mean square."""
    return h * torch.rsqrt(h.square().mean(dim=1, keepdim=True) + 1e-8)


def minibatch_stddev(x: torch.Tensor) -> torch.Tensor:
    """x with one more channel: the mean standard deviation over groups of 4 samples."""
    n, _, h, w = x.shape
    y = x.reshape(4, n // 4, -1)
    std = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(1)
    return torch.cat([x, std.repeat(4).reshape(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


def adain(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, noise: torch.Tensor,
          noise_weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Noise, bias, leaky ReLU, then each map normalized and styled by (scale, shift)."""
    a = F.leaky_relu(x + noise * noise_weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1), 0.2)
    var, mean = torch.var_mean(a, dim=(2, 3), keepdim=True, unbiased=False)
    return scale[:, :, None, None] * (a - mean) * torch.rsqrt(var + 1e-8) + shift[:, :, None, None]


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                  weight_gain: float, gain: float = 1.0,
                  normalize: bool = False) -> torch.Tensor:
    """Nearest 2x upsample, 'same' convolution, bias, leaky ReLU [, pixel norm]."""
    h = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight * weight_gain,
                 padding=weight.shape[-1] // 2)
    h = lrelu(h + bias.view(1, -1, 1, 1), gain)
    return pixel_norm(h) if normalize else h


def conv_downsample(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                    weight_gain: float, gain: float = 1.0) -> torch.Tensor:
    """'Same' convolution, 2x2 average pool, bias, leaky ReLU."""
    h = F.avg_pool2d(F.conv2d(x, weight * weight_gain, padding=weight.shape[-1] // 2), 2)
    return lrelu(h + bias.view(1, -1, 1, 1), gain)
