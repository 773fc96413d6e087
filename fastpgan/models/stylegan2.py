"""StyleGAN2's generator and discriminator, config F (Karras et al. 2020), as NVlabs'
stylegan2-ada-pytorch builds them (``training/networks.py``), without growing.

The modules carry NVlabs' names (``mapping.fc0``, ``synthesis.b64.conv0.affine``,
``b4.out``, ...) and parameter layouts, so a published pickle's state maps onto them one
to one (:mod:`fastpgan.models.pickles`), and the calling conventions are NVlabs':
``G(z, c, truncation_psi=..., noise_mode=...)``, ``G.mapping(z, c)`` -> ws (N, num_ws,
w_dim), ``G.synthesis(ws)`` -> images in [-1, 1], ``D(img, c)`` -> scores (N, 1).

Equalized learning rate as NVlabs: weights stored N(0, 1) and multiplied by
1 / sqrt(fan_in) at run time, leaky ReLU's gain sqrt(2) applied after the activation,
``conv_clamp`` clamping every convolution's output. Weights are the same whatever the
dtype a network runs in; NVlabs' ``num_fp16_res`` (float16 for the highest resolutions)
is recorded but fastpgan runs each network in the dtype of its input or autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fastpgan.models.common import GrowthStage
from fastpgan.models.pretrained import Pretrained
from fastpgan.nn import ConvDownsample2d, EqualizedConv2d, EqualizedLinear, MinibatchStdDev
from fastpgan.nn.equalized import SQRT2
from fastpgan.nn.style import NOISE_MODES, noise_mode_property
from fastpgan.ops import bias_act, fir_upsample2d, modulated_conv2d, pixel_norm
from fastpgan.ops.fir import FIR_TAPS, fir_downsample2d
from fastpgan.sizes import check_resolution

SQRT_HALF = math.sqrt(0.5)


def channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """NVlabs' channels at a resolution: min(channel_base // resolution, channel_max)."""
    return min(channel_base // resolution, channel_max)


def _dense(in_features: int, out_features: int, *, activation: str = "linear",
           lr_mul: float = 1.0, bias_init: float = 0.0, backend: str | None) -> EqualizedLinear:
    """NVlabs' FullyConnectedLayer: weight gain lr_mul / sqrt(in), bias times lr_mul,
    leaky ReLU's gain sqrt(2) after the activation."""
    return EqualizedLinear(in_features, out_features, he_gain=1.0, lr_mul=lr_mul,
                           bias_init=bias_init, activation=activation,
                           act_gain=SQRT2 if activation == "lrelu" else 1.0, backend=backend)


def _conv(in_channels: int, out_channels: int, kernel_size: int, *, down: bool = False,
          bias: bool = True, activation: str = "lrelu", gain: float = 1.0,
          conv_clamp: float | None = None, taps: Sequence[float] = FIR_TAPS,
          backend: str | None) -> nn.Module:
    """NVlabs' Conv2dLayer called with ``gain``: act(conv + b) * def_gain * gain, clamped to
    conv_clamp * gain. A linear layer without a clamp takes the gain into its weight."""
    act_gain = (SQRT2 if activation == "lrelu" else 1.0) * gain
    clamp = None if conv_clamp is None else conv_clamp * gain
    folded = activation == "linear" and clamp is None
    kwargs = dict(bias=bias, he_gain=act_gain if folded else 1.0, activation=activation,
                  act_gain=1.0 if folded else act_gain, clamp=clamp, backend=backend)
    if down:
        return ConvDownsample2d(in_channels, out_channels, kernel_size, resample_filter=taps,
                                **kwargs)
    return EqualizedConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                           **kwargs)


