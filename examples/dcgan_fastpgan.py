"""dcgan_plain.py's networks with fastpgan.nn layers swapped in.

- Every convolution is equalized-LR (run-time He scaling, Karras et al. 2017, 4.1).
- The generator doubles resolution with UpsampleConv2d (nearest 2x + 3x3 conv as one
  stride-2 convolution) and normalizes with pixel norm inside the fused bias + leaky ReLU
  epilogue, instead of BatchNorm + ReLU (4.2): no batch statistics couple the samples.
- The discriminator halves resolution with ConvDownsample2d and appends the minibatch
  standard deviation at 4x4 (section 3), with no BatchNorm.

Layer for layer the shapes follow dcgan_plain.py, so the two are a direct comparison.
"""

from __future__ import annotations

from torch import Tensor, nn

from fastpgan.nn import (
    BiasAct,
    ConvDownsample2d,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    UpsampleConv2d,
)

ADAM = dict(lr=2e-3, betas=(0.0, 0.99))  # ProGAN's betas; equalized LR takes a larger rate


class Generator(nn.Module):
    """z (N, latent) -> image (N, 1, 32, 32)."""

    def __init__(self, latent: int, width: int = 64) -> None:
        super().__init__()
        epilogue = dict(activation="lrelu", pixel_norm=True)
        self.dense = EqualizedLinear(latent, 4 * width * 16, bias=False, he_gain=2 ** 0.5 / 4)
        self.dense_act = BiasAct(4 * width, **epilogue)
        self.net = nn.Sequential(
            UpsampleConv2d(4 * width, 2 * width, 3, **epilogue),  # 8x8
            UpsampleConv2d(2 * width, width, 3, **epilogue),  # 16x16
            UpsampleConv2d(width, width, 3, **epilogue),  # 32x32
            EqualizedConv2d(width, 1, 1, he_gain=1.0), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        """Images for latents z."""
        return self.net(self.dense_act(self.dense(z).view(z.shape[0], -1, 4, 4)))


class Discriminator(nn.Module):
    """image (N, 1, 32, 32) -> score (N, 1), a logit."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            EqualizedConv2d(1, width, 1, activation="lrelu"),
            ConvDownsample2d(width, width, 3, activation="lrelu"),  # 16x16
            ConvDownsample2d(width, 2 * width, 3, activation="lrelu"),  # 8x8
            ConvDownsample2d(2 * width, 4 * width, 3, activation="lrelu"),  # 4x4
            MinibatchStdDev(group_size=4),
            EqualizedConv2d(4 * width + 1, 4 * width, 3, padding=1, activation="lrelu"),
            nn.Flatten(), EqualizedLinear(4 * width * 16, 1, he_gain=1.0))

    def forward(self, images: Tensor) -> Tensor:
        """Scores for images."""
        return self.net(images)
