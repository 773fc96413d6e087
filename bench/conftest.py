"""Benchmark set-up: machine figures (GPU via nvidia-ml-py) and the measured copy bandwidth.

On a CUDA machine the benchmarks time real shapes; elsewhere they run once on tiny
shapes (fused kernels in Triton's interpreter) so that CI keeps this code working.
"""

from __future__ import annotations

import json
import os
import platform

import pytest
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


STREAM = "BENCH_JSONL"
"""When this environment variable names a file, each benchmark's figures are appended to
it as one JSON line the moment the case ends, so a run cut off by its time box keeps
every case before the cut (pytest-benchmark's own JSON appears only when pytest ends)."""


@pytest.fixture(autouse=True)
def _stream_figures(request):
    yield
    bench = request.node.funcargs.get("benchmark")
    if os.environ.get(STREAM) and bench is not None and bench.extra_info:
        with open(os.environ[STREAM], "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": request.node.name, **bench.extra_info}) + "\n")
