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

from fastpgan import ops  # noqa: F401  (registers every op in OPS)
from fastpgan.backend import OPS, kernel_module, kernels_error, kernels_interpreted
from fastpgan.extension import extension_status


def _triton_lines() -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The Triton kernels' lines, and per kernel module what auto gives on CUDA and CPU."""
    names = sorted({op.kernels for op in OPS.values() if op.provider == "triton"})
    loaded = [name for name in names if kernel_module(name) is not None]
    lines, paths = [], {}
    if loaded:
        import triton

        mode = ("in the interpreter (TRITON_INTERPRET=1)" if kernels_interpreted() else
                "compiled for the GPU (backend='fused' on CPU tensors needs TRITON_INTERPRET=1)")
        lines.append(f"Triton kernels: load, triton {triton.__version__}, {mode} "
                     f"(fastpgan.kernels: {', '.join(loaded)})")
    for name in names:
        if name in loaded:
            paths[name] = (f"Triton kernels ({name})",
                           "reference (backend='fused' runs the kernels in the interpreter)")
        else:
            lines.append(f"Triton kernels: fastpgan.kernels.{name} unavailable "
                         f"({kernels_error(name)})")
            fallback = f"reference (Triton kernels unavailable: {kernels_error(name)})"
            paths[name] = (fallback, fallback)
    return lines, paths


def _extension_lines() -> tuple[list[str], tuple[str, str]]:
    """The extension's line, and what auto gives its ops on CUDA and CPU."""
    status = extension_status()
    if status.module is None:
        fallback = f"reference (extension unavailable: {status.error})"
        return [f"C++ extension: unavailable ({status.error})"], (fallback, fallback)
    where = "installed with the package" if status.origin == "installed" else status.origin
    cuda_part = "with CUDA" if status.with_cuda else f"CPU only ({status.cuda_note})"
    on_cuda = ("C++ extension" if status.with_cuda else
               f"reference (extension built without CUDA: {status.cuda_note})")
    return ([f"C++ extension: loads, {cuda_part}, from {where}"],
            (on_cuda, "reference (backend='fused' runs the extension's CPU path)"))


def report() -> list[str]:
    """The doctor's report, one line per finding."""
    lines = [f"python {platform.python_version()}, torch {torch.__version__}"
             f" (CUDA {torch.version.cuda or 'none'})"]
    cuda = torch.cuda.is_available()
    lines.append(f"GPU: {torch.cuda.get_device_name() if cuda else 'none visible'}")
    lines.append(f"C++ compiler: {shutil.which('c++') or 'not found'}; "
                 f"ninja: {shutil.which('ninja') or 'not found'}; "
                 f"nvcc: {shutil.which('nvcc') or 'not found'}")
    triton_lines, triton_paths = _triton_lines()
    extension_lines, extension_paths = _extension_lines()
    lines += triton_lines + extension_lines
    lines.append("backend='auto' gives:")
    for op in OPS.values():
        if op.provider == "triton":
            on_cuda, on_cpu = triton_paths[op.kernels]
        elif op.provider == "extension":
            on_cuda, on_cpu = extension_paths
        else:
            on_cuda, on_cpu = "ATen rewrite", "reference (backend='fused' runs the rewrite)"
        lines.append(f"  {op.name:18s} CUDA: {on_cuda if cuda else 'no GPU'}; CPU: {on_cpu}")
    return lines


def main() -> int:
    """Prints the report; exit status 1 when a fused path is unavailable."""
    print("\n".join(report()))
    broken = (any(kernel_module(op.kernels) is None for op in OPS.values()
                  if op.provider == "triton")
              or extension_status().module is None)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
