"""Helpers shared by the kernel launchers."""

from __future__ import annotations

import functools

import torch
import triton.language as tl


def compute_dtype(dtype: torch.dtype):
    """The kernels' arithmetic type for a storage dtype: float64 for float64, else float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32


@functools.cache
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def multiprocessors(device: torch.device) -> int:
    """The SM count of a CUDA device, looked up once per device."""
    return _multiprocessors(device.index if device.index is not None
                            else torch.cuda.current_device())
