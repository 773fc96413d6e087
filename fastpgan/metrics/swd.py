"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2017, section 5.1).

Per pyramid level (from the full resolution down to 16x16), 7x7 patches at random places
are taken from every image, normalized per channel over each set, and the two patch
sets are compared by the sliced Wasserstein distance: sorted projections on random unit
directions, mean absolute difference, averaged over 4 x 128 directions. Values are
multiplied by 1e3, as the paper reports them; lower is better.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _blur(images: Tensor, gain: float = 1.0) -> Tensor:
    kernel = torch.outer(_BINOMIAL, _BINOMIAL).to(images) * gain
    channels = images.shape[1]
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, kernel.expand(channels, 1, 5, 5), groups=channels)


def laplacian_pyramid(images: Tensor, min_resolution: int = 16) -> list[Tensor]:
    """Band-pass levels, finest first, ending with the Gaussian level at min_resolution."""
    levels, current = [], images
    while current.shape[-1] > min_resolution:
        smaller = _blur(current)[..., ::2, ::2]
        up = torch.zeros_like(current)
        up[..., ::2, ::2] = smaller
        levels.append(current - _blur(up, gain=4.0))
        current = smaller
    levels.append(current)
    return levels


def _patches(level: Tensor, per_image: int, size: int, generator: torch.Generator) -> Tensor:
    n, c, h, w = level.shape
    ys = torch.randint(h - size + 1, (n, per_image), generator=generator)
    xs = torch.randint(w - size + 1, (n, per_image), generator=generator)
    offsets = torch.arange(size)
    rows = (ys[..., None] + offsets).view(n, per_image, 1, size, 1)
    cols = (xs[..., None] + offsets).view(n, per_image, 1, 1, size)
    batch = torch.arange(n).view(n, 1, 1, 1, 1)
    channel = torch.arange(c).view(1, 1, c, 1, 1)
    index = [t.to(level.device) for t in (batch, channel, rows, cols)]
    patches = level[tuple(index)].cpu()  # (n, per_image, c, size, size)
    return patches.reshape(n * per_image, c, size * size)


def _normalized(patches: Tensor) -> Tensor:
    mean = patches.mean(dim=(0, 2), keepdim=True)
    std = patches.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return ((patches - mean) / std).flatten(1)


def _sliced_distance(a: Tensor, b: Tensor, repeats: int, directions: int,
                     generator: torch.Generator) -> float:
    total = 0.0
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], directions, generator=generator, dtype=a.dtype)
        dirs /= dirs.norm(dim=0, keepdim=True)
        proj_a, _ = (a @ dirs).sort(dim=0)
        proj_b, _ = (b @ dirs).sort(dim=0)
        total += (proj_a - proj_b).abs().mean().item()
    return total / repeats


class PatchDescriptors:
    """One image set's pyramid patches, gathered batch by batch so that the images
    themselves need not fit in memory at once.

    Args:
        patches_per_image, patch_size: the paper's 128 and 7.
        min_resolution: the coarsest level (16 in the paper); smaller images use one level.
        seed: seeds the patch places, so a set's descriptors are repeatable.
    """

    def __init__(self, *, patches_per_image: int = 128, patch_size: int = 7,
                 min_resolution: int = 16, seed: int = 0) -> None:
        self.patches_per_image, self.patch_size = patches_per_image, patch_size
        self.min_resolution = min_resolution
        self.generator = torch.Generator().manual_seed(seed)
        self.levels: dict[str, list[Tensor]] = {}
        self.shape: tuple[int, ...] | None = None

    def add(self, images: Tensor) -> None:
        """Adds the patches of (N, C, H, W) images (any value range, the same for both sets);
        the pyramid is built in float64 on the images' device, the patches kept on the CPU."""
        if images.dim() != 4 or (self.shape is not None and images.shape[1:] != self.shape):
            raise ValueError(f"SWD needs (N, C, H, W) images of one shape, got "
                             f"{tuple(images.shape)} after {self.shape}")
        self.shape = tuple(images.shape[1:])
        pyramid = laplacian_pyramid(images.detach().double(),
                                    min(self.min_resolution, images.shape[-1]))
        for level in pyramid:
            size = min(self.patch_size, level.shape[-1])
            patches = _patches(level, self.patches_per_image, size, self.generator)
            self.levels.setdefault(str(level.shape[-1]), []).append(patches.float())

    def count(self) -> int:
        """Patches gathered per level."""
        return sum(p.shape[0] for p in next(iter(self.levels.values()), []))


def descriptors_of(batches: Iterable[Tensor], **options) -> PatchDescriptors:
    """The :class:`PatchDescriptors` of image batches; ``options`` are its arguments."""
    descriptors = PatchDescriptors(**options)
    for images in batches:
        descriptors.add(images)
    return descriptors


def swd_between(real: PatchDescriptors, fake: PatchDescriptors, *, repeats: int = 4,
                directions: int = 128, seed: int = 0) -> dict[str, float]:
    """SWD x 1e3 per pyramid level ("32", "16", ...) and their mean ("avg") between two
    descriptor sets of the same image shape and size; ``repeats`` x ``directions`` random
    directions (the paper's 4 x 128), seeded by ``seed``."""
    if real.shape != fake.shape or real.count() != fake.count() or not real.count():
        raise ValueError(f"SWD needs two non-empty sets of one image shape and size, got "
                         f"{real.count()} patches of {real.shape} and {fake.count()} of "
                         f"{fake.shape}")
    generator = torch.Generator().manual_seed(seed)
    result = {name: 1e3 * _sliced_distance(_normalized(torch.cat(real.levels[name])),
                                           _normalized(torch.cat(fake.levels[name])),
                                           repeats, directions, generator)
              for name in real.levels}
    result["avg"] = sum(result.values()) / len(result)
    return result


def sliced_wasserstein_distance(real: Tensor, fake: Tensor, *, patches_per_image: int = 128,
                                patch_size: int = 7, repeats: int = 4, directions: int = 128,
                                min_resolution: int = 16, seed: int = 0) -> dict[str, float]:
    """SWD x 1e3 per pyramid level ("32", "16", ...) and their mean ("avg").

    Args:
        real, fake: (N, C, H, W) images in the same value range, the same N, H and W.
        patches_per_image, patch_size, repeats, directions: the paper's 128, 7, 4, 128.
        min_resolution: the coarsest level (16 in the paper); smaller images use one level.
        seed: seeds patch places and directions, so a comparison is repeatable.
    """
    if real.shape != fake.shape or real.dim() != 4:
        raise ValueError(f"SWD needs two (N, C, H, W) sets of one shape, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    options = dict(patches_per_image=patches_per_image, patch_size=patch_size,
                   min_resolution=min_resolution)
    return swd_between(descriptors_of([real], seed=seed, **options),
                       descriptors_of([fake], seed=seed + 1, **options),
                       repeats=repeats, directions=directions, seed=seed)
