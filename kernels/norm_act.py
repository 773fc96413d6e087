"""Batch or instance normalization followed by an activation: forward and backward.

A *row* is the set of elements normalized together: channel c over the whole batch
(batch norm), or channel c of one sample (instance norm). x is addressed as a (N, C, P)
view, P the flattened spatial size (2-D and 3-D maps alike), in groups of S samples:
a batch-norm row is one group of S = N samples, an instance-norm row a group of one. A
row is walked as S * ceil(P / BLOCK_P) tiles of BLOCK_C channels x BLOCK_P pixels, split
into chunks so that any shape gives the GPU thousands of programs (grid: channel blocks
x chunks x groups). Where the samples of a batch lie end to end along the pixel axis
(channels_last, 1x1 maps), the launcher folds the batch into P.

Forward, with v = x + input_bias (a preceding convolution's bias, 0 without):
``norm_act_stats_kernel`` writes per-chunk sums of (v - v0) and its square, shifted by
the row's first value against cancellation; ``norm_act_fwd_kernel`` combines a row's
chunk sums in a fixed order (no atomics: results do not depend on scheduling) into the
mean and the biased variance, which chunk 0 stores, and writes
y = act((v - mean) * rstd * weight + bias); ``running_update_kernel`` folds the
statistics into the running ones in one small launch. With
statistics given (evaluation: the running mean and variance, per channel), the second
kernel alone runs.

Backward, with z = (v - mean) * rstd and g = dy * act'(h) (h the activation's input):
dweight = sum g z, dbias = sum g, and
dx = rstd * weight * (g - mean(g) - z * mean(g z)) from the batch's statistics, or
rstd * weight * g from given ones. ``norm_act_grad_sums_kernel`` writes per-chunk sums
of g and g z (batch statistics only), ``norm_act_grad_kernel`` combines them, stores
them per row and writes dx (with given statistics it writes its chunk sums instead,
which the caller adds up). The activation is recomputed from x, not saved.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .common import (
    ACT_SIGMOID,
    STORAGE_DTYPES,
    UNIT_STRIDES,
    Spec,
    activate,
    activation_derivative,
    cdiv,
    chunk_program,
    combine_chunks,
    compute_dtype,
    next_power_of_2,
    row_chunks,
    row_tiles,
    spec,
    store_chunk_sums,
)


@triton.jit
def _tile(x_ptr, ib_ptr, g, t, c, c_mask, P, S, T, stride_n, stride_c, stride_p,
          HAS_IB: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr):
    """(v, base, offsets, mask) of tile t of group g's rows: v = x + input_bias, zero
    outside the mask; an element's address is base + offsets (base a 64-bit scalar)."""
    s = t // T
    p = (t - s * T) * BLOCK_P + tl.arange(0, BLOCK_P)
    base = (g * S + s).to(tl.int64) * stride_n
    # (s < S: the overhang of a row's last chunk)
    mask = c_mask[:, None] & (p[None, :] < P) & ((p[None, :] * 0 + s) < S)
    offsets = c[:, None] * stride_c + p[None, :] * stride_p
    v = tl.load(x_ptr + base + offsets, mask=mask, other=0).to(COMPUTE)
    if HAS_IB:
        v += tl.load(ib_ptr + c, mask=c_mask, other=0).to(COMPUTE)[:, None]
    return tl.where(mask, v, 0), base, offsets, mask


@triton.jit
def _row_shift(x_ptr, ib_ptr, g, c, c_mask, S, stride_n, stride_c, HAS_IB: tl.constexpr,
               COMPUTE: tl.constexpr):
    """Each row's first value (sample g * S, pixel 0): the shift of the row's sums."""
    ptr = x_ptr + (g * S).to(tl.int64) * stride_n
    v = tl.load(ptr + c * stride_c, mask=c_mask, other=0).to(COMPUTE)
    if HAS_IB:
        v += tl.load(ib_ptr + c, mask=c_mask, other=0).to(COMPUTE)
    return v


@triton.jit
def _affine(w_ptr, b_ptr, c, c_mask, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
            COMPUTE: tl.constexpr):
    """(weight, bias) of channels c: 1 and 0 where the normalization has none."""
    w = tl.full(c.shape, 1, COMPUTE)
    b = tl.zeros(c.shape, COMPUTE)
    if HAS_W:
        w = tl.load(w_ptr + c, mask=c_mask, other=0).to(COMPUTE)
    if HAS_B:
        b = tl.load(b_ptr + c, mask=c_mask, other=0).to(COMPUTE)
    return w, b


