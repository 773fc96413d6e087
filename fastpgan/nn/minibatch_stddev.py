"""MinibatchStdDev as a module."""

from __future__ import annotations

from torch import Tensor, nn

from fastpgan.ops import minibatch_stddev

__all__ = ["MinibatchStdDev"]


class MinibatchStdDev(nn.Module):
    """Appends the minibatch standard deviation as extra channels (Karras et al. 2017, 3).

    Per group of G = min(group_size, N) samples (sample i in group i mod N/G) and per
    channel group: mean over channels and pixels of sqrt(var over the group + eps),
    tiled over H x W. ProGAN uses group_size=4, num_channels=1 at the discriminator's
    4x4 block; StyleGAN2 the same.

    Args:
        group_size: the largest group; N must be a multiple of min(group_size, N) unless
            ``fit_batch``. None: the whole minibatch (NVlabs' ``mbstd_group_size=None``).
        fit_batch: group by the largest divisor of N not above group_size instead, so
            every batch size works (the paper's 14 images at 256x256 form groups of 2,
            its 6 at 512x512 groups of 3; a prime N above group_size, groups of 1, whose
            deviation is sqrt(eps) for every sample).
        num_channels: F, channel groups and appended channels; must divide C.
        eps: added to the variance before the square root.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, group_size: int | None = 4, num_channels: int = 1, eps: float = 1e-8, *,
                 fit_batch: bool = False, backend: str | None = None) -> None:
        super().__init__()
        self.group_size, self.num_channels, self.eps = group_size, num_channels, eps
        self.fit_batch, self.backend = fit_batch, backend

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C + num_channels, H, W)."""
        if self.group_size is None:
            group = max(x.shape[0], 1)
        elif self.fit_batch and x.shape[0]:
            group = largest_divisor(x.shape[0], self.group_size)
        else:
            group = self.group_size
        return minibatch_stddev(x, group, self.num_channels, self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        """Group size, channel groups and epsilon."""
        return (f"group_size={self.group_size}, num_channels={self.num_channels}, "
                f"eps={self.eps:g}{', fit_batch=True' if self.fit_batch else ''}")


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of n (>= 1) that is not above at_most (>= 1)."""
    return next(g for g in range(min(n, at_most), 0, -1) if n % g == 0)
