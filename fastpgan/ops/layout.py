"""Memory-format and statistic-dtype helpers shared by the fused ops."""

from __future__ import annotations

import torch
from torch import Tensor


def memory_format(t: Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor dense in that format only, else contiguous_format."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def stat_dtype(x: Tensor) -> torch.dtype:
    """The dtype of statistics kept for x: float64 for float64, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
