"""``python -m fastpgan.doctor`` (or ``fastpgan doctor``): what builds here, what falls back.

Prints the versions that matter, whether the Triton kernels load (and whether they run
on the GPU or in the interpreter), whether the C++ extension builds (with or without
CUDA, and from where), and which implementation ``backend="auto"`` gives each op on CPU
and CUDA tensors, with the reason for every fallback.
"""

from __future__ import annotations

import platform
import shutil
import sys

import torch

from fastpgan.backend import kernels_error, load_kernels
from fastpgan.extension import extension_status

TRITON_OPS = ("bias_act", "pixel_norm", "minibatch_stddev", "adain")
EXTENSION_OPS = ("upsample_conv2d", "conv2d_downsample")


def report() -> list[str]:
    """The doctor's report, one line per finding."""
    lines = [f"python {platform.python_version()}, torch {torch.__version__}"
             f" (CUDA {torch.version.cuda or 'none'})"]
    cuda = torch.cuda.is_available()
    lines.append(f"GPU: {torch.cuda.get_device_name() if cuda else 'none visible'}")
    lines.append(f"C++ compiler: {shutil.which('c++') or 'not found'}; "
                 f"ninja: {shutil.which('ninja') or 'not found'}; "
                 f"nvcc: {shutil.which('nvcc') or 'not found'}")
    kernels = load_kernels()
    if kernels is None:
        triton_line = f"Triton kernels: unavailable ({kernels_error()})"
        triton_cuda = triton_cpu = "reference (Triton kernels unavailable)"
    else:
        import triton

        mode = ("in the interpreter (TRITON_INTERPRET=1)" if kernels.INTERPRETED else
                "compiled for the GPU (backend='fused' on CPU tensors needs TRITON_INTERPRET=1)")
        triton_line = f"Triton kernels: load, triton {triton.__version__}, {mode}"
        triton_cuda = "Triton kernels"
        triton_cpu = "reference (backend='fused' runs them in the interpreter)"
    lines.append(triton_line)
    status = extension_status()
    if status.module is None:
        ext_line = f"C++ extension: unavailable ({status.error})"
        ext_cuda = ext_cpu = f"reference (extension unavailable: {status.error})"
    else:
        where = "installed with the package" if status.origin == "installed" else status.origin
        cuda_part = "with CUDA" if status.with_cuda else f"CPU only ({status.cuda_note})"
        ext_line = f"C++ extension: loads, {cuda_part}, from {where}"
        ext_cuda = ("C++ extension" if status.with_cuda else
                    f"reference (extension built without CUDA: {status.cuda_note})")
        ext_cpu = "reference (backend='fused' runs the extension's CPU path)"
    lines.append(ext_line)
    lines.append("backend='auto' gives:")
    for ops, on_cuda, on_cpu in ((TRITON_OPS, triton_cuda, triton_cpu),
                                 (EXTENSION_OPS, ext_cuda, ext_cpu)):
        for op in ops:
            lines.append(f"  {op:18s} CUDA: {on_cuda if cuda else 'no GPU'}; CPU: {on_cpu}")
    return lines


def main() -> int:
    """Prints the report; exit status 1 when a fused path is unavailable."""
    print("\n".join(report()))
    broken = load_kernels() is None or extension_status().module is None
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
