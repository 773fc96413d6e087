"""StyleGAN's generator (Karras et al. 2019) with ProGAN's progressive growing.

The discriminator is ProGAN's (:class:`~fastpgan.models.ProGANDiscriminator`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastpgan.models.common import (
    GrowingNetwork,
    channels_at,
    check_channels,
    check_resolution,
    generator_stage,
)
from fastpgan.nn import AdaIN, EqualizedConv2d, EqualizedLinear, FadeIn, ToRGB, UpsampleConv2d
from fastpgan.nn.progressive import Alpha, alpha_is
from fastpgan.nn.style import noise_mode_property
from fastpgan.ops import pixel_norm


def _pass_noise_mode(G: StyleGANGenerator, mode: str) -> None:
    for block in G.blocks:
        block.adain0.noise.noise_mode = block.adain1.noise.noise_mode = mode


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then dense layers with leaky ReLU (Karras et al. 2019, 2 and C).

    Each layer is an equalized-LR dense layer with gain sqrt(2) and learning-rate
    multiplier lr_mul (0.01 in StyleGAN).

    Args:
        latent_dim: size of z.
        w_dim: size of w (and of the hidden layers).
        num_layers: dense layers (8 in StyleGAN).
        lr_mul: their learning-rate multiplier.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, latent_dim: int = 512, w_dim: int = 512, num_layers: int = 8, *,
                 lr_mul: float = 0.01, backend: str | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.layers = nn.Sequential(*(
            EqualizedLinear(latent_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul,
                            activation="lrelu", backend=backend) for i in range(num_layers)))

    def forward(self, z: Tensor) -> Tensor:
        """w (N, w_dim) for z (N, latent_dim)."""
        return self.layers(pixel_norm(z, backend=self.backend))


class StyleBlock(nn.Module):
    """One resolution of the synthesis network: [upsample-]conv, AdaIN, conv, AdaIN.

    The first block starts from a learned constant 4x4 map instead of a convolution.
    Each AdaIN adds per-pixel noise, a bias and leaky ReLU before the styled instance
    norm, in one fused call (:func:`fastpgan.ops.adain`).
    """

    def __init__(self, in_channels: int | None, out_channels: int, resolution: int,
                 w_dim: int, backend: str | None) -> None:
        super().__init__()
        if in_channels is None:
            self.const = nn.Parameter(torch.ones(1, out_channels, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = UpsampleConv2d(in_channels, out_channels, 3, bias=False, backend=backend)
        self.adain0 = AdaIN(out_channels, w_dim, resolution, backend=backend)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3, padding=1, bias=False,
                                     backend=backend)
        self.adain1 = AdaIN(out_channels, w_dim, resolution, backend=backend)

    def forward(self, x: Tensor | None, w0: Tensor, w1: Tensor) -> Tensor:
        """The block's output for input x (None for the first block) and its two styles."""
        x = self.const.expand(w0.shape[0], -1, -1, -1) if self.conv0 is None else self.conv0(x)
        x = self.adain0(x, w0)
        return self.adain1(self.conv1(x), w1)


