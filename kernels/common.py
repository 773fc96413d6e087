"""Helpers shared by the kernel modules: launch arithmetic, the row-statistics tiling and
its device functions, the activations' device functions, and the ahead-of-time
specifications."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
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


# -------------------------------------------------------------------- activations

ACT_PIECEWISE, ACT_TANH, ACT_SIGMOID = 0, 1, 2
"""The kernels' activation codes (the ACT constexpr): leaky ReLU with a slope for negative
inputs (slope 1: the identity, 0: ReLU), tanh, and the logistic sigmoid."""


@triton.jit
def _tanh(h):
    """tanh to its arithmetic type's precision: from exp where 1 - e^(-2|h|) cannot cancel,
    below 0.625 in float32 Cephes' tanhf polynomial (Moshier, Cephes Math Library)."""
    e = tl.exp(-2 * tl.abs(h))
    t = (1 - e) / (1 + e)
    t = tl.where(h < 0, -t, t)
    if h.dtype == tl.float32:
        z = h * h
        poly = ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z
                 + 1.33314422036e-1) * z - 3.33332819422e-1) * z * h + h
        t = tl.where(tl.abs(h) < 0.625, poly, t)
    return t


@triton.jit
def activate(h, slope, ACT: tl.constexpr):
    """The activation ACT of h (``slope``: leaky ReLU's slope for negative inputs)."""
    if ACT == 1:
        a = _tanh(h)
    elif ACT == 2:
        a = tl.sigmoid(h)
    else:
        a = tl.where(h > 0, h, h * slope)
    return a


@triton.jit
def activation_derivative(h, a, slope, ACT: tl.constexpr):
    """d a / d h at h, with a = activate(h): read off a for tanh (1 - a^2) and sigmoid
    (a (1 - a)), off the sign of h for leaky ReLU (slope at 0, as PyTorch)."""
    if ACT == 1:
        d = 1 - a * a
    elif ACT == 2:
        d = a * (1 - a)
    else:
        d = tl.where(h > 0, 1.0, slope)
    return d


# --------------------------------------------------------------- row statistics tiling

MAX_TILE = 4096
"""Elements per program tile of a row-statistics kernel (half that for float64)."""
PROGRAMS_PER_SM = 8
"""Long rows are split into enough chunks for about this many programs per SM."""


def row_tiles(c: int, p: int, pixels_contiguous: bool, elem_bytes: int) -> tuple[int, int, int]:
    """BLOCK_C, BLOCK_P and num_warps of a row-statistics kernel over a (C, P) view:
    whole rows in one tile where they fit.

    NCHW tiles take 16 elements a thread; channels_last ones, always chunked, 8 (one
    128-bit access of bf16): at 16 AdaIN's backward needs about 150 registers a thread
    and an SM holds one 8-warp program (the AOT report's occupancy rule).
    """
    max_tile = MAX_TILE // 2 if elem_bytes == 8 else MAX_TILE
    if pixels_contiguous:
        block_p = min(next_power_of_2(p), max_tile)
        block_c = max(1, min(next_power_of_2(c), max_tile // block_p, 16))
        return block_c, block_p, max(1, min(8, block_c * block_p // 512))
    block_c = min(next_power_of_2(c), 32)
    block_p = max(1, min(next_power_of_2(p), max_tile // block_c))
    return block_c, block_p, max(1, min(16, block_c * block_p // 256))


def row_chunks(device: torch.device, row_programs: int, tiles: int) -> tuple[int, int]:
    """(chunks per row, tiles per chunk) for rows of ``tiles`` tiles, ``row_programs``
    programs a chunk: enough chunks to fill the GPU."""
    if device.type == "cuda":
        target = PROGRAMS_PER_SM * multiprocessors(device)
    else:
        target = 64  # the interpreter: several chunks a row, so tests cover the combine
    tiles_per_chunk = cdiv(tiles, min(tiles, max(1, target // row_programs)))
    return cdiv(tiles, tiles_per_chunk), tiles_per_chunk


@triton.jit
def chunk_program(C, BLOCK_C: tl.constexpr):
    """(group g, chunk, channels c, c < C) of a program of the grid (c blocks, chunks,
    groups); a group is a sample for per-sample rows."""
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    return tl.program_id(2), tl.program_id(1), c, c < C


@triton.jit
def combine_chunks(partial_ptr, g, c, c_mask, C, COMPUTE: tl.constexpr):
    """Sums over a row's chunks, in a fixed order, of the two planes of partial,
    (2, groups, chunks, C)."""
    num_chunks = tl.num_programs(1)
    plane = tl.num_programs(2) * num_chunks * C
    first = tl.zeros(c.shape, COMPUTE)
    second = tl.zeros(c.shape, COMPUTE)
    for j in range(num_chunks):
        slot = (g * num_chunks + j) * C + c
        first += tl.load(partial_ptr + slot, mask=c_mask, other=0)
        second += tl.load(partial_ptr + plane + slot, mask=c_mask, other=0)
    return first, second


@triton.jit
def store_chunk_sums(partial_ptr, g, chunk, c, c_mask, C, first, second):
    """Stores a chunk's two per-lane sums, reduced over pixels, at (·, g, chunk, c)."""
    num_chunks = tl.num_programs(1)
    slot = (g * num_chunks + chunk) * C + c
    tl.store(partial_ptr + slot, tl.sum(first, axis=1), mask=c_mask)
    tl.store(partial_ptr + tl.num_programs(2) * num_chunks * C + slot, tl.sum(second, axis=1),
             mask=c_mask)


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
