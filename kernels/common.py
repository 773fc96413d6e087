"""Helpers shared by the kernel launchers."""

from __future__ import annotations

import torch
import triton.language as tl


def compute_dtype(dtype: torch.dtype):
    """The kernels' arithmetic type for a storage dtype: float64 for float64, else float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32
