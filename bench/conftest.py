"""Benchmark set-up: machine figures (GPU via nvidia-ml-py) and the measured copy bandwidth.

On a CUDA machine the benchmarks time real shapes; elsewhere they run once on tiny
shapes (fused kernels in Triton's interpreter) so that CI keeps this code working.
"""

from __future__ import annotations

import os
import platform

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from benchutil import copy_bandwidth, gpu_info


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    """Adds library versions, the GPU and its measured copy bandwidth to the JSON report."""
    import triton

    machine_info.update(torch=torch.__version__, triton=triton.__version__,
                        python=platform.python_version(), gpu=gpu_info(),
                        copy_gb_per_s=copy_bandwidth())
