"""PixelNorm as a module."""

from __future__ import annotations

from torch import Tensor, nn

from fastpgan.ops import pixel_norm

__all__ = ["PixelNorm"]


class PixelNorm(nn.Module):
    """x / sqrt(mean over channels of x^2 + eps) per pixel (Karras et al. 2017, 4.2).

    Args:
        eps: added under the square root.
        backend: "auto", "fused", "reference" or None for the process default.
    """

    def __init__(self, eps: float = 1e-8, *, backend: str | None = None) -> None:
        super().__init__()
        self.eps, self.backend = eps, backend

    def forward(self, x: Tensor) -> Tensor:
        """Normalizes x of shape (N, C, ...) over dim 1."""
        return pixel_norm(x, self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        """The epsilon."""
        return f"eps={self.eps:g}"
