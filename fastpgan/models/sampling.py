"""One way to drive every generator: what the generator commands, the projection and
the metrics call, whether G is ProGAN's, StyleGAN's (growing, ``G(z, resolution,
alpha)``) or StyleGAN2's (NVlabs' ``G(z, c)``, one resolution)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastpgan.models.common import GrowthStage, one_hot
from fastpgan.models.stylegan import StyleGANGenerator
from fastpgan.models.stylegan2 import StyleGAN2Generator

STYLE_BASED = (StyleGANGenerator, StyleGAN2Generator)


def is_style_based(G: nn.Module) -> bool:
    """Whether G has a w space and styles (StyleGAN, StyleGAN2)."""
    return isinstance(G, STYLE_BASED)


def num_classes(G: nn.Module) -> int:
    """The classes a conditional generator takes (0: an unconditional one)."""
    if isinstance(G, StyleGAN2Generator):
        return G.c_dim
    return getattr(G, "label_dim", 0)


def class_labels(G: nn.Module, classes: int | Tensor | None, n: int,
                 device: torch.device | str) -> Tensor | None:
    """One-hot labels (n, K) of ``classes`` (one class index for all n, or (n,) of them)
    for a conditional G, None for an unconditional one. ValueError, in the commands'
    words, for a conditional G without classes, classes for an unconditional G, or a
    class out of range."""
    count = num_classes(G)
    if not count:
        if classes is not None:
            raise ValueError("--class is for conditional generators; this one is "
                             "unconditional: drop --class")
        return None
    if classes is None:
        raise ValueError(f"this generator is conditional ({count} classes): give --class "
                         f"0..{count - 1}")
    index = torch.as_tensor(classes, dtype=torch.int64, device=device).expand(n)
    if isinstance(classes, int) and not 0 <= classes < count:
        raise ValueError(f"--class {classes} is out of range: this generator has {count} "
                         f"classes, 0..{count - 1}")
    return one_hot(index, count)


def render(G: nn.Module, z: Tensor, stage: GrowthStage | None = None,
           truncation: float = 1.0, classes: int | Tensor | None = None,
           cutoff: int | None = None) -> Tensor:
    """G's images for latents z at ``stage`` (None: G's full resolution), truncated by
    psi = ``truncation`` in w (style-based generators only) at the first ``cutoff`` style
    inputs (None: all), of ``classes`` for a conditional G (:func:`class_labels`)."""
    check_truncation(G, truncation, cutoff)
    stage = stage or G.full_stage
    labels = class_labels(G, classes, len(z), z.device)
    if isinstance(G, StyleGAN2Generator):
        _check_stage(G, stage)
        return G(z, labels, truncation_psi=truncation, truncation_cutoff=cutoff)
    kwargs = ({"truncation_psi": truncation, "truncation_cutoff": cutoff}
              if is_style_based(G) else {})
    if labels is not None:
        kwargs["c"] = labels
    return G(z, resolution=stage.resolution, alpha=stage.alpha, **kwargs)


def check_truncation(G: nn.Module, truncation: float, cutoff: int | None) -> None:
    """ValueError, in the commands' words, for truncation of a generator without a w
    space, or a cutoff that is not a count of style inputs."""
    if (truncation != 1.0 or cutoff is not None) and not is_style_based(G):
        raise ValueError("--truncation needs a StyleGAN generator (ProGAN has no w space)")
    if cutoff is not None and not 1 <= cutoff <= style_count(G):
        raise ValueError(f"--truncation-cutoff must be 1..{style_count(G)} (the style inputs "
                         f"of this generator at its full resolution), got {cutoff}")


def truncate(G: nn.Module, ws: Tensor, truncation: float, cutoff: int | None) -> Tensor:
    """Styles ws (N, L, w_dim) pulled towards w's average by psi = ``truncation`` at the
    first ``cutoff`` inputs (None: all), as the mapping networks do."""
    check_truncation(G, truncation, cutoff)
    if truncation == 1.0:
        return ws
    pulled = w_average(G).to(ws.dtype).lerp(ws, truncation)
    if cutoff is None:
        return pulled
    layer = torch.arange(ws.shape[1], device=ws.device).view(1, -1, 1)
    return torch.where(layer < cutoff, pulled, ws)


def to_w(G: nn.Module, z: Tensor, classes: int | Tensor | None = None) -> Tensor:
    """w (N, w_dim) for z [of ``classes``]: the mapping network's output, untruncated."""
    if isinstance(G, StyleGAN2Generator):
        labels = class_labels(G, classes, len(z), z.device)
        return G.mapping(z, labels, skip_w_avg_update=True)[:, 0]
    class_labels(G, classes, len(z), z.device)  # StyleGAN's (v1) take none: refuse any
    return G.mapping(z)


def w_average(G: nn.Module) -> Tensor:
    """The running average of w kept by G's training (the truncation's centre)."""
    return G.mapping.w_avg if isinstance(G, StyleGAN2Generator) else G.w_avg


def style_count(G: nn.Module, stage: GrowthStage | None = None) -> int:
    """How many w inputs G's synthesis takes at ``stage`` (None: the full resolution)."""
    if isinstance(G, StyleGAN2Generator):
        return G.num_ws
    return (stage or G.full_stage).style_layers


def style_resolution(G: nn.Module, index: int) -> int:
    """The resolution of the layers the w input ``index`` styles (StyleGAN2's toRGB styles
    share the next block's first w, as NVlabs splits them)."""
    if isinstance(G, StyleGAN2Generator):
        return 4 << ((index + 1) // 2)
    return 4 << (index // 2)


def synthesize(G: nn.Module, ws: Tensor, stage: GrowthStage | None = None) -> Tensor:
    """Images from per-input styles ws (N, :func:`style_count`, w_dim)."""
    stage = stage or G.full_stage
    if isinstance(G, StyleGAN2Generator):
        _check_stage(G, stage)
        return G.synthesis(ws, noise_mode=G.noise_mode)
    return G.synthesis(ws, stage.index, stage.alpha)


def _check_stage(G: StyleGAN2Generator, stage: GrowthStage) -> None:
    if stage != G.full_stage:
        raise ValueError(f"a StyleGAN2 generator renders only at its {G.img_resolution}x"
                         f"{G.img_resolution} (it does not grow), not {stage.describe()}")