@triton.jit
def _row_statistics(mean_ptr, var_ptr, g, c, c_mask, C, eps):
    """(mean, rstd) of group g's rows c from the stored mean and biased variance."""
    mean = tl.load(mean_ptr + g * C + c, mask=c_mask, other=0)
    var = tl.load(var_ptr + g * C + c, mask=c_mask, other=1)
    return mean, 1.0 / tl.sqrt(var + eps)


@triton.jit
def _pre_activation_grad(dy_ptr, base, offsets, mask, v, mean, rstd, w, b, slope,
                         ACT: tl.constexpr, COMPUTE: tl.constexpr):
    """(z, g) of a tile: the normalized value and dL/dh, zero outside the mask."""
    z = (v - mean[:, None]) * rstd[:, None]
    h = z * w[:, None] + b[:, None]
    a = activate(h, slope, ACT)
    dy = tl.load(dy_ptr + base + offsets, mask=mask, other=0).to(COMPUTE)
    g = tl.where(mask, dy * activation_derivative(h, a, slope, ACT), 0)
    return tl.where(mask, z, 0), g


@triton.jit
def _value_sums(x_ptr, ib_ptr, g, chunk, c, c_mask, shift, P, S, T, chunk_tiles, stride_n,
                stride_c, stride_p, HAS_IB: tl.constexpr, BLOCK_C: tl.constexpr,
                BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr):
    """Per-lane sums of (v - shift) and its square over a chunk's tiles (reduced by the
    caller, once)."""
    s1 = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    s2 = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    for t in range(chunk * chunk_tiles, (chunk + 1) * chunk_tiles):
        v, _base, _offsets, mask = _tile(x_ptr, ib_ptr, g, t, c, c_mask, P, S, T, stride_n,
                                         stride_c, stride_p, HAS_IB, BLOCK_P, COMPUTE)
        d = tl.where(mask, v - shift[:, None], 0)
        s1 += d
        s2 += d * d
    return s1, s2


@triton.jit
def _grad_sums(dy_ptr, x_ptr, ib_ptr, g_id, chunk, c, c_mask, mean, rstd, w, b, slope, P, S, T,
               chunk_tiles, stride_n, stride_c, stride_p, HAS_IB: tl.constexpr,
               ACT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
               COMPUTE: tl.constexpr):
    """Per-lane sums of g and g * z over a chunk's tiles (reduced by the caller, once)."""
    acc_g = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    acc_gz = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    for t in range(chunk * chunk_tiles, (chunk + 1) * chunk_tiles):
        v, base, offsets, mask = _tile(x_ptr, ib_ptr, g_id, t, c, c_mask, P, S, T,
                                       stride_n, stride_c, stride_p, HAS_IB, BLOCK_P, COMPUTE)
        z, g = _pre_activation_grad(dy_ptr, base, offsets, mask, v, mean, rstd, w, b, slope,
                                    ACT, COMPUTE)
        acc_g += g
        acc_gz += g * z
    return acc_g, acc_gz


