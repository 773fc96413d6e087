"""Helpers shared by the kernel launchers and the kernels' ahead-of-time specifications."""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for a >= 0, b > 0: launch arithmetic on the host.

    Not ``triton.cdiv``: since Triton 3.7 it and ``triton.next_power_of_2`` are constexpr
    functions, whose call from Python costs a few microseconds (argument unwrapping), and
    a launch makes several.
    """
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


# ------------------------------------------------- ahead-of-time compile specifications


@dataclass(frozen=True)
class Spec:
    """One ahead-of-time compile of one kernel: its argument types and constexpr values.

    Each kernel module lists its own in ``aot_specs()``, at the configurations its
    launcher picks on realistic shapes; ``python -m fastpgan.kernels.aot`` compiles them.
    """

    kernel: str
    variant: str
    dtype: str
    signature: dict[str, str]
    constexprs: dict[str, object]
    divisible: tuple[str, ...] = ()
    """Arguments known divisible by 16 at launch, as Triton's launcher specializes them:
    every pointer (PyTorch's allocations are aligned far beyond 16 bytes) and the
    integers whose realistic value is. Without these the compiler cannot prove alignment
    and emits one scalar access an element, which is not the code that runs."""
    bytes_moved: int = 0
    """The global memory one launch at the spec's realistic shape must read and write,
    each tensor once: the floor of its time is this over the copy bandwidth."""


STORAGE_DTYPES = {"fp32": (tl.float32, 4), "fp16": (tl.float32, 2), "bf16": (tl.float32, 2),
                  "fp64": (tl.float64, 8)}
"""Storage type -> (arithmetic type, bytes per element): every kernel compiles for each."""

UNIT_STRIDES = {"nchw": {"stride_p": 1}, "channels_last": {"stride_c": 1}}
"""Layout -> its unit stride. Triton specializes an integer argument equal to 1 into a
constant at launch, so the unit stride of each layout is a constexpr when compiled."""


def stat_type(dtype: str) -> str:
    """The statistics' pointer type for a storage type: fp64 for fp64, else fp32."""
    return "fp64" if dtype == "fp64" else "fp32"


def signature_by_convention(fn, dtype: str, constexprs: dict[str, object],
                            stat_buffers: tuple[str, ...],
                            fp32_args: tuple[str, ...]) -> dict[str, str]:
    """Argument types of a kernel by naming convention: pointers named in
    ``stat_buffers`` hold statistics, other ``*_ptr`` arguments the storage type, the
    ``fp32_args`` are float scalars and every other argument an i32."""
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:  # every constexpr of a spec has a value
            continue
        if name.endswith("_ptr"):
            signature[name] = f"*{stat_type(dtype) if name in stat_buffers else dtype}"
        else:
            signature[name] = "fp32" if name in fp32_args else "i32"
    return signature


LAUNCH_OPTIONS = ("num_warps", "num_stages")


def spec(fn, variant: str, dtype: str, constexprs: dict[str, object], *,
         stat_buffers: tuple[str, ...] = (), fp32_args: tuple[str, ...] = (),
         ints: dict[str, int] | None = None, bytes_moved: int = 0) -> Spec:
    """The Spec of kernel ``fn``: of ``constexprs``, the values ``fn`` takes and the launch
    options; its other arguments typed by :func:`signature_by_convention`. ``ints``: the
    realistic values of integer arguments, those divisible by 16 marked so (pointers
    always are); ``bytes_moved`` as :attr:`Spec.bytes_moved`."""
    taken = {k: v for k, v in constexprs.items() if k in fn.arg_names or k in LAUNCH_OPTIONS}
    signature = signature_by_convention(fn, dtype, taken, stat_buffers, fp32_args)
    divisible = tuple(name for name, kind in signature.items() if kind.startswith("*")
                      or (ints or {}).get(name, 1) % 16 == 0)
    return Spec(fn.__name__, variant, dtype, signature, taken, divisible, bytes_moved)