class StyleGAN2Mapping(nn.Module):
    """z (and label c) -> ws (N, num_ws, w_dim): NVlabs' MappingNetwork.

    z is normalized to unit second moment; a label is embedded by a dense layer and
    normalized too, then concatenated. ``num_layers`` dense layers with leaky ReLU and
    learning-rate multiplier ``lr_mul``. In training mode the running average ``w_avg``
    is updated (decay ``w_avg_beta``); ``truncation_psi`` pulls ws towards it for the first
    ``truncation_cutoff`` layers (all if None). ``num_ws`` None returns w (N, w_dim)
    (the conditional discriminator's label mapping).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, *,
                 num_layers: int = 8, lr_mul: float = 0.01, w_avg_beta: float | None = 0.995,
                 backend: str | None = None) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta, self.backend = num_layers, w_avg_beta, backend
        embed = w_dim if c_dim else 0
        if c_dim:
            self.embed = _dense(c_dim, embed, backend=backend)
        for i in range(num_layers):
            setattr(self, f"fc{i}", _dense(w_dim if i else z_dim + embed, w_dim,
                                           activation="lrelu", lr_mul=lr_mul, backend=backend))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor | None, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, skip_w_avg_update: bool = False) -> Tensor:
        """ws (N, num_ws, w_dim), or w (N, w_dim) when num_ws is None."""
        parts = []
        if self.z_dim:
            _check_input("z", z, self.z_dim)
            parts.append(pixel_norm(z.float(), backend=self.backend))
        if self.c_dim:
            _check_input("c", c, self.c_dim)
            parts.append(pixel_norm(self.embed(c.float()), backend=self.backend))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().to(self.w_avg.dtype).mean(0).lerp(self.w_avg,
                                                                              self.w_avg_beta))
        if self.num_ws is None:
            return x
        ws = x.unsqueeze(1).expand(-1, self.num_ws, -1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            pull = torch.arange(self.num_ws, device=ws.device).view(1, -1, 1) < cutoff
            ws = torch.where(pull, self.w_avg.to(ws.dtype).lerp(ws, truncation_psi), ws)
        return ws


def _check_input(name: str, t: Tensor | None, dim: int) -> None:
    if t is None or t.dim() != 2 or t.shape[1] != dim:
        shape = None if t is None else tuple(t.shape)
        hint = " (a conditional model: pass one-hot labels)" if name == "c" else ""
        raise ValueError(f"StyleGAN2 mapping: {name} must be (N, {dim}), got {shape}{hint}")


class SynthesisLayer(nn.Module):
    """A modulated 3x3 convolution (FIR 2x upsampling first when ``up``), per-pixel noise
    times ``noise_strength``, bias, leaky ReLU with gain sqrt(2), and the clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *,
                 up: bool = False, conv_clamp: float | None = None,
                 taps: Sequence[float] = FIR_TAPS, backend: str | None = None) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.taps, self.backend = tuple(taps), backend
        self.affine = _dense(w_dim, in_channels, bias_init=1.0, backend=backend)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        """x (N, I, r, r) or (N, I, r/2, r/2) for ``up`` -> (N, O, r, r)."""
        # NVlabs' upsampling layers convolve where the others correlate (flip_weight)
        weight = self.weight.flip(2, 3) if self.up else self.weight
        y = modulated_conv2d(x, weight, self.affine(w), up=self.up, taps=self.taps,
                             backend=self.backend)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution,
                                device=x.device, dtype=y.dtype)
            y = y + noise * self.noise_strength.to(y.dtype)
        elif noise_mode == "const":
            y = y + (self.noise_const * self.noise_strength).to(y.dtype)
        return bias_act(y, self.bias, act="lrelu", gain=SQRT2, clamp=self.conv_clamp,
                        backend=self.backend)


