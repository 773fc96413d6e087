"""Profiles one forward + backward step of an epilogue op: host time vs device time per kernel.

    python bench/profile_step.py [--op bias_lrelu_pixel_norm] [--impl fused] [--layout nchw]

Prints torch.profiler's table (host and device time per operator and kernel) for ten
steps after a warm-up, then the wall time per step with and without a CUDA graph, which
separates launch overhead from kernel time.
"""

from __future__ import annotations

import argparse

import torch
from benchutil import host_us_per_call
from test_bench_epilogue import IMPLS, OPS, step_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", choices=list(OPS), default="bias_lrelu_pixel_norm")
    parser.add_argument("--impl", choices=IMPLS, default="fused")
    parser.add_argument("--layout", choices=["nchw", "channels_last"], default="nchw")
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 512, 64, 64])
    args = parser.parse_args()
    step, _ = step_fn(args.op, args.impl, tuple(args.shape), args.layout)
    for _ in range(3):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        step()
    print(f"{args.op} {args.impl} {args.layout} {tuple(args.shape)}: "
          f"{host_us_per_call(step):.1f} us a step launched from Python, "
          f"{host_us_per_call(graph.replay):.1f} us replayed from a CUDA graph")


if __name__ == "__main__":
    main()
