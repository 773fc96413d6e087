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
        group_size: the largest group; N must be a multiple of min(group_size, N).
        num_channels: F, channel groups and appended channels; must divide C.
        eps: added to the variance before the square root.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8, *,
                 backend: str | None = None) -> None:
        super().__init__()
        self.group_size, self.num_channels, self.eps = group_size, num_channels, eps
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C + num_channels, H, W)."""
        return minibatch_stddev(x, self.group_size, self.num_channels, self.eps,
                                backend=self.backend)

    def extra_repr(self) -> str:
        """Group size, channel groups and epsilon."""
        return f"group_size={self.group_size}, num_channels={self.num_channels}, eps={self.eps:g}"