class ToRGBLayer(nn.Module):
    """A modulated 1x1 convolution without demodulation, bias and the clamp: the image
    contribution of a resolution."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, *,
                 conv_clamp: float | None = None, backend: str | None = None) -> None:
        super().__init__()
        self.conv_clamp, self.backend = conv_clamp, backend
        self.affine = _dense(w_dim, in_channels, bias_init=1.0, backend=backend)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = in_channels ** -0.5

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """(N, in_channels, r, r) -> (N, img_channels, r, r)."""
        styles = self.affine(w) * self.weight_gain
        y = modulated_conv2d(x, self.weight, styles, demodulate=False, backend=self.backend)
        return bias_act(y, self.bias, act="linear", clamp=self.conv_clamp, backend=self.backend)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (the learned 4x4 constant, or an upsampling
    layer), a layer, a toRGB whose image is added to the FIR-upsampled image so far."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, *, conv_clamp: float | None,
                 taps: Sequence[float], backend: str | None) -> None:
        super().__init__()
        self.in_channels, self.taps, self.backend = in_channels, tuple(taps), backend
        layer = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, taps=taps,
                     backend=backend)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **layer)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp,
                                backend=backend)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor,
                noise_mode: str) -> tuple[Tensor, Tensor]:
        """(features, image) at this resolution from the previous ones and the block's
        ws (N, num_conv + 1, w_dim)."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv]).float()
        if img is not None:
            img = fir_upsample2d(img, self.taps, backend=self.backend)
        return x, y if img is None else img + y


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images: one :class:`SynthesisBlock` ``b{res}`` per
    resolution from 4x4; consecutive blocks share a w (a block's toRGB style is the next
    block's first), as NVlabs splits them."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, *,
                 channel_base: int, channel_max: int, conv_clamp: float | None,
                 taps: Sequence[float], backend: str | None) -> None:
        super().__init__()
        log2 = check_resolution("StyleGAN2Generator", img_resolution)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels(res // 2, channel_base, channel_max) if res > 4 else 0,
                channels(res, channel_base, channel_max), w_dim, res, img_channels,
                conv_clamp=conv_clamp, taps=taps, backend=backend)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last toRGB's

    def forward(self, ws: Tensor, noise_mode: str = "random", **ignored: object) -> Tensor:
        """Images (N, img_channels, r, r), float32, for ws (N, num_ws, w_dim).

        ``noise_mode``: "random" (fresh noise), "const" (each layer's saved map) or "none".
        NVlabs' ``force_fp32`` and ``fused_modconv`` are accepted and change nothing.
        """
        if ws.dim() != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"StyleGAN2 synthesis: ws must be (N, {self.num_ws}, "
                             f"{self.w_dim}), got {tuple(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"StyleGAN2 synthesis: noise_mode must be one of {NOISE_MODES}, "
                             f"got {noise_mode!r}")
        unknown = set(ignored) - {"force_fp32", "fused_modconv"}
        if unknown:
            raise TypeError(f"StyleGAN2 synthesis: unexpected arguments {sorted(unknown)}")
        x = img = None
        start = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, start:start + block.num_conv + 1], noise_mode)
            start += block.num_conv
        return img


