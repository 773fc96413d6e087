"""Memory-format, statistic-dtype and dense-argument helpers shared by the fused ops."""

from __future__ import annotations

import torch
from torch import Tensor

CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}
"""The channels-last memory format of 4-D and 5-D tensors."""


def memory_format(t: Tensor) -> torch.memory_format:
    """channels_last (channels_last_3d) for a 4-D (5-D) tensor dense in that format only,
    else contiguous_format."""
    channels_last = CHANNELS_LAST.get(t.dim())
    if (channels_last is not None and not t.is_contiguous()
            and t.is_contiguous(memory_format=channels_last)):
        return channels_last
    return torch.contiguous_format


def stat_dtype(x: Tensor) -> torch.dtype:
    """The dtype of statistics kept for x: float64 for float64, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def dense(t: Tensor | None) -> Tensor | None:
    """t contiguous (a (C,) parameter or map a kernel addresses densely), or None."""
    return None if t is None else t.contiguous()
