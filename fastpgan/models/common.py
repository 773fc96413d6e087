"""What the ProGAN and StyleGAN networks share: channel counts, resolution checks and the
growing network's blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fastpgan.models.pretrained import Pretrained
from fastpgan.nn.progressive import Alpha, check_alpha
from fastpgan.sizes import check_resolution


def channels_at(resolution: int, fmap_base: int = 8192, fmap_max: int = 512) -> int:
    """Feature maps at a resolution: min(fmap_base / 2^(log2(resolution) - 1), fmap_max).

    The official ProGAN's nf(stage) (Karras et al. 2017, table 2): 512 up to 32x32, then
    256, 128, 64, 32 and 16 at 1024x1024 with the defaults.
    """
    return min(int(fmap_base / 2 ** (int(math.log2(resolution)) - 1)), fmap_max)


def check_channels(name: str, resolution: int, fmap_base: int, fmap_max: int) -> None:
    """Raises ValueError, naming ``name``, if a layer up to ``resolution`` would get no
    channels from :func:`channels_at` (a fmap_base below resolution / 2, or fmap_max < 1),
    and says what would do."""
    if fmap_max < 1:
        raise ValueError(f"{name}: fmap_max must be at least 1, got {fmap_max}")
    if channels_at(resolution, fmap_base, fmap_max) < 1:
        empty = next(r for r in (2 ** k for k in range(2, 31)) if channels_at(r, fmap_base) < 1)
        raise ValueError(
            f"{name}: fmap_base {fmap_base} leaves the {empty}x{empty} layers and above with no "
            f"channels (channels = min(fmap_base / 2^(log2 res - 1), fmap_max)); for "
            f"{resolution}x{resolution} use fmap_base >= {resolution // 2}")


def generator_stage(name: str, z: Tensor, latent_dim: int, resolution: int | None,
                    max_resolution: int, alpha: Alpha) -> tuple[int, Alpha]:
    """(stage, alpha) of a generator call: stage 0 is 4x4; resolution None means the largest.

    Raises ValueError naming the generator for a z that is not (N, latent_dim), a
    resolution that is not a power of two up to max_resolution, or alpha outside [0, 1].
    """
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"{name}: z must be (N, {latent_dim}), got {tuple(z.shape)}")
    stage = check_resolution(name, resolution or max_resolution, max_resolution) - 2
    return stage, check_alpha(name, alpha)


def check_label_dim(name: str, label_dim: int) -> int:
    """label_dim (the classes of a conditional network; 0: none), or ValueError naming
    ``name`` for a negative one."""
    if label_dim < 0:
        raise ValueError(f"{name}: label_dim must be >= 0, got {label_dim}")
    return label_dim


def one_hot(classes: Tensor, count: int) -> Tensor:
    """Float one-hot labels (N, count) of class indices (N,), built without reading the
    device (``F.one_hot`` checks the indices' range on the host, which a CUDA graph
    cannot); an index out of range gives a row of zeros."""
    return (classes[:, None] == torch.arange(count, device=classes.device)).float()


def join_labels(name: str, z: Tensor, c: Tensor | None, label_dim: int) -> Tensor:
    """z with the one-hot labels c appended (z alone when label_dim is 0); ValueError
    naming ``name`` for labels missing from a conditional call, given to an
    unconditional one, or not (N, label_dim)."""
    if not label_dim:
        if c is not None:
            raise ValueError(f"{name}: an unconditional network takes no labels")
        return z
    if c is None or c.dim() != 2 or c.shape != (z.shape[0], label_dim):
        raise ValueError(f"{name}: a conditional network needs one-hot labels c of shape "
                         f"({z.shape[0]}, {label_dim}), got "
                         f"{None if c is None else tuple(c.shape)}")
    return torch.cat([z, c.to(z.dtype)], dim=1)


@dataclass(frozen=True)
class GrowthStage:
    """Where a growing network is: its resolution and the weight ``alpha`` of its newest
    block (Karras et al. 2017, section 3), as a training checkpoint was when saved."""

    resolution: int
    alpha: float = 1.0

    @property
    def index(self) -> int:
        """0 for 4x4, 1 for 8x8, ...: the number of blocks above the first."""
        return int(math.log2(self.resolution)) - 2

    @property
    def style_layers(self) -> int:
        """StyleGAN's style inputs at this resolution: two per block."""
        return 2 * (self.index + 1)

    def describe(self) -> str:
        """e.g. "8x8 (fading in, alpha 0.42)" or "32x32"."""
        fading = f" (fading in, alpha {self.alpha:.2f})" if self.alpha < 1.0 else ""
        return f"{self.resolution}x{self.resolution}{fading}"


class GrowingNetwork(Pretrained):
    """Base of the progressive networks: one block per resolution in ``blocks`` (lowest
    first), of which the highest may recompute their activations in the backward pass.

    Subclasses run block i as ``self.run_block(i, *inputs)``.
    """

    blocks: nn.ModuleList
    resolution: int
    _recomputed: frozenset[int] = frozenset()

    @property
    def full_stage(self) -> GrowthStage:
        """The network grown to its largest resolution."""
        return GrowthStage(self.resolution, 1.0)

    def recompute_blocks(self, count: int) -> None:
        """Makes the ``count`` highest-resolution blocks recompute their activations in the
        backward pass instead of keeping them (0: none).

        Trades one more forward of these blocks for their activation memory (the highest
        resolutions hold most of it). Non-reentrant checkpointing keeps the RNG state, so
        StyleGAN's noise is recomputed identically, and supports the double backward of
        gradient penalties. Parameters and state_dict keys are unchanged.
        """
        if count < 0:
            raise ValueError(f"{type(self).__name__}: count must be >= 0, got {count}")
        total = len(self.blocks)
        self._recomputed = frozenset(range(max(total - count, 0), total))

    def run_block(self, index: int, *inputs: Tensor | None) -> Tensor:
        """Block ``index`` applied to ``inputs``, recomputed in the backward if asked."""
        block = self.blocks[index]
        if index in self._recomputed and torch.is_grad_enabled():
            return checkpoint(block, *inputs, use_reentrant=False)
        return block(*inputs)