class StyleGAN2Generator(Pretrained):
    """z (N, z_dim) [and one-hot labels c (N, c_dim)] -> images (N, img_channels, r, r).

    Config F with NVlabs' skip architecture: mapping network (8 layers, lr multiplier
    0.01), learned 4x4 constant, two modulated/demodulated 3x3 convolutions per
    resolution (the first FIR-upsampling), per-layer noise, a toRGB per resolution summed
    into the FIR-upsampled image. ``G(z, c, truncation_psi=0.7, noise_mode="const")`` as
    in NVlabs' ``generate.py``; ``c`` may be None for unconditional models.

    Args:
        z_dim, c_dim, w_dim: sizes of z, of the label (0: unconditional) and of w.
        img_resolution, img_channels: the output images.
        mapping_layers, mapping_lr_mul, w_avg_beta: the mapping network.
        channel_base, channel_max: channels per resolution (:func:`channels`; NVlabs'
            config F: 32768 and 512).
        conv_clamp: clamp every convolution's output to +-this (NVlabs' configs: 256);
            None for none.
        num_fp16_res: NVlabs' float16 resolutions, recorded only (see the module).
        resample_filter: the FIR taps, [1, 3, 3, 1].
        style_mixing_prob: in training mode, the probability that a call styles the layers
            from a random crossover on with a second latent's w (Karras et al. 2019, 3.1;
            NVlabs applies 0.9 in its loss; 0 keeps ``G(z)`` NVlabs' ``G(z)`` in training
            mode too).
        noise_mode: the default of ``forward``'s noise_mode (settable as ``G.noise_mode``).
        backend: "auto", "fused", "reference" or None for the process default.
    """

    noise_mode = noise_mode_property("StyleGAN2Generator")

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512,
                 img_resolution: int = 1024, img_channels: int = 3, *,
                 mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995, channel_base: int = 32768, channel_max: int = 512,
                 conv_clamp: float | None = None, num_fp16_res: int = 0,
                 resample_filter: Sequence[float] = FIR_TAPS, style_mixing_prob: float = 0.0,
                 noise_mode: str = "random", backend: str | None = None) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.style_mixing_prob = style_mixing_prob
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels,
                                          channel_base=channel_base, channel_max=channel_max,
                                          conv_clamp=conv_clamp, taps=resample_filter,
                                          backend=backend)
        self.num_ws = self.synthesis.num_ws
        self.mapping = StyleGAN2Mapping(z_dim, c_dim, w_dim, self.num_ws,
                                        num_layers=mapping_layers, lr_mul=mapping_lr_mul,
                                        w_avg_beta=w_avg_beta, backend=backend)
        self.noise_mode = noise_mode

    @property
    def latent_dim(self) -> int:
        """z_dim, under the name fastpgan's other generators use."""
        return self.z_dim

    @property
    def resolution(self) -> int:
        """img_resolution, under the name fastpgan's other generators use."""
        return self.img_resolution

    @property
    def full_stage(self) -> GrowthStage:
        """Its one resolution (it does not grow)."""
        return GrowthStage(self.img_resolution, 1.0)

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str | None = None,
                **synthesis_kwargs: object) -> Tensor:
        """Images (N, img_channels, r, r) in about [-1, 1]; ``noise_mode`` None takes
        ``self.noise_mode``."""
        ws = self.ws(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode or self.noise_mode, **synthesis_kwargs)

    def ws(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
           truncation_cutoff: int | None = None) -> Tensor:
        """The (N, num_ws, w_dim) styles a call synthesizes: the mapping's, in training
        mode mixed with a second latent's from a random layer on (``style_mixing_prob``)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff)
        if self.training and self.style_mixing_prob > 0:
            # the crossover is drawn on the device (num_ws: no mixing), so neither a host
            # read nor a CUDA graph fixes it
            cutoff = torch.randint(1, self.num_ws, (), device=z.device)
            cutoff = torch.where(torch.rand((), device=z.device) < self.style_mixing_prob,
                                 cutoff, self.num_ws)
            other = self.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            later = torch.arange(self.num_ws, device=z.device).view(1, -1, 1) >= cutoff
            ws = torch.where(later, other, ws)
        return ws


D_ARCHITECTURES = ("orig", "skip", "resnet")
"""NVlabs' discriminator architectures: plain, the input image fed to every block, and
residual (config F's)."""


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromRGB at the top, at every block for
    "skip", the image passed down FIR-downsampled), a 3x3 convolution and a
    FIR-downsampling 3x3 convolution; "resnet" adds the FIR-downsampling 1x1 skip, the two
    branches each scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int,
                 img_channels: int, *, architecture: str, conv_clamp: float | None,
                 taps: Sequence[float], backend: str | None) -> None:
        super().__init__()
        self.in_channels, self.architecture, self.taps = in_channels, architecture, tuple(taps)
        conv = dict(conv_clamp=conv_clamp, taps=taps, backend=backend)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = _conv(img_channels, tmp_channels, 1, **conv)
        residual = architecture == "resnet"
        self.conv0 = _conv(tmp_channels, tmp_channels, 3, **conv)
        self.conv1 = _conv(tmp_channels, out_channels, 3, down=True,
                           gain=SQRT_HALF if residual else 1.0, **conv)
        if residual:
            self.skip = _conv(tmp_channels, out_channels, 1, down=True, bias=False,
                              activation="linear", gain=SQRT_HALF, taps=taps, backend=backend)

    def forward(self, x: Tensor | None, img: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The features at half this resolution, and the image passed to the next block
        ("skip"; None otherwise)."""
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img)
            x = y if x is None else x + y
            img = fir_downsample2d(img, self.taps) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            return self.skip(x) + self.conv1(self.conv0(x)), img
        return self.conv1(self.conv0(x)), img


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end: (fromRGB for "skip"), minibatch standard deviation, a 3x3 convolution,
    a dense layer and the output layer (projected onto the mapped label for conditional
    models)."""

    def __init__(self, in_channels: int, cmap_dim: int, img_channels: int, *,
                 architecture: str, mbstd_group_size: int | None, mbstd_num_channels: int,
                 conv_clamp: float | None, backend: str | None) -> None:
        super().__init__()
        self.cmap_dim, self.architecture = cmap_dim, architecture
        if architecture == "skip":  # NVlabs' has no clamp
            self.fromrgb = _conv(img_channels, in_channels, 1, backend=backend)
        # fit_batch: any batch size (NVlabs' needs a multiple of the group; equal there)
        self.mbstd = (MinibatchStdDev(mbstd_group_size, mbstd_num_channels, fit_batch=True,
                                      backend=backend) if mbstd_num_channels else None)
        self.conv = _conv(in_channels + mbstd_num_channels, in_channels, 3,
                          conv_clamp=conv_clamp, backend=backend)
        self.fc = _dense(in_channels * 16, in_channels, activation="lrelu", backend=backend)
        self.out = _dense(in_channels, cmap_dim or 1, backend=backend)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        """Scores (N, 1)."""
        x = x.float()
        if self.architecture == "skip":
            x = x + self.fromrgb(img.float())
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim:
            x = (x * cmap).sum(dim=1, keepdim=True) * self.cmap_dim ** -0.5
        return x


class StyleGAN2Discriminator(Pretrained):
    """images (N, img_channels, r, r) [and labels c] -> scores (N, 1): config F's residual
    discriminator (or NVlabs' "orig" and "skip" ones), NVlabs' ``D(img, c)``.

    Blocks ``b{res}`` from the input resolution down to 8x8 (:class:`DiscriminatorBlock`),
    then ``b4`` (:class:`DiscriminatorEpilogue`). A conditional model maps its label with a
    :class:`StyleGAN2Mapping` to ``cmap_dim`` features (default: the 4x4 channels) and
    scores the projection onto them.

    Args:
        c_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp,
            num_fp16_res, resample_filter, backend: as :class:`StyleGAN2Generator`'s.
        architecture: "resnet" (config F), "orig" or "skip" (:data:`D_ARCHITECTURES`).
        cmap_dim: size of the mapped label (None: the 4x4 channels).
        mbstd_group_size, mbstd_num_channels: the minibatch standard deviation's group
            (the largest divisor of N up to it; None: the whole minibatch) and channels
            (0: none).
        mapping_layers, mapping_lr_mul: the label mapping's layers and their learning-rate
            multiplier.
    """

    def __init__(self, c_dim: int = 0, img_resolution: int = 1024, img_channels: int = 3, *,
                 architecture: str = "resnet", channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: float | None = None,
                 num_fp16_res: int = 0, cmap_dim: int | None = None,
                 mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 resample_filter: Sequence[float] = FIR_TAPS,
                 backend: str | None = None) -> None:
        super().__init__()
        log2 = check_resolution("StyleGAN2Discriminator", img_resolution)
        if architecture not in D_ARCHITECTURES:
            raise ValueError(f"StyleGAN2Discriminator: architecture must be one of "
                             f"{D_ARCHITECTURES}, got {architecture!r}")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]

        def nf(res: int) -> int:
            return channels(res, channel_base, channel_max)

        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(
                nf(res) if res < img_resolution else 0, nf(res), nf(res // 2), img_channels,
                architecture=architecture, conv_clamp=conv_clamp, taps=resample_filter,
                backend=backend))
        cmap_dim = (nf(4) if cmap_dim is None else cmap_dim) if c_dim else 0
        if c_dim:
            self.mapping = StyleGAN2Mapping(0, c_dim, cmap_dim, None, num_layers=mapping_layers,
                                            lr_mul=mapping_lr_mul, w_avg_beta=None,
                                            backend=backend)
        self.b4 = DiscriminatorEpilogue(nf(4), cmap_dim, img_channels,
                                        architecture=architecture,
                                        mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels,
                                        conv_clamp=conv_clamp, backend=backend)

    @property
    def resolution(self) -> int:
        """img_resolution, under the name fastpgan's other discriminators use."""
        return self.img_resolution

    def forward(self, img: Tensor, c: Tensor | None = None, **ignored: object) -> Tensor:
        """Scores (N, 1) for images (N, img_channels, r, r) in [-1, 1]."""
        r = self.img_resolution
        if img.dim() != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"StyleGAN2Discriminator: images must be (N, {self.img_channels}"
                             f", {r}, {r}), got {tuple(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.c_dim else None
        return self.b4(x, img, cmap)
