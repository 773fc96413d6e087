"""Shared by the benchmark suites: device, copy bandwidth, GPU figures, and the timer."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
INNER_CALLS = 10 if CUDA else 1
"""Calls per timed round (one CUDA graph replay): one device synchronization per round."""


def measure_copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return 2 * nbytes / times[len(times) // 2] / 1e9


_copy_bandwidth: float | None = None


def copy_bandwidth() -> float | None:
    """The device's measured copy bandwidth (GB/s), measured once; None without CUDA."""
    global _copy_bandwidth
    if CUDA and _copy_bandwidth is None:
        _copy_bandwidth = measure_copy_bandwidth()
    return _copy_bandwidth


def gpu_info() -> dict:
    """Name, memory, clocks and driver of GPU 0 from NVML, plus torch's view of it."""
    if not CUDA:
        return {}
    props = torch.cuda.get_device_properties(0)
    info = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count, "cuda": torch.version.cuda}
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        info.update(
            driver=pynvml.nvmlSystemGetDriverVersion(),
            sm_clock_mhz=pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            sm_clock_max_mhz=pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            mem_clock_max_mhz=pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            power_limit_w=pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
        )
    except Exception as exc:
        info["nvml"] = f"unavailable: {exc}"
    return info


def compile_fresh(fn: Callable) -> Callable:
    """torch.compile(fn, fullgraph=True) after resetting dynamo.

    Benchmark cases compile the same reference code objects over and over; dynamo's cache
    would fill after a few shapes and silently run the rest eagerly. fullgraph=True makes
    a graph break an error.
    """
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True)


def _graphed(fn: Callable[[], object], calls: int) -> Callable[[], None]:
    """fn called `calls` times, captured in one CUDA graph; returns its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return graph.replay


def host_us_per_call(fn: Callable[[], object], calls: int = 50) -> float:
    """Wall time per call launched from Python, the device (if any) synchronized once
    before and once at the end."""
    if CUDA:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if CUDA:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def time_calls(benchmark, fn: Callable[[], object], bytes_moved: int, **info) -> None:
    """Times fn with pytest-benchmark; records us per call, GB/s and % of copy bandwidth.

    On CUDA the timed call is the replay of a CUDA graph of INNER_CALLS calls, so the
    figures are the device's time without Python's launch overhead; the time per call
    launched from Python is recorded beside it as host_us_per_call.
    """
    if CUDA:
        replay = _graphed(fn, INNER_CALLS)

        def rounds():
            replay()
            torch.cuda.synchronize()

        benchmark.pedantic(rounds, rounds=30, warmup_rounds=5)
        info["host_us_per_call"] = host_us_per_call(fn)
    else:
        benchmark(fn)
    benchmark.extra_info.update(info, bytes=bytes_moved, inner_calls=INNER_CALLS)
    if benchmark.stats is not None:  # None with --benchmark-disable
        seconds = benchmark.stats.stats.median / INNER_CALLS
        gbps = bytes_moved / seconds / 1e9
        benchmark.extra_info.update(us_per_call=seconds * 1e6, gb_per_s=gbps)
        if copy_bandwidth():
            benchmark.extra_info["pct_of_copy_bw"] = 100 * gbps / copy_bandwidth()


def peak_memory_mib(fn: Callable[[], object]) -> float:
    """Peak CUDA memory allocated during one call of fn, above what was held before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def benchmark_step(benchmark, step_and_bytes: tuple[Callable[[], object], int], *, op: str,
                   shape: tuple[int, ...], layout: str, impl: str,
                   dtype: str | None = None) -> None:
    """Warms up (and compiles) one forward + backward step, then times it with time_calls.

    The dtype (recorded, not applied) defaults to bfloat16 on CUDA and float32 on the CPU
    smoke run. On CUDA the step's peak memory is recorded as peak_mib.
    """
    step, nbytes = step_and_bytes
    step()
    dtype = dtype or ("bfloat16" if CUDA else "float32")
    benchmark.group = f"{op} {'x'.join(map(str, shape))} {layout} {dtype}"
    info = {"peak_mib": peak_memory_mib(step)} if CUDA else {}
    time_calls(benchmark, step, nbytes, op=op, shape=list(shape), layout=layout,
               dtype=f"torch.{dtype}", impl=impl, **info)