@triton.jit
def norm_act_stats_kernel(
    x_ptr, ib_ptr, partial_ptr, C, P, S, T, chunk_tiles, stride_n, stride_c, stride_p,
    HAS_IB: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Forward pass 1: per chunk, sums of (v - v0) and its square."""
    g, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    shift = _row_shift(x_ptr, ib_ptr, g, c, c_mask, S, stride_n, stride_c, HAS_IB, COMPUTE)
    s1, s2 = _value_sums(x_ptr, ib_ptr, g, chunk, c, c_mask, shift, P, S, T, chunk_tiles,
                         stride_n, stride_c, stride_p, HAS_IB, BLOCK_C, BLOCK_P, COMPUTE)
    store_chunk_sums(partial_ptr, g, chunk, c, c_mask, C, s1, s2)


@triton.jit
def norm_act_fwd_kernel(
    x_ptr, ib_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, var_ptr, partial_ptr,
    C, P, S, T, chunk_tiles, inv_count, stride_n, stride_c, stride_p, slope, eps,
    HAS_IB: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    STATS_GIVEN: tl.constexpr, ONE_PASS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Forward pass 2: the rows' statistics from the chunk sums (or as given), then y.
    ONE_PASS (a row is one chunk): the statistics summed here, pass 1 not launched."""
    g, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    if not STATS_GIVEN:
        shift = _row_shift(x_ptr, ib_ptr, g, c, c_mask, S, stride_n, stride_c, HAS_IB,
                           COMPUTE)
        if ONE_PASS:
            a1, a2 = _value_sums(x_ptr, ib_ptr, g, 0, c, c_mask, shift, P, S, T, chunk_tiles,
                                 stride_n, stride_c, stride_p, HAS_IB, BLOCK_C, BLOCK_P,
                                 COMPUTE)
            s1 = tl.sum(a1, axis=1)
            s2 = tl.sum(a2, axis=1)
        else:
            s1, s2 = combine_chunks(partial_ptr, g, c, c_mask, C, COMPUTE)
        mean_d = s1 * inv_count
        # a NaN must survive, as in the reference (tl.maximum would drop it by default)
        var = tl.maximum(s2 * inv_count - mean_d * mean_d, 0,
                         propagate_nan=tl.PropagateNan.ALL)
        first_chunk = c_mask & ((c * 0 + chunk) == 0)  # the row's chunk 0 stores them
        tl.store(mean_ptr + g * C + c, shift + mean_d, mask=first_chunk)
        tl.store(var_ptr + g * C + c, var, mask=first_chunk)
        mean = shift + mean_d
        rstd = 1.0 / tl.sqrt(var + eps)
    else:
        mean, rstd = _row_statistics(mean_ptr, var_ptr, g, c, c_mask, C, eps)
    w, b = _affine(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, COMPUTE)
    for t in range(chunk * chunk_tiles, (chunk + 1) * chunk_tiles):
        v, base, offsets, mask = _tile(x_ptr, ib_ptr, g, t, c, c_mask, P, S, T, stride_n,
                                       stride_c, stride_p, HAS_IB, BLOCK_P, COMPUTE)
        h = (v - mean[:, None]) * rstd[:, None] * w[:, None] + b[:, None]
        y = activate(h, slope, ACT)
        tl.store(y_ptr + base + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def norm_act_grad_sums_kernel(
    dy_ptr, x_ptr, ib_ptr, w_ptr, b_ptr, mean_ptr, var_ptr, partial_ptr,
    C, P, S, T, chunk_tiles, stride_n, stride_c, stride_p, slope, eps,
    HAS_IB: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Backward pass 1 (batch statistics): per chunk, sums of g and g * z."""
    g_id, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    mean, rstd = _row_statistics(mean_ptr, var_ptr, g_id, c, c_mask, C, eps)
    w, b = _affine(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, COMPUTE)
    acc_g, acc_gz = _grad_sums(dy_ptr, x_ptr, ib_ptr, g_id, chunk, c, c_mask, mean, rstd, w, b,
                               slope, P, S, T, chunk_tiles, stride_n, stride_c, stride_p,
                               HAS_IB, ACT, BLOCK_C, BLOCK_P, COMPUTE)
    store_chunk_sums(partial_ptr, g_id, chunk, c, c_mask, C, acc_g, acc_gz)


@triton.jit
def norm_act_grad_kernel(
    dy_ptr, x_ptr, ib_ptr, w_ptr, b_ptr, mean_ptr, var_ptr, dx_ptr, rows_ptr, sums_ptr,
    partial_ptr, C, P, S, T, chunk_tiles, inv_count, stride_n, stride_c, stride_p, slope, eps,
    HAS_IB: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    STATS_GIVEN: tl.constexpr, ONE_PASS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Backward pass 2: dx for this chunk. With batch statistics, from the row sums of
    pass 1 (sums; summed here with ONE_PASS, a row being one chunk), which chunk 0 stores
    in rows (3, groups, C) beside a plane of zeros (the input bias's gradient); with given
    statistics, this chunk's sums of g and g * z go to partial."""
    g_id, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    mean, rstd = _row_statistics(mean_ptr, var_ptr, g_id, c, c_mask, C, eps)
    w, b = _affine(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, COMPUTE)
    mean_g = tl.zeros(c.shape, COMPUTE)
    mean_gz = tl.zeros(c.shape, COMPUTE)
    if not STATS_GIVEN:
        if ONE_PASS:
            row_g, row_gz = _grad_sums(dy_ptr, x_ptr, ib_ptr, g_id, 0, c, c_mask, mean, rstd, w,
                                       b, slope, P, S, T, chunk_tiles, stride_n, stride_c,
                                       stride_p, HAS_IB, ACT, BLOCK_C, BLOCK_P, COMPUTE)
            sum_g = tl.sum(row_g, axis=1)
            sum_gz = tl.sum(row_gz, axis=1)
        else:
            sum_g, sum_gz = combine_chunks(sums_ptr, g_id, c, c_mask, C, COMPUTE)
        first_chunk = c_mask & ((c * 0 + chunk) == 0)
        plane = tl.num_programs(2) * C
        tl.store(rows_ptr + g_id * C + c, sum_g, mask=first_chunk)
        tl.store(rows_ptr + plane + g_id * C + c, sum_gz, mask=first_chunk)
        tl.store(rows_ptr + 2 * plane + g_id * C + c, tl.zeros(c.shape, COMPUTE),
                 mask=first_chunk)
        mean_g = sum_g * inv_count
        mean_gz = sum_gz * inv_count
    acc_g = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    acc_gz = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    for t in range(chunk * chunk_tiles, (chunk + 1) * chunk_tiles):
        v, base, offsets, mask = _tile(x_ptr, ib_ptr, g_id, t, c, c_mask, P, S, T,
                                       stride_n, stride_c, stride_p, HAS_IB, BLOCK_P, COMPUTE)
        z, g = _pre_activation_grad(dy_ptr, base, offsets, mask, v, mean, rstd, w, b, slope,
                                    ACT, COMPUTE)
        if STATS_GIVEN:  # (an infinite z times a zero mean_gz would be NaN)
            dx = (rstd * w)[:, None] * g
            acc_g += g
            acc_gz += g * z
        else:
            dx = (rstd * w)[:, None] * (g - mean_g[:, None] - z * mean_gz[:, None])
        tl.store(dx_ptr + base + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    if STATS_GIVEN:
        store_chunk_sums(partial_ptr, g_id, chunk, c, c_mask, C, acc_g, acc_gz)


@triton.jit
def running_update_kernel(
    rmean_ptr, rvar_ptr, mean_ptr, var_ptr, C, groups, inv_groups, momentum, unbias,
    BLOCK_C: tl.constexpr, COMPUTE: tl.constexpr,
):
    """running = momentum * batch + (1 - momentum) * running (PyTorch's formula) for the
    mean and the unbiased variance, each first averaged over the groups' rows (instance
    norm's samples), in place in the running statistics' own dtype."""
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    mean = tl.zeros([BLOCK_C], COMPUTE)
    var = tl.zeros([BLOCK_C], COMPUTE)
    for g in range(groups):
        mean += tl.load(mean_ptr + g * C + c, mask=c_mask, other=0)
        var += tl.load(var_ptr + g * C + c, mask=c_mask, other=0)
    _fold_in(rmean_ptr, c, c_mask, mean * inv_groups, momentum, COMPUTE)
    _fold_in(rvar_ptr, c, c_mask, var * (inv_groups * unbias), momentum, COMPUTE)


@triton.jit
def _fold_in(running_ptr, c, c_mask, batch, momentum, COMPUTE: tl.constexpr):
    """running[c] = momentum * batch + (1 - momentum) * running[c], stored in its dtype."""
    running = tl.load(running_ptr + c, mask=c_mask, other=0).to(COMPUTE)
    tl.store(running_ptr + c,
             (momentum * batch + (1 - momentum) * running).to(running_ptr.dtype.element_ty),
             mask=c_mask)


# ----------------------------------------------------------------------------- host side


@dataclass(frozen=True)
class _Plan:
    """The row geometry, tiles, chunks and compile-time settings of a call, the same for
    every call of one shape and layout (cached: a layer calls it every step)."""

    groups: int
    chunks: int
    count: int
    shape: tuple[int, int, int, int, int]  # C, P, S, T and the chunk length in tiles
    strides: tuple[int, int, int]
    grid: tuple[int, int, int]
    meta: dict
    stats_meta: dict  # the settings the statistics kernel takes

    @property
    def one_pass(self) -> bool:
        """A row is one chunk: the second kernel sums it itself."""
        return self.chunks == 1

    def partial(self, like: torch.Tensor) -> torch.Tensor:
        """A (2, groups, chunks, C) buffer of per-chunk sums."""
        return like.new_empty((2, self.groups, self.chunks, self.shape[0]))


def _plan(x: torch.Tensor, input_bias: torch.Tensor | None, weight: torch.Tensor | None,
          bias: torch.Tensor | None, *, per_sample: bool, act: int) -> _Plan:
    return _cached_plan(tuple(x.shape), x.is_contiguous(), x.element_size(), x.dtype,
                        x.device, per_sample, act, input_bias is not None, weight is not None,
                        bias is not None)


@functools.cache
def _cached_plan(shape: tuple[int, ...], contiguous: bool, elem_bytes: int,
                 dtype: torch.dtype, device: torch.device, per_sample: bool, act: int,
                 has_ib: bool, has_w: bool, has_b: bool) -> _Plan:
    n, c = shape[:2]
    p = math.prod(shape[2:])
    # from the shape, as a size-1 dimension may carry any stride; x is contiguous or
    # channels_last(_3d)
    stride_n, stride_c, stride_p = (c * p, p, 1) if contiguous else (c * p, 1, c)
    if p == 1:
        stride_p = stride_n
    groups, samples = (n, 1) if per_sample else (1, n)
    if samples > 1 and stride_n == p * stride_p:  # the batch lies along the pixel axis
        samples, p, stride_n = 1, samples * p, 0
    if c * p * samples >= 2**31:
        raise ValueError(f"norm_act kernels take fewer than 2^31 elements per group of "
                         f"rows, got shape {shape}")
    block_c, block_p, num_warps = row_tiles(c, p, stride_p == 1, elem_bytes)
    c_blocks, tiles_per_sample = cdiv(c, block_c), cdiv(p, block_p)
    chunks, chunk_tiles = row_chunks(device, c_blocks * groups, samples * tiles_per_sample)
    meta = dict(HAS_IB=has_ib, HAS_W=has_w, HAS_B=has_b, ACT=act, BLOCK_C=block_c,
                BLOCK_P=block_p, COMPUTE=compute_dtype(dtype), num_warps=num_warps)
    return _Plan(groups, chunks, samples * p, (c, p, samples, tiles_per_sample, chunk_tiles),
                 (stride_n, stride_c, stride_p), (c_blocks, chunks, groups), meta,
                 {k: meta[k] for k in ("HAS_IB", "BLOCK_C", "BLOCK_P", "COMPUTE",
                                       "num_warps")})


def _optional(x: torch.Tensor, *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The optional inputs, x standing in for each absent one (its HAS_ flag is off)."""
    return tuple(x if t is None else t for t in tensors)


def norm_act_forward(x: torch.Tensor, input_bias: torch.Tensor | None,
                     weight: torch.Tensor | None, bias: torch.Tensor | None, y: torch.Tensor,
                     mean: torch.Tensor, var: torch.Tensor, *, per_sample: bool,
                     stats_given: bool, act: int, slope: float, eps: float) -> None:
    """Fills y (laid out like x). With ``stats_given`` mean and var (C,) are read (one
    group: the batch); otherwise the rows' mean and biased variance are written to them,
    (groups, C): (N, C) with ``per_sample``, (1, C) without."""
    plan = _plan(x, input_bias, weight, bias, per_sample=per_sample and not stats_given,
                 act=act)
    partial = mean
    if not (stats_given or plan.one_pass):
        partial = plan.partial(mean)
        norm_act_stats_kernel[plan.grid](x, _optional(x, input_bias)[0], partial,
                                         *plan.shape, *plan.strides, **plan.stats_meta)
    norm_act_fwd_kernel[plan.grid](x, *_optional(x, input_bias, weight, bias), y, mean, var,
                                   partial, *plan.shape, 1.0 / plan.count, *plan.strides,
                                   float(slope), float(eps), STATS_GIVEN=stats_given,
                                   ONE_PASS=plan.one_pass, **plan.meta)


def norm_act_backward(dy: torch.Tensor, x: torch.Tensor, input_bias: torch.Tensor | None,
                      weight: torch.Tensor | None, bias: torch.Tensor | None,
                      mean: torch.Tensor, var: torch.Tensor, dx: torch.Tensor,
                      rows: torch.Tensor, *, per_sample: bool, stats_given: bool, act: int,
                      slope: float, eps: float) -> None:
    """Fills dx (laid out like x; dy too) and rows: per row the sums of g = dy * act'(h)
    and of g * z, z the normalized value, (2, 1, C) by given statistics and by the batch's
    (3, groups, C) with a third plane of zeros."""
    plan = _plan(x, input_bias, weight, bias, per_sample=per_sample and not stats_given,
                 act=act)
    optional = _optional(x, input_bias, weight, bias)
    partial = plan.partial(rows)
    sums = partial
    if not (stats_given or plan.one_pass):
        sums = plan.partial(rows)
        norm_act_grad_sums_kernel[plan.grid](dy, x, *optional, mean, var, sums, *plan.shape,
                                             *plan.strides, float(slope), float(eps),
                                             **plan.meta)
    norm_act_grad_kernel[plan.grid](dy, x, *optional, mean, var, dx, rows, sums, partial,
                                    *plan.shape, 1.0 / plan.count, *plan.strides, float(slope),
                                    float(eps), STATS_GIVEN=stats_given,
                                    ONE_PASS=plan.one_pass, **plan.meta)
    if stats_given:
        torch.sum(partial, dim=2, out=rows)


def running_update(running_mean: torch.Tensor, running_var: torch.Tensor,
                   mean: torch.Tensor, var: torch.Tensor, *, count: int,
                   momentum: float) -> None:
    """Updates the contiguous (C,) running statistics in place from the (groups, C) rows'
    mean and biased variance over ``count`` values each (one launch)."""
    groups, c = mean.shape
    block_c = min(next_power_of_2(c), 1024)
    running_update_kernel[(cdiv(c, block_c),)](
        running_mean, running_var, mean, var, c, groups, 1.0 / groups, float(momentum),
        count / (count - 1), BLOCK_C=block_c, COMPUTE=compute_dtype(mean.dtype),
        num_warps=4)


# ------------------------------------------------------------------- ahead-of-time specs


def aot_specs() -> list[Spec]:
    """Every kernel in both layouts at the issue's benchmark shapes (batch statistics, the
    widest activation: sigmoid), and the one-pass variant at a pix2pix 8x8 instance norm,
    whose rows are one tile."""
    shapes = {"bn_64x256x32x32": (64, 256, 32 * 32, False),
              "in_1x64x256x256": (1, 64, 256 * 256, True),
              "in_16x256x8x8": (16, 256, 8 * 8, True)}  # (N, C, P, per sample)
    specs = []
    for dtype, (compute, elem_bytes) in STORAGE_DTYPES.items():
        for layout, unit in UNIT_STRIDES.items():
            for shape_name, (n, c, p, per_sample) in shapes.items():
                samples, pixels = (1, p) if per_sample else (n, p)
                if not per_sample and layout != "nchw":
                    samples, pixels = 1, n * p  # the batch folded into the pixel axis
                block_c, block_p, num_warps = row_tiles(c, pixels, layout == "nchw",
                                                        elem_bytes)
                one_pass = samples * cdiv(pixels, block_p) == 1
                constexprs = dict(HAS_IB=True, HAS_W=True, HAS_B=True, STATS_GIVEN=False,
                                  ONE_PASS=one_pass, ACT=ACT_SIGMOID, BLOCK_C=block_c,
                                  BLOCK_P=block_p, COMPUTE=compute, num_warps=num_warps,
                                  **unit)
                strides = ({"stride_c": p, "stride_p": 1} if layout == "nchw"
                           else {"stride_c": 1, "stride_p": c})
                ints = dict(C=c, P=pixels, S=samples, T=cdiv(pixels, block_p), chunk_tiles=8,
                            stride_n=c * p, **strides)
                # big tensors each kernel reads or writes: x; x, y; dy, x; dy, x, dx
                kernels = ((norm_act_fwd_kernel, 2), (norm_act_grad_kernel, 3))
                if not one_pass:
                    kernels += ((norm_act_stats_kernel, 1), (norm_act_grad_sums_kernel, 2))
                specs += [spec(kernel, f"{layout}/{shape_name}", dtype, constexprs,
                               stat_buffers=("mean_ptr", "var_ptr", "partial_ptr", "sums_ptr",
                                             "rows_ptr"),
                               fp32_args=("inv_count", "slope", "eps"), ints=ints,
                               bytes_moved=big * n * c * p * elem_bytes)
                          for kernel, big in kernels]
        specs.append(spec(running_update_kernel, "c256", dtype,
                          dict(BLOCK_C=256, COMPUTE=compute, num_warps=4),
                          stat_buffers=("mean_ptr", "var_ptr", "rmean_ptr", "rvar_ptr"),
                          fp32_args=("inv_groups", "momentum", "unbias"),
                          ints=dict(C=256, groups=1), bytes_moved=6 * 256 * 4))
    return specs
