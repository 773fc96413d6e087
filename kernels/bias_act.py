"""Bias + activation + gain + clamp (+ pixel norm) over channels: forward and backward.

Every tensor is addressed as a (N, C, P) view with strides (stride_n, stride_c,
stride_p), where P is the flattened spatial size. That one description covers NCHW
(stride_p == 1), channels_last (stride_c == 1) and (N, C) matrices; when a batch is laid
out pixel-major, the batch is folded into P so that a program sees long pixel runs.

A program owns a BLOCK_C x BLOCK_P tile. With pixel norm every program spans all
channels of its pixels (in one tile when C <= BLOCK_C, else in two passes over C),
so the statistic never leaves registers. Arithmetic is in float32 (float64 for
float64 tensors), whatever the storage type.

The backward works from the saved output y (and, with pixel norm, the saved inverse
norm r), not from the input: for leaky ReLU with a positive slope and a positive gain,
the sign of y is the sign of the pre-activation, so nothing beyond what the next layer
already keeps has to be stored. It also reduces the bias gradient: each program sums
its tiles over pixels and either adds the sums atomically into the (C,) result or,
when torch.use_deterministic_algorithms is on, writes them to its own row of a partial
buffer that the caller sums in a fixed order (its measured cost: bench/NOTES.md).

The activation is a leaky ReLU given by one number, its slope for negative inputs (slope
1 is the identity, slope 0 ReLU), or tanh or the sigmoid (the ACT constexpr; not with
pixel norm), whose derivatives are also read off y.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from .common import (
    ACT_PIECEWISE,
    ACT_TANH,
    STORAGE_DTYPES,
    UNIT_STRIDES,
    Spec,
    activate,
    activation_derivative,
    cdiv,
    compute_dtype,
    multiprocessors,
    next_power_of_2,
    spec,
)

MAX_TILE = 4096
"""Elements per program tile for 1-, 2- and 4-byte types (half that for float64); NCHW
tiles may grow to 4x this to keep MIN_ROW_BYTES rows."""
MIN_ROW_BYTES = 64
"""Contiguous bytes per channel row of an NCHW tile: shorter rows waste DRAM sectors."""
MAX_BLOCK_C_PIXEL_NORM = 1024
"""Channels held at once by a pixel-norm program; more channels take two passes."""
MAX_BLOCK_C_ELEMENTWISE = 64


@triton.jit
def _load_tile(ptr, c, pl, C, p_left, stride_c, stride_p, COMPUTE: tl.constexpr):
    """Loads channels c x local pixels pl of the tile at ptr (pl < p_left are valid).

    ptr already points at the tile's first pixel (a 64-bit scalar offset), so element
    offsets within the tile stay small 32-bit integers.
    """
    mask = (c[:, None] < C) & (pl[None, :] < p_left)
    offsets = c[:, None] * stride_c + pl[None, :] * stride_p
    return tl.load(ptr + offsets, mask=mask, other=0).to(COMPUTE), offsets, mask


@triton.jit
def _activate(x_ptr, b_ptr, c, pl, C, p_left, stride_c, stride_p, slope, gain, clamp,
              HAS_BIAS: tl.constexpr, HAS_CLAMP: tl.constexpr, ACT: tl.constexpr,
              COMPUTE: tl.constexpr):
    """Loads an x tile and returns clamp(act(x + b) * gain), its offsets and mask."""
    h, offsets, mask = _load_tile(x_ptr, c, pl, C, p_left, stride_c, stride_p, COMPUTE)
    if HAS_BIAS:
        h += tl.load(b_ptr + c, mask=c < C, other=0).to(COMPUTE)[:, None]
    a = activate(h, slope, ACT) * gain
    if HAS_CLAMP:
        # NaN passes the clamp, as in torch.clamp (tl.minimum would drop it by default)
        a = tl.minimum(tl.maximum(a, -clamp, propagate_nan=tl.PropagateNan.ALL), clamp,
                       propagate_nan=tl.PropagateNan.ALL)
    # Padding lanes must not enter the pixel-norm sum.
    return tl.where(mask, a, 0), offsets, mask


@triton.jit
def _act_derivative(y, r, slope, gain, clamp, HAS_CLAMP: tl.constexpr,
                    PIXEL_NORM: tl.constexpr, ACT: tl.constexpr):
    """d clamp(act(h) * gain) / dh, read off the (normalized) output y (tanh and sigmoid:
    off y / gain, the activation's value; they come without pixel norm)."""
    if ACT == 0:
        d = tl.where(y > 0, gain, gain * slope)
    else:
        d = gain * activation_derivative(y, y / gain, slope, ACT)
    if HAS_CLAMP:
        if PIXEL_NORM:
            d = tl.where(tl.abs(y) < clamp * r[None, :], d, 0)
        elif ACT == 0:
            d = tl.where(tl.abs(y) < clamp, d, 0)
        else:  # a NaN y keeps its NaN derivative, as PyTorch's tanh and sigmoid backward
            d = tl.where(tl.abs(y) >= clamp, 0, d)
    return d


@triton.jit
def bias_act_fwd_kernel(
    x_ptr, b_ptr, y_ptr, r_ptr,
    C, P, stride_n, stride_c, stride_p,
    slope, gain, clamp, eps,
    HAS_BIAS: tl.constexpr, HAS_CLAMP: tl.constexpr, ACT: tl.constexpr,
    PIXEL_NORM: tl.constexpr, NUM_C_BLOCKS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """y = clamp(act(x + b) * gain) [* rsqrt(mean_c(.^2) + eps)], r = that rsqrt."""
    n = tl.program_id(2).to(tl.int64)
    p0 = tl.program_id(0).to(tl.int64) * BLOCK_P
    p_left = P - p0
    base = n * stride_n + p0 * stride_p
    x_ptr += base
    y_ptr += base
    pl = tl.arange(0, BLOCK_P)
    if PIXEL_NORM:
        c = tl.arange(0, BLOCK_C)
        if NUM_C_BLOCKS == 1:
            a, offsets, mask = _activate(x_ptr, b_ptr, c, pl, C, p_left, stride_c, stride_p,
                                         slope, gain, clamp, HAS_BIAS, HAS_CLAMP, ACT, COMPUTE)
            r = 1.0 / tl.sqrt(tl.sum(a * a, axis=0) / C + eps)
            tl.store(y_ptr + offsets, (a * r[None, :]).to(y_ptr.dtype.element_ty), mask=mask)
        else:
            sum_sq = tl.zeros([BLOCK_P], COMPUTE)
            for c0 in range(0, C, BLOCK_C):
                a, offsets, mask = _activate(x_ptr, b_ptr, c0 + c, pl, C, p_left, stride_c,
                                             stride_p, slope, gain, clamp, HAS_BIAS,
                                             HAS_CLAMP, ACT, COMPUTE)
                sum_sq += tl.sum(a * a, axis=0)
            r = 1.0 / tl.sqrt(sum_sq / C + eps)
            for c0 in range(0, C, BLOCK_C):
                a, offsets, mask = _activate(x_ptr, b_ptr, c0 + c, pl, C, p_left, stride_c,
                                             stride_p, slope, gain, clamp, HAS_BIAS,
                                             HAS_CLAMP, ACT, COMPUTE)
                tl.store(y_ptr + offsets, (a * r[None, :]).to(y_ptr.dtype.element_ty), mask=mask)
        # r is a contiguous (N, P) array; n * P + p is also right for a folded batch (N == 1).
        tl.store(r_ptr + n * P + p0 + pl, r, mask=pl < p_left)
    else:
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        a, offsets, mask = _activate(x_ptr, b_ptr, c, pl, C, p_left, stride_c, stride_p,
                                     slope, gain, clamp, HAS_BIAS, HAS_CLAMP, ACT, COMPUTE)
        tl.store(y_ptr + offsets, a.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pixel_norm_dx(dy, y, r, dot, slope, gain, clamp, HAS_CLAMP: tl.constexpr):
    """dh = act'(h) * r * (dy - y * dot), dot = mean_c(dy * y) (+ r * g_r / C)."""
    d = _act_derivative(y, r, slope, gain, clamp, HAS_CLAMP, True, 0)
    return d * r[None, :] * (dy - y * dot[None, :])


@triton.jit
def bias_act_bwd_kernel(
    dy_ptr, y_ptr, r_ptr, gr_ptr, dx_ptr, db_ptr,
    C, P, stride_n, stride_c, stride_p, num_p_programs, iters,
    slope, gain, clamp,
    HAS_CLAMP: tl.constexpr, ACT: tl.constexpr, PIXEL_NORM: tl.constexpr,
    HAS_GR: tl.constexpr, HAS_DB: tl.constexpr, DB_ATOMIC: tl.constexpr,
    NUM_C_BLOCKS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """dx from dy and the saved y (and r); the bias gradient added into db atomically
    (DB_ATOMIC) or as per-program partial sums, one row per program.

    Programs stride over pixel blocks (grid-stride loop) so the partial buffer has
    N * num_p_programs rows, not one per pixel block. g_r (HAS_GR) is the gradient
    reaching the saved r, which only a double backward produces.
    """
    pid_p = tl.program_id(0)
    n = tl.program_id(2).to(tl.int64)
    db_row = db_ptr if DB_ATOMIC else db_ptr + (n * num_p_programs + pid_p) * C
    if PIXEL_NORM:
        c = tl.arange(0, BLOCK_C)
    else:
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pl = tl.arange(0, BLOCK_P)
    db_acc = tl.zeros([BLOCK_C], COMPUTE)
    for it in range(iters):
        p0 = (pid_p + it * num_p_programs).to(tl.int64) * BLOCK_P
        p_left = P - p0
        base = n * stride_n + p0 * stride_p
        dy_tile = dy_ptr + base
        y_tile = y_ptr + base
        dx_tile = dx_ptr + base
        if PIXEL_NORM:
            r = tl.load(r_ptr + n * P + p0 + pl, mask=pl < p_left, other=1).to(COMPUTE)
            if NUM_C_BLOCKS == 1:
                dy, offsets, mask = _load_tile(dy_tile, c, pl, C, p_left, stride_c, stride_p,
                                               COMPUTE)
                y, offsets, mask = _load_tile(y_tile, c, pl, C, p_left, stride_c, stride_p,
                                              COMPUTE)
                dot = tl.sum(dy * y, axis=0) / C
            else:
                dot = tl.zeros([BLOCK_P], COMPUTE)
                for c0 in range(0, C, BLOCK_C):
                    dy, offsets, mask = _load_tile(dy_tile, c0 + c, pl, C, p_left, stride_c,
                                                   stride_p, COMPUTE)
                    y, offsets, mask = _load_tile(y_tile, c0 + c, pl, C, p_left, stride_c,
                                                  stride_p, COMPUTE)
                    dot += tl.sum(dy * y, axis=0)
                dot = dot / C
            if HAS_GR:
                gr = tl.load(gr_ptr + n * P + p0 + pl, mask=pl < p_left, other=0).to(COMPUTE)
                dot += r * gr / C
            if NUM_C_BLOCKS == 1:
                dh = _pixel_norm_dx(dy, y, r, dot, slope, gain, clamp, HAS_CLAMP)
                tl.store(dx_tile + offsets, dh.to(dx_ptr.dtype.element_ty), mask=mask)
                db_acc += tl.sum(dh, axis=1)
            else:
                for c0 in range(0, C, BLOCK_C):
                    dy, offsets, mask = _load_tile(dy_tile, c0 + c, pl, C, p_left, stride_c,
                                                   stride_p, COMPUTE)
                    y, offsets, mask = _load_tile(y_tile, c0 + c, pl, C, p_left, stride_c,
                                                  stride_p, COMPUTE)
                    dh = _pixel_norm_dx(dy, y, r, dot, slope, gain, clamp, HAS_CLAMP)
                    tl.store(dx_tile + offsets, dh.to(dx_ptr.dtype.element_ty), mask=mask)
                    if HAS_DB:
                        # More channels than one tile: accumulate in memory (this
                        # program's zero-initialized row) instead of in registers.
                        cm = (c0 + c) < C
                        if DB_ATOMIC:
                            tl.atomic_add(db_row + c0 + c, tl.sum(dh, axis=1), mask=cm)
                        else:
                            old = tl.load(db_row + c0 + c, mask=cm, other=0)
                            tl.store(db_row + c0 + c, old + tl.sum(dh, axis=1), mask=cm)
        else:
            dy, offsets, mask = _load_tile(dy_tile, c, pl, C, p_left, stride_c, stride_p,
                                           COMPUTE)
            y, offsets, mask = _load_tile(y_tile, c, pl, C, p_left, stride_c, stride_p, COMPUTE)
            dh = _act_derivative(y, y, slope, gain, clamp, HAS_CLAMP, False, ACT) * dy
            tl.store(dx_tile + offsets, dh.to(dx_ptr.dtype.element_ty), mask=mask)
            db_acc += tl.sum(dh, axis=1)
    if HAS_DB and (NUM_C_BLOCKS == 1 or not PIXEL_NORM):
        if DB_ATOMIC:
            tl.atomic_add(db_row + c, db_acc, mask=c < C)
        else:
            tl.store(db_row + c, db_acc, mask=c < C)


# ----------------------------------------------------------------------------- host side


def channel_view(t: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """(N, C, P, stride_n, stride_c, stride_p) of a tensor of shape (N, C, *spatial).

    The tensor must be contiguous, or channels_last (channels_last_3d) if 4-D (5-D). Strides are
    derived from the shape (a size-1 dimension may carry any stride). A pixel-major
    batch (channels_last, or P == 1) is folded into P, leaving N == 1.
    """
    n, c = t.shape[0], t.shape[1]
    p = math.prod(t.shape[2:])
    if c * p >= 2**31:
        raise ValueError(f"fastpgan kernels take at most 2^31 - 1 elements per sample, got "
                         f"shape {tuple(t.shape)}")
    if t.is_contiguous():
        if p == 1 or c == 1:
            return 1, c, n * p, 0, 1 if p == 1 else p, c if p == 1 else 1
        return n, c, p, c * p, p, 1
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())
    if channels_last is None or not t.is_contiguous(memory_format=channels_last):
        raise ValueError("fastpgan kernels take contiguous or channels_last(_3d) tensors")
    return 1, c, n * p, 0, 1, c


@functools.cache
def _blocks(c: int, p: int, stride_p: int, pixel_norm: bool,
            elem_bytes: int) -> tuple[int, int, int, int]:
    """BLOCK_C, BLOCK_P, number of channel blocks and num_warps for a (C, P) view.

    NCHW tiles keep MIN_ROW_BYTES-long channel rows (shorter rows waste DRAM sectors)
    and channels_last tiles span the channels; bench/NOTES.md has the sweeps behind the
    numbers.
    """
    max_tile = MAX_TILE // 2 if elem_bytes == 8 else MAX_TILE
    min_p = min(next_power_of_2(p), MIN_ROW_BYTES // elem_bytes) if stride_p == 1 else 1
    max_c = MAX_BLOCK_C_PIXEL_NORM if pixel_norm else MAX_BLOCK_C_ELEMENTWISE
    # NCHW tiles may grow 4x: whole DRAM sectors matter more than register space.
    block_c = min(next_power_of_2(c), max_c, 4 * max_tile // min_p)
    block_p = max(min_p, min(next_power_of_2(p), max_tile // block_c))
    # About 32 elements a thread (16 in float64): more spilled most of the tile in some
    # configurations (bench/NOTES.md).
    num_warps = min(16, max(4, block_c * block_p * max(elem_bytes, 4) // 4096))
    return block_c, block_p, cdiv(c, block_c), num_warps


def _launch_blocks(t: torch.Tensor, pixel_norm: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(N, C, P, strides) of t's channel view, and its _blocks."""
    view = channel_view(t)
    _, c, p, _, _, stride_p = view
    return view, _blocks(c, p, stride_p, pixel_norm, t.element_size())


def bias_act_forward(x: torch.Tensor, bias: torch.Tensor | None, y: torch.Tensor,
                     r: torch.Tensor | None, *, slope: float, gain: float,
                     clamp: float | None, eps: float, act: int = ACT_PIECEWISE) -> None:
    """Launches the forward kernel; y (like x) and r ((N, 1, *spatial), float32) are written.

    r is None unless pixel norm is applied, which takes a leaky ReLU (``act`` 0, the
    activation codes of ``common``).
    """
    pixel_norm = r is not None
    (n, c, p, stride_n, stride_c, stride_p), (block_c, block_p, num_c_blocks, num_warps) = \
        _launch_blocks(x, pixel_norm)
    grid = (cdiv(p, block_p), 1 if pixel_norm else num_c_blocks, n)
    bias_act_fwd_kernel[grid](
        x, bias if bias is not None else x, y, r if pixel_norm else x,
        c, p, stride_n, stride_c, stride_p,
        float(slope), float(gain), float(clamp or 0.0), float(eps),
        HAS_BIAS=bias is not None, HAS_CLAMP=clamp is not None, ACT=act,
        PIXEL_NORM=pixel_norm, NUM_C_BLOCKS=num_c_blocks,
        BLOCK_C=block_c, BLOCK_P=block_p, COMPUTE=compute_dtype(x.dtype),
        num_warps=num_warps,
    )


def _programs_per_row(device: torch.device, rows: int, p_blocks: int) -> int:
    """Pixel-block programs per (sample, channel block): about 16 waves of the GPU in all.

    Fewer programs, each looping over more blocks, shrink the bias-gradient partial
    buffer; bench/NOTES.md has the sweep over 2, 4, 8 and 16 waves.
    """
    if device.type == "cuda":
        target = 16 * multiprocessors(device)
    else:
        target = 4
    return max(1, min(p_blocks, target // max(rows, 1)))


def bias_act_backward(dy: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None,
                      grad_r: torch.Tensor | None, dx: torch.Tensor, *, with_bias_grad: bool,
                      slope: float, gain: float, clamp: float | None,
                      act: int = ACT_PIECEWISE) -> torch.Tensor | None:
    """Launches the backward kernel, writing dx; returns the bias gradient or None.

    dy, y and dx share one layout. r and grad_r are (N, 1, *spatial) or None. The bias
    gradient is float32 (float64 for float64 y). Elements with |y| >= clamp (|y| / r >=
    clamp with pixel norm) count as clamped: pass the threshold of
    ``fastpgan.ops.epilogue.clamp_threshold``, which allows for y's rounding.
    """
    pixel_norm = r is not None
    (n, c, p, stride_n, stride_c, stride_p), (block_c, block_p, num_c_blocks, num_warps) = \
        _launch_blocks(y, pixel_norm)
    c_programs = 1 if pixel_norm else num_c_blocks
    p_blocks = cdiv(p, block_p)
    p_programs = _programs_per_row(y.device, n * c_programs, p_blocks)
    db = None
    atomic = with_bias_grad and not torch.are_deterministic_algorithms_enabled()
    if with_bias_grad:
        dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
        rows = 1 if atomic else n * p_programs
        zeroed = atomic or (pixel_norm and num_c_blocks > 1)
        db = (torch.zeros if zeroed else torch.empty)((rows, c), device=y.device, dtype=dtype)
    bias_act_bwd_kernel[(p_programs, c_programs, n)](
        dy, y, r if pixel_norm else y, grad_r if grad_r is not None else y, dx,
        db if db is not None else dx,
        c, p, stride_n, stride_c, stride_p, p_programs, cdiv(p_blocks, p_programs),
        float(slope), float(gain), float(clamp or 0.0),
        HAS_CLAMP=clamp is not None, ACT=act, PIXEL_NORM=pixel_norm,
        HAS_GR=grad_r is not None, HAS_DB=with_bias_grad, DB_ATOMIC=atomic,
        NUM_C_BLOCKS=num_c_blocks,
        BLOCK_C=block_c, BLOCK_P=block_p, COMPUTE=compute_dtype(y.dtype),
        num_warps=num_warps,
    )
    return None if db is None else db[0] if atomic else db.sum(0)


# ------------------------------------------------------------------- ahead-of-time specs


def aot_specs() -> list[Spec]:
    """Both kernels at the tiles ``_blocks`` picks for realistic shapes, in both layouts."""
    shapes = {  # name: (N, C, P) of a realistic call
        "c512": (16, 512, 64 * 64),  # the benchmark's 16x512x64x64
        "c16": (4, 16, 1024 * 1024),  # ProGAN's last layers, official batch at 1024^2
        "c1100": (16, 1100, 8 * 8),  # more channels than one pixel-norm tile: two passes
    }
    specs = []
    for dtype, (compute, elem_bytes) in STORAGE_DTYPES.items():
        for layout, unit in UNIT_STRIDES.items():
            for shape_name, (n, c, p) in shapes.items():
                for pixel_norm in (True, False):
                    if shape_name == "c1100" and not pixel_norm:
                        continue  # only pixel norm has a multi-pass variant
                    block_c, block_p, num_c_blocks, num_warps = _blocks(
                        c, p, unit.get("stride_p", c), pixel_norm, elem_bytes)
                    act = ACT_TANH if shape_name == "c16" and not pixel_norm else ACT_PIECEWISE
                    constexprs = dict(HAS_BIAS=True, HAS_CLAMP=True, ACT=act,
                                      PIXEL_NORM=pixel_norm,
                                      HAS_GR=True, HAS_DB=True, DB_ATOMIC=True,
                                      NUM_C_BLOCKS=num_c_blocks, BLOCK_C=block_c,
                                      BLOCK_P=block_p, COMPUTE=compute, num_warps=num_warps,
                                      **unit)
                    variant = f"{layout}/{shape_name}/{'pn' if pixel_norm else 'act'}"
                    strides = {"stride_c": p, "stride_p": 1} if layout == "nchw" else {
                        "stride_c": 1, "stride_p": c}
                    # forward: x, y (and r); backward: dy, y, dx (and r, dr); the bias
                    tensors, stats = n * c * p * elem_bytes, n * p * 4 * pixel_norm
                    specs += [spec(kernel, variant, dtype, constexprs,
                                   stat_buffers=("r_ptr", "gr_ptr", "db_ptr"),
                                   fp32_args=("slope", "gain", "clamp", "eps"),
                                   ints=dict(C=c, P=p, stride_n=c * p, **strides),
                                   bytes_moved=big * tensors + small * stats + 4 * c)
                              for kernel, big, small in ((bias_act_fwd_kernel, 2, 1),
                                                         (bias_act_bwd_kernel, 3, 2))]
    return specs
