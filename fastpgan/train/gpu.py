"""GPU figures of a running training: peak memory (torch) and utilization (NVML)."""

from __future__ import annotations

import functools

import torch


def gpu_figures(device: torch.device) -> dict:
    """On CUDA: the peak memory allocated since the last
    ``torch.cuda.reset_peak_memory_stats`` (GiB, from torch) and the utilization (%, from
    NVML, when nvidia-ml-py is installed); else {}."""
    if device.type != "cuda":
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    figures = {"gpu_mem_gib": round(torch.cuda.max_memory_allocated(index) / 2**30, 2)}
    uuid = str(torch.cuda.get_device_properties(index).uuid)
    handle = _nvml_handle(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    if handle is not None:
        import pynvml

        figures["gpu_util"] = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    return figures


@functools.cache
def _nvml_handle(uuid: str):
    """NVML's handle of the GPU with this UUID, initialized once; None without
    nvidia-ml-py or NVML. By UUID, because NVML's indices ignore CUDA_VISIBLE_DEVICES
    (cuda:0 may be NVML's GPU 3)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        return None


def progress_figures(figures: dict) -> dict[str, str]:
    """``gpu_figures`` as short progress-bar fields: mem (peak GiB) and util."""
    shown = {}
    if "gpu_mem_gib" in figures:
        shown["mem"] = f"{figures['gpu_mem_gib']:.1f}G"
    if "gpu_util" in figures:
        shown["util"] = f"{figures['gpu_util']}%"
    return shown
