"""pixel_norm: ProGAN's per-pixel feature normalization (Karras et al. 2017, section 4.2).

The fused path is :func:`fastpgan.ops.bias_act` with no bias, a linear activation and
pixel norm on, so both share one kernel pair and one set of tests.
"""

from __future__ import annotations

from torch import Tensor

from fastpgan.ops.epilogue import bias_act, pixel_norm_reference

__all__ = ["pixel_norm", "pixel_norm_reference"]


def pixel_norm(x: Tensor, eps: float = 1e-8, *, backend: str | None = None) -> Tensor:
    """x / sqrt(mean over dim 1 of x^2 + eps) for (N, C) or (N, C, H, W) tensors.

    Keeps x's dtype and memory format; ``backend`` as in :func:`fastpgan.ops.bias_act`.
    """
    if x.dim() < 2:
        raise ValueError(f"pixel_norm: x must be (N, C) or (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    return bias_act(x, None, act="linear", pixel_norm=True, eps=eps, backend=backend)
