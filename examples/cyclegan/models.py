"""CycleGAN's generator (Zhu et al. 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks"), in plain PyTorch: the ResNet generator of
Johnson et al. 2016 with instance norm. Its discriminator is pix2pix's PatchGAN with
instance norm (:func:`examples.pix2pix.models.patchgan`).

As the paper and its code build it: reflection padding, a 7x7 convolution, two stride-2
downsamplings, residual blocks, two stride-2 transposed convolutions, a 7x7 convolution
and tanh; every convolution keeps its bias (instance norm follows). Scaled down here:
32x32 images, width 8 (the paper's 64) and two residual blocks (the paper's 6 or 9).
"""

from __future__ import annotations

from torch import Tensor, nn


class ResnetBlock(nn.Module):
    """x + (pad, conv, norm, ReLU, pad, conv, norm)(x)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x: Tensor) -> Tensor:
        """The residual sum."""
        return x + self.conv_block(x)


def resnet_generator(in_channels: int = 3, out_channels: int = 3, width: int = 8,
                     blocks: int = 2) -> nn.Module:
    """The ResNet generator: same size in and out (a multiple of 4)."""
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), nn.InstanceNorm2d(width),
        nn.ReLU(True),
        nn.Conv2d(width, 2 * width, 3, 2, 1), nn.InstanceNorm2d(2 * width), nn.ReLU(True),
        nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.InstanceNorm2d(4 * width), nn.ReLU(True),
        *[ResnetBlock(4 * width) for _ in range(blocks)],
        nn.ConvTranspose2d(4 * width, 2 * width, 3, 2, 1, output_padding=1),
        nn.InstanceNorm2d(2 * width), nn.ReLU(True),
        nn.ConvTranspose2d(2 * width, width, 3, 2, 1, output_padding=1),
        nn.InstanceNorm2d(width), nn.ReLU(True),
        nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh())
