"""ProGAN's generator and discriminator (Karras et al. 2017, table 2 and appendix A), in the
official configuration, with progressive growing as a forward argument.

Parameters for every resolution exist from the start, so optimizers and checkpoints keep
their shapes while the networks grow; ``resolution`` and ``alpha`` select the active part.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fastpgan.models.common import (
    GrowingNetwork,
    channels_at,
    check_channels,
    check_label_dim,
    check_resolution,
    generator_stage,
    join_labels,
)
from fastpgan.nn import (
    BiasAct,
    ConvDownsample2d,
    EqualizedConv2d,
    EqualizedLinear,
    FadeIn,
    FromRGB,
    MinibatchStdDev,
    ToRGB,
    UpsampleConv2d,
)
from fastpgan.nn.equalized import SQRT2
from fastpgan.nn.progressive import Alpha, alpha_is, check_alpha
from fastpgan.ops import pixel_norm


class ProGANGenerator(GrowingNetwork):
    """z (N, latent_dim) -> image (N, img_channels, r, r) for r = 4, 8, ..., resolution.

    z is pixel-normalized, a dense layer (equalized-LR gain sqrt(2)/4, as in the official
    code) makes a 4x4 map, then a 3x3 convolution; each higher resolution adds an
    upsample-convolution (nearest 2x + 3x3, fused) and a 3x3 convolution. Every layer
    ends in bias + leaky ReLU(0.2) + pixel norm, fused; a linear 1x1 toRGB per resolution
    makes the image.

    ``G(z, resolution=r, alpha=a)``: alpha weighs the newest block against the previous
    resolution's image, nearest-upsampled; at alpha = 0 the output is exactly that
    upsampled image (and the newest block is not run). A conditional generator
    (``label_dim`` K > 0) takes one-hot labels ``c`` (N, K), joined to z before the pixel
    norm, as the official code joins its label input to the latents.

    Args:
        resolution: the largest output resolution (a power of two >= 4).
        latent_dim: size of z.
        label_dim: classes of a conditional generator (0: unconditional).
        fmap_base, fmap_max: channels per resolution, :func:`channels_at`.
        img_channels: image channels.
        negative_slope: leaky ReLU's slope.
        backend: "auto", "fused", "reference" or None for the process default, for every
            layer.
    """

    def __init__(self, resolution: int = 1024, latent_dim: int = 512, fmap_base: int = 8192,
                 fmap_max: int = 512, img_channels: int = 3, *, label_dim: int = 0,
                 negative_slope: float = 0.2, backend: str | None = None) -> None:
        super().__init__()
        self.max_log2 = check_resolution("ProGANGenerator", resolution)
        check_channels("ProGANGenerator", resolution, fmap_base, fmap_max)
        self.resolution, self.latent_dim, self.backend = resolution, latent_dim, backend
        self.label_dim = check_label_dim("ProGANGenerator", label_dim)

        def nf(res: int) -> int:
            return channels_at(res, fmap_base, fmap_max)

        act = dict(activation="lrelu", negative_slope=negative_slope, pixel_norm=True,
                   backend=backend)
        self.dense = EqualizedLinear(latent_dim + label_dim, nf(4) * 16, bias=False,
                                     he_gain=SQRT2 / 4, backend=backend)
        self.dense_act = BiasAct(nf(4), **act)
        self.conv4 = EqualizedConv2d(nf(4), nf(4), 3, padding=1, **act)
        resolutions = [2 ** k for k in range(3, self.max_log2 + 1)]
        self.blocks = nn.ModuleList(
            nn.Sequential(UpsampleConv2d(nf(res // 2), nf(res), 3, **act),
                          EqualizedConv2d(nf(res), nf(res), 3, padding=1, **act))
            for res in resolutions)
        self.to_rgb = nn.ModuleList(ToRGB(nf(res), img_channels, backend=backend)
                                    for res in [4, *resolutions])
        self.fade = FadeIn()

    def forward(self, z: Tensor, resolution: int | None = None, alpha: Alpha = 1.0,
                c: Tensor | None = None) -> Tensor:
        """Images (N, img_channels, r, r) for latents z (N, latent_dim) [and one-hot labels
        c (N, label_dim)]; r defaults to the network's resolution; alpha is a number or a
        0-d tensor (see ``Alpha``)."""
        stage, alpha = generator_stage("ProGANGenerator", z, self.latent_dim, resolution,
                                       self.resolution, alpha)
        x = pixel_norm(join_labels("ProGANGenerator", z, c, self.label_dim),
                       backend=self.backend)
        x = self.dense_act(self.dense(x).view(z.shape[0], -1, 4, 4))
        x = self.conv4(x)
        if stage == 0:
            return self.to_rgb[0](x)
        for i in range(stage - 1):
            x = self.run_block(i, x)
        if alpha_is(alpha, 0.0):
            return F.interpolate(self.to_rgb[stage - 1](x), scale_factor=2, mode="nearest")
        new = self.to_rgb[stage](self.run_block(stage - 1, x))
        if alpha_is(alpha, 1.0):
            return new
        old = F.interpolate(self.to_rgb[stage - 1](x), scale_factor=2, mode="nearest")
        return self.fade(old, new, alpha)


class ProGANDiscriminator(GrowingNetwork):
    """images (N, img_channels, r, r) -> scores (N, 1), for r = 4, 8, ..., resolution.

    A 1x1 fromRGB + leaky ReLU per resolution; each resolution above 4x4 a 3x3
    convolution and a convolution + 2x2 average pool (fused), both with leaky ReLU; at
    4x4 the minibatch standard deviation (groups of 4, or the largest group below 4 that
    divides the batch: 2 for the paper's 14 images at 256x256), a 3x3 convolution, a dense layer
    to 512 and a linear dense layer to 1. No batch norm.

    ``D(images, alpha=a)`` takes the resolution from the images. alpha weighs the newest
    block against the average-pooled image fed through the previous resolution's
    fromRGB; at alpha = 0 only the latter is seen (and the newest block is not run). A
    conditional discriminator (``label_dim`` K > 0) is the official code's auxiliary
    classifier: its last layer has 1 + K outputs, the score and K label logits.

    Args:
        resolution, fmap_base, fmap_max, img_channels, negative_slope, backend: as for
            :class:`ProGANGenerator`.
        latent_dim: unused; accepted so both networks take the same arguments.
        label_dim: classes the auxiliary classifier tells apart (0: none).
        mbstd_group_size, mbstd_num_channels: the minibatch standard deviation's largest
            group (any batch size works: see ``MinibatchStdDev``'s fit_batch) and channel
            groups.
        fused_scale: each block's second convolution and its 2x2 average pool as one
            stride-2 convolution, the leaky ReLU after the pool (the official TensorFlow
            code's default); False: convolution, bias, leaky ReLU, then the pool (the
            paper's table 2, and the published pickles converted from Theano).
    """

    def __init__(self, resolution: int = 1024, latent_dim: int = 512, fmap_base: int = 8192,
                 fmap_max: int = 512, img_channels: int = 3, *, label_dim: int = 0,
                 negative_slope: float = 0.2, mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1, fused_scale: bool = True,
                 backend: str | None = None) -> None:
        super().__init__()
        self.max_log2 = check_resolution("ProGANDiscriminator", resolution)
        self.label_dim = check_label_dim("ProGANDiscriminator", label_dim)
        check_channels("ProGANDiscriminator", resolution, fmap_base, fmap_max)
        self.resolution, self.img_channels = resolution, img_channels

        def nf(res: int) -> int:
            return channels_at(res, fmap_base, fmap_max)

        act = dict(activation="lrelu", negative_slope=negative_slope, backend=backend)
        resolutions = [2 ** k for k in range(3, self.max_log2 + 1)]
        self.from_rgb = nn.ModuleList(
            FromRGB(img_channels, nf(res), negative_slope=negative_slope, backend=backend)
            for res in [4, *resolutions])
        self.blocks = nn.ModuleList(
            nn.Sequential(EqualizedConv2d(nf(res), nf(res), 3, padding=1, **act),
                          *([ConvDownsample2d(nf(res), nf(res // 2), 3, **act)] if fused_scale
                            else [EqualizedConv2d(nf(res), nf(res // 2), 3, padding=1, **act),
                                  nn.AvgPool2d(2)]))
            for res in resolutions)
        self.fade = FadeIn()
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_channels, fit_batch=True,
                                     backend=backend)
        self.conv4 = EqualizedConv2d(nf(4) + mbstd_num_channels, nf(4), 3, padding=1, **act)
        self.dense = EqualizedLinear(nf(4) * 16, nf(2), **act)
        self.out = EqualizedLinear(nf(2), 1 + label_dim, he_gain=1.0, backend=backend)

    def forward(self, images: Tensor, alpha: Alpha = 1.0) -> Tensor:
        """Scores (N, 1) [and label logits: (N, 1 + label_dim)] for images (N,
        img_channels, r, r); alpha is a number or a 0-d tensor (see ``Alpha``)."""
        if (images.dim() != 4 or images.shape[1] != self.img_channels
                or images.shape[2] != images.shape[3]):
            raise ValueError(f"ProGANDiscriminator: images must be (N, {self.img_channels}, "
                             f"r, r), got {tuple(images.shape)}")
        stage = check_resolution("ProGANDiscriminator", images.shape[-1], self.resolution) - 2
        alpha = check_alpha("ProGANDiscriminator", alpha)
        if stage == 0 or alpha_is(alpha, 1.0):
            x = self.from_rgb[stage](images)
            if stage:
                x = self.run_block(stage - 1, x)
        else:
            x = self.from_rgb[stage - 1](F.avg_pool2d(images, 2))
            if not alpha_is(alpha, 0.0):
                x = self.fade(x, self.run_block(stage - 1, self.from_rgb[stage](images)), alpha)
        for i in reversed(range(stage - 1)):
            x = self.run_block(i, x)
        x = self.conv4(self.mbstd(x))
        return self.out(self.dense(x.flatten(1)))
