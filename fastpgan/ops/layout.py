"""Memory-format, statistic-dtype, dense-argument and device-constant helpers shared by
the ops."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from fastpgan.ops.dispatch import watched

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


def device_constant(values: tuple[float, ...], dtype: torch.dtype,
                    device: torch.device) -> Tensor:
    """``values`` as a 1-D tensor on ``device``, made once: a step replayed from a CUDA
    graph must not copy from the host, which a tensor built from a list does. The same
    tensor comes back for the same arguments, so it must never be written to (a fresh
    one while torch.compile, a dispatch mode or a functorch transform watches, which
    must see the tensor made)."""
    if watched(None):
        return torch.tensor(values, dtype=dtype, device=device)
    return _cached_constant(values, dtype, device)


@functools.lru_cache(maxsize=256)
def _cached_constant(values: tuple[float, ...], dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    with torch.inference_mode(False):  # autograd may save it
        return torch.tensor(values, dtype=dtype, device=device)
