"""Real-image batches for training, read from the cache through a DataLoader.

Batch k of a phase is a function of (seed, rank, resolution, k) alone: sample indices
(with replacement) and mirror flips come from a generator seeded with those, so a
resumed run reads exactly the batches the uninterrupted run would have, whatever the
worker count or prefetching.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fastpgan.data.cache import ImageCache


class _StepBatches(Dataset):
    """Item k is batch k: (batch, C, res, res) uint8, mirrored at random if asked, and
    with ``labels`` the images' classes (batch,) int64 beside them."""

    def __init__(self, cache: ImageCache, resolution: int, batch: int, seed: int,
                 mirror: bool, labels: torch.Tensor | None) -> None:
        self.cache, self.resolution, self.batch = cache, resolution, batch
        self.seed, self.mirror, self.labels = seed, mirror, labels
        self._images: np.memmap | None = None  # opened in each worker

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, step: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = self.cache.level(self.resolution)
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.resolution) * 1_000_003 + step)
        index = torch.randint(self.cache.count, (self.batch,), generator=generator)
        images = torch.from_numpy(np.ascontiguousarray(self._images[index.numpy()]))
        if self.mirror:
            flip = torch.rand(self.batch, generator=generator) < 0.5
            images[flip] = images[flip].flip(-1)
        return images if self.labels is None else (images, self.labels[index])


class RealImages:
    """Batches of real images from a cache, for one training process.

    Args:
        cache: the opened cache.
        seed: the run's seed; with ``rank`` it decides every batch.
        rank: this process's rank (each rank draws its own images).
        mirror: random horizontal flips (ProGAN's mirror augmentation).
        labelled: each batch comes with its images' classes (the cache must have them).
        workers: DataLoader worker processes (0: load in this process).
        pin_memory: pin batches for fast copies to the GPU.
    """

    def __init__(self, cache: ImageCache, seed: int, *, rank: int = 0, mirror: bool = True,
                 labelled: bool = False, workers: int = 0, pin_memory: bool = False) -> None:
        self.cache, self.seed, self.rank, self.mirror = cache, seed, rank, mirror
        self.labels = torch.tensor(cache.labels.classes) if labelled else None
        self.workers, self.pin_memory = workers, pin_memory

    def batches(self, resolution: int, batch: int, start: int = 0
                ) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """Batches start, start + 1, ... of this resolution: uint8 (batch, C, res, res),
        with their classes (batch,) int64 when labelled."""
        dataset = _StepBatches(self.cache, resolution, batch, self.seed * 65_537 + self.rank,
                               self.mirror, self.labels)
        loader = DataLoader(dataset, batch_size=None, sampler=itertools.count(start),
                            num_workers=self.workers, pin_memory=self.pin_memory,
                            prefetch_factor=4 if self.workers else None,
                            persistent_workers=False,
                            # its own generator: the global RNG, which a run checkpoints and
                            # StyleGAN's noise draws from, is left untouched
                            generator=torch.Generator().manual_seed(self.seed))
        return iter(loader)


def to_model_range(images: torch.Tensor, device: torch.device | str,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images in [0, 255] to ``dtype`` in [-1, 1] on ``device``."""
    return images.to(device, non_blocking=True).to(dtype) / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] to uint8 in [0, 255] on the CPU, rounded as a saved PNG is."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def subset_indices(count: int, n: int, seed: int = 0) -> np.ndarray:
    """n of range(count) (all of them if n >= count), chosen by ``seed``, in file order."""
    if n >= count:
        return np.arange(count)
    pick = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n]
    return np.sort(pick.numpy())