class StyleGANGenerator(GrowingNetwork):
    """z (N, latent_dim) -> image (N, img_channels, r, r), StyleGAN's style-based generator.

    A mapping network turns z into w; the synthesis network starts from a learned 4x4
    constant and, per resolution, runs two 3x3 convolutions (the first upsampling), each
    followed by noise, bias, leaky ReLU and AdaIN styled by w; a 1x1 toRGB per
    resolution makes the image. Growing as in :class:`~fastpgan.models.ProGANGenerator`:
    ``G(z, resolution=r, alpha=a)``.

    Style mixing: ``mix_z`` and ``mix_layer`` give the layers from ``mix_layer`` on the w of
    ``mix_z``; in training mode, without them, this happens with probability
    ``style_mixing_prob`` at a random crossover (Karras et al. 2019, 3.1). Truncation:
    ``truncation_psi`` pulls w towards ``w_avg`` (a running average of w kept as a buffer,
    updated in training mode) for the first ``truncation_cutoff`` layers (all if None).

    Args:
        resolution: the largest output resolution (a power of two >= 4).
        latent_dim, w_dim: sizes of z and w.
        mapping_layers: dense layers in the mapping network.
        fmap_base, fmap_max: channels per resolution, as in ProGAN.
        img_channels: image channels.
        mapping_lr_mul: the mapping network's learning-rate multiplier.
        style_mixing_prob: probability of style mixing per training batch.
        w_avg_beta: decay of the running average of w.
        noise_mode: "random" (fresh noise each call), "const" (each layer's saved noise
            map) or "none"; settable later as ``G.noise_mode``.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    noise_mode = noise_mode_property("StyleGANGenerator", _pass_noise_mode)

    def __init__(self, resolution: int = 1024, latent_dim: int = 512, w_dim: int = 512,
                 mapping_layers: int = 8, fmap_base: int = 8192, fmap_max: int = 512,
                 img_channels: int = 3, *, mapping_lr_mul: float = 0.01,
                 style_mixing_prob: float = 0.9, w_avg_beta: float = 0.995,
                 noise_mode: str = "random", backend: str | None = None) -> None:
        super().__init__()
        self.max_log2 = check_resolution("StyleGANGenerator", resolution)
        check_channels("StyleGANGenerator", resolution, fmap_base, fmap_max)
        self.resolution, self.latent_dim, self.w_dim = resolution, latent_dim, w_dim
        self.style_mixing_prob, self.w_avg_beta = style_mixing_prob, w_avg_beta
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, lr_mul=mapping_lr_mul,
                                      backend=backend)
        resolutions = [2 ** k for k in range(2, self.max_log2 + 1)]

        def nf(res: int) -> int:
            return channels_at(res, fmap_base, fmap_max)

        self.blocks = nn.ModuleList(
            StyleBlock(None if res == 4 else nf(res // 2), nf(res), res, w_dim, backend)
            for res in resolutions)
        self.to_rgb = nn.ModuleList(ToRGB(nf(res), img_channels, backend=backend)
                                    for res in resolutions)
        self.fade = FadeIn()
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.noise_mode = noise_mode

    @property
    def num_layers(self) -> int:
        """Style inputs at full resolution: two per resolution."""
        return 2 * len(self.blocks)

    def forward(self, z: Tensor, resolution: int | None = None, alpha: Alpha = 1.0, *,
                truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                mix_z: Tensor | None = None, mix_layer: int | None = None) -> Tensor:
        """Images (N, img_channels, r, r) for latents z (N, latent_dim)."""
        stage, alpha = generator_stage("StyleGANGenerator", z, self.latent_dim, resolution,
                                       self.resolution, alpha)
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().to(self.w_avg.dtype).mean(0).lerp(self.w_avg,
                                                                               self.w_avg_beta))
        layers = 2 * (stage + 1)
        ws = w.unsqueeze(1).expand(-1, layers, -1)
        crossover = self._crossover(z, mix_z, mix_layer, layers)
        if crossover is not None:
            w2 = self.mapping(mix_z if mix_z is not None else torch.randn_like(z))
            take = torch.arange(layers, device=z.device).view(1, -1, 1) >= crossover
            ws = torch.where(take, w2.unsqueeze(1), ws)
        if truncation_psi != 1.0:
            cutoff = layers if truncation_cutoff is None else truncation_cutoff
            pull = torch.arange(layers, device=z.device).view(1, -1, 1) < cutoff
            ws = torch.where(pull, self.w_avg.to(ws.dtype).lerp(ws, truncation_psi), ws)
        return self.synthesis(ws, stage, alpha)

    def _crossover(self, z: Tensor, mix_z: Tensor | None, mix_layer: int | None,
                   layers: int) -> int | Tensor | None:
        """The first layer styled by the second latent: ``mix_layer`` when mixing is
        asked for; in training, a draw made on the device (a 0-d tensor: ``layers``,
        which mixes nothing, with probability 1 - style_mixing_prob, else uniform in
        [1, layers)), so neither a host read nor a CUDA graph fixes its value."""
        if mix_z is not None:
            if mix_layer is None or not 0 <= mix_layer <= layers:
                raise ValueError(f"StyleGANGenerator: mix_layer must be in [0, {layers}] "
                                 f"with mix_z, got {mix_layer}")
            return mix_layer
        if not (self.training and self.style_mixing_prob > 0 and layers > 1):
            return None
        cutoff = torch.randint(1, layers, (), device=z.device)
        mixing = torch.rand((), device=z.device) < self.style_mixing_prob
        return torch.where(mixing, cutoff, layers)

    def synthesis(self, ws: Tensor, stage: int, alpha: Alpha) -> Tensor:
        """Images at resolution 4 * 2^stage from per-layer styles ws (N, layers, w_dim)."""
        x = None
        for i in range(stage):
            x = self.run_block(i, x, ws[:, 2 * i], ws[:, 2 * i + 1])
        if stage == 0 or alpha_is(alpha, 1.0):
            return self.to_rgb[stage](self.run_block(stage, x, ws[:, 2 * stage],
                                                     ws[:, 2 * stage + 1]))
        old = F.interpolate(self.to_rgb[stage - 1](x), scale_factor=2, mode="nearest")
        if alpha_is(alpha, 0.0):
            return old
        new = self.to_rgb[stage](self.run_block(stage, x, ws[:, 2 * stage], ws[:, 2 * stage + 1]))
        return self.fade(old, new, alpha)
