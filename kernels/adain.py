"""AdaIN with noise injection (StyleGAN, Karras et al. 2019, section 2): forward and backward.

Per sample n and channel c, over the H x W pixels p of a row:
h = x + noise_weight[c] * noise[n, p] + bias[c], a = leaky_relu(h) (if a slope is
given), a_hat = (a - mean) * rstd with the biased variance, y = scale[n, c] * a_hat +
shift[n, c].

Rows that fit one tile (up to 64 x 64 pixels in NCHW) take one kernel each way
(``adain_fwd_kernel``, ``adain_bwd_kernel``): a program owns BLOCK_C whole rows, which
stay in registers between the row statistics and the output. Longer rows are split
into chunks so that any shape gives the GPU thousands of programs (a 512 x 512 layer
with 32 channels and a batch of 4 has only 128 rows): a first kernel writes per-chunk
sums (``adain_stats_kernel``; ``adain_grad_sums_kernel`` backward), and a second
combines each row's chunk sums in a fixed order and writes the output
(``adain_norm_kernel``; ``adain_grad_kernel``). Nothing is summed atomically, so
results do not depend on scheduling. Sums are shifted by each row's first value,
against cancellation, and means multiply by a host-computed 1 / P (the GPU's float32
division need not be exact, and with one pixel a - mean must be exactly 0 while rstd
is 1 / sqrt(eps)). The forward saves each row's mean and rstd (float32, float64 for
float64 input).

Backward, with g = scale * dy: da = rstd * (g - mean_p(g) - a_hat * mean_p(g * a_hat)),
dx = dh = da * leaky_relu'(h). It also yields per row sum_p(dy) (dshift),
sum_p(dy * a_hat) (dscale), sum_p(dh) and sum_p(dh * noise), which the caller sums over
the batch into the bias and noise-weight gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    STORAGE_DTYPES,
    UNIT_STRIDES,
    Spec,
    cdiv,
    chunk_program,
    combine_chunks,
    compute_dtype,
    row_chunks,
    row_tiles,
    spec,
    store_chunk_sums,
)


@triton.jit
def _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p, mask, stride_c, stride_p,
                noise_stride_p, slope, C, P, HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_ACT: tl.constexpr, COMPUTE: tl.constexpr):
    """(h, a, offsets) of a tile: h = x + noise_weight * noise + bias, a = lrelu(h) or h.

    a is zero outside the mask, so it can be summed directly.
    """
    offsets = c[:, None] * stride_c + p[None, :] * stride_p
    h = tl.load(x_ptr + offsets, mask=mask, other=0).to(COMPUTE)
    if HAS_NOISE:
        noise = tl.load(noise_ptr + p * noise_stride_p, mask=p < P, other=0).to(COMPUTE)
        weight = tl.load(nw_ptr + c, mask=c < C, other=0).to(COMPUTE)
        h += weight[:, None] * noise[None, :]
    if HAS_BIAS:
        h += tl.load(b_ptr + c, mask=c < C, other=0).to(COMPUTE)[:, None]
    if HAS_ACT:
        a = tl.where(h > 0, h, h * slope)
    else:
        a = h
    return h, tl.where(mask, a, 0), offsets


@triton.jit
def _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p, c_mask, mean, rstd, stride_c, stride_p,
                noise_stride_p, slope, C, P, HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_ACT: tl.constexpr, COMPUTE: tl.constexpr):
    """(h, a_hat, offsets, mask) of the tile at pixels p; a_hat is zero outside the mask."""
    mask = c_mask[:, None] & (p[None, :] < P)
    h, a, offsets = _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p, mask, stride_c, stride_p,
                                noise_stride_p, slope, C, P, HAS_NOISE, HAS_BIAS, HAS_ACT,
                                COMPUTE)
    return h, tl.where(mask, (a - mean[:, None]) * rstd[:, None], 0), offsets, mask


@triton.jit
def _row_shift(x_ptr, noise_ptr, nw_ptr, b_ptr, c, c_mask, stride_c, stride_p,
               noise_stride_p, slope, C, P, HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr,
               HAS_ACT: tl.constexpr, COMPUTE: tl.constexpr):
    """Each row's first activation (pixel 0): the shift of the row's sums."""
    first = tl.arange(0, 2)  # one masked lane: aranges need at least two
    _h0, a0, _offsets0 = _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, first,
                                     c_mask[:, None] & (first[None, :] < 1), stride_c,
                                     stride_p, noise_stride_p, slope, C, P, HAS_NOISE,
                                     HAS_BIAS, HAS_ACT, COMPUTE)
    return tl.sum(a0, axis=1)


@triton.jit
def adain_fwd_kernel(
    x_ptr, noise_ptr, nw_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr, mean_ptr, rstd_ptr,
    C, P, inv_p, stride_n, stride_c, stride_p, noise_stride_n, noise_stride_p, slope, eps,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Rows of at most BLOCK_P pixels: statistics (exact two-pass) and y in registers."""
    n = tl.program_id(1)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.arange(0, BLOCK_P)
    c_mask = c < C
    mask = c_mask[:, None] & (p[None, :] < P)
    _h, a, offsets = _activation(x_ptr + n.to(tl.int64) * stride_n,
                                 noise_ptr + n.to(tl.int64) * noise_stride_n, nw_ptr, b_ptr,
                                 c, p, mask, stride_c, stride_p, noise_stride_p, slope, C, P,
                                 HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
    mean = tl.sum(a, axis=1) * inv_p
    d = tl.where(mask, a - mean[:, None], 0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) * inv_p + eps)
    row = n * C + c
    tl.store(mean_ptr + row, mean, mask=c_mask)
    tl.store(rstd_ptr + row, rstd, mask=c_mask)
    # scale * ((a - mean) * rstd) + shift: folding rstd into the scale would cancel
    # catastrophically when the variance is tiny and rstd huge.
    s = tl.load(scale_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    t = tl.load(shift_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    y = s[:, None] * (d * rstd[:, None]) + t[:, None]
    tl.store(y_ptr + n.to(tl.int64) * stride_n + offsets, y.to(y_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def adain_stats_kernel(
    x_ptr, noise_ptr, nw_ptr, b_ptr, partial_ptr,
    C, P, chunk_size, stride_n, stride_c, stride_p, noise_stride_n, noise_stride_p, slope,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Long rows, pass 1: per chunk, sums of (a - a[0]) and its square."""
    n, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    x_ptr += n.to(tl.int64) * stride_n
    noise_ptr += n.to(tl.int64) * noise_stride_n
    shift0 = _row_shift(x_ptr, noise_ptr, nw_ptr, b_ptr, c, c_mask, stride_c, stride_p,
                        noise_stride_p, slope, C, P, HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
    # Per-lane sums, reduced after the loop (fewer reductions, and no loop result with two
    # uses, which trips Triton 3.6's thread-locality pass).
    s1 = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    s2 = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    for p0 in range(chunk * chunk_size, (chunk + 1) * chunk_size, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        mask = c_mask[:, None] & (p[None, :] < P)
        _h, a, _offsets = _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p, mask, stride_c,
                                      stride_p, noise_stride_p, slope, C, P, HAS_NOISE,
                                      HAS_BIAS, HAS_ACT, COMPUTE)
        d = tl.where(mask, a - shift0[:, None], 0)
        s1 += d
        s2 += d * d
    store_chunk_sums(partial_ptr, n, chunk, c, c_mask, C, s1, s2)


@triton.jit
def adain_norm_kernel(
    x_ptr, noise_ptr, nw_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr, mean_ptr, rstd_ptr,
    partial_ptr, C, P, inv_p, chunk_size, stride_n, stride_c, stride_p, noise_stride_n,
    noise_stride_p, slope, eps,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Long rows, pass 2: row statistics from the chunk sums, then y for this chunk."""
    n, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    x_ptr += n.to(tl.int64) * stride_n
    y_ptr += n.to(tl.int64) * stride_n
    noise_ptr += n.to(tl.int64) * noise_stride_n
    shift0 = _row_shift(x_ptr, noise_ptr, nw_ptr, b_ptr, c, c_mask, stride_c, stride_p,
                        noise_stride_p, slope, C, P, HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
    s1, s2 = combine_chunks(partial_ptr, n, c, c_mask, C, COMPUTE)
    mean_d = s1 * inv_p
    mean = shift0 + mean_d
    # a NaN must survive, as in the reference (tl.maximum would drop it by default)
    rstd = 1.0 / tl.sqrt(tl.maximum(s2 * inv_p - mean_d * mean_d, 0,
                                    propagate_nan=tl.PropagateNan.ALL) + eps)
    row = n * C + c
    first_chunk = c_mask & ((c * 0 + chunk) == 0)  # the row's chunk 0 stores its statistics
    tl.store(mean_ptr + row, mean, mask=first_chunk)
    tl.store(rstd_ptr + row, rstd, mask=first_chunk)
    s = tl.load(scale_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    t = tl.load(shift_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    for p0 in range(chunk * chunk_size, (chunk + 1) * chunk_size, BLOCK_P):
        _h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c,
                                               p0 + tl.arange(0, BLOCK_P), c_mask, mean, rstd,
                                               stride_c, stride_p, noise_stride_p, slope, C, P,
                                               HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
        tl.store(y_ptr + offsets, (s[:, None] * a_hat + t[:, None]).to(y_ptr.dtype.element_ty),
                 mask=mask)


@triton.jit
def _input_grad(dy_ptr, dx_ptr, noise_ptr, h, a_hat, offsets, mask, p, P, noise_stride_p,
                rstd, scale, mean_g, mean_g_ah, slope, HAS_NOISE: tl.constexpr,
                HAS_ACT: tl.constexpr, COMPUTE: tl.constexpr):
    """Stores a tile's dh and returns the tiles dh and dh * noise (zeros without noise).

    dh from dy and the row means mean_p(g), mean_p(g * a_hat) of g = scale * dy.
    """
    g = tl.load(dy_ptr + offsets, mask=mask, other=0).to(COMPUTE) * scale[:, None]
    da = rstd[:, None] * (g - mean_g[:, None] - a_hat * mean_g_ah[:, None])
    if HAS_ACT:
        da = tl.where(h > 0, da, da * slope)
    dh = tl.where(mask, da, 0)
    tl.store(dx_ptr + offsets, dh.to(dx_ptr.dtype.element_ty), mask=mask)
    if HAS_NOISE:
        noise = tl.load(noise_ptr + p * noise_stride_p, mask=p < P, other=0).to(COMPUTE)
        dh_noise = dh * noise[None, :]
    else:
        dh_noise = tl.zeros(dh.shape, COMPUTE)
    return dh, dh_noise


@triton.jit
def adain_bwd_kernel(
    dy_ptr, x_ptr, noise_ptr, nw_ptr, b_ptr, scale_ptr, mean_ptr, rstd_ptr, dx_ptr, rows_ptr,
    C, P, inv_p, stride_n, stride_c, stride_p, noise_stride_n, noise_stride_p, slope,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Rows of at most BLOCK_P pixels: dx, and per row in rows[k, n, c]: k = 0 sum(dy),
    1 sum(dy * a_hat), 2 sum(dh), 3 sum(dh * noise)."""
    n = tl.program_id(1)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.arange(0, BLOCK_P)
    x_ptr += n.to(tl.int64) * stride_n
    dy_ptr += n.to(tl.int64) * stride_n
    dx_ptr += n.to(tl.int64) * stride_n
    noise_ptr += n.to(tl.int64) * noise_stride_n
    c_mask = c < C
    row = n * C + c
    rows_stride = tl.num_programs(1) * C
    mean = tl.load(mean_ptr + row, mask=c_mask, other=0)
    rstd = tl.load(rstd_ptr + row, mask=c_mask, other=0)
    scale = tl.load(scale_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p, c_mask, mean,
                                          rstd, stride_c, stride_p, noise_stride_p, slope, C, P,
                                          HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0).to(COMPUTE)
    sum_dy = tl.sum(dy, axis=1)
    sum_dy_ah = tl.sum(dy * a_hat, axis=1)
    dh, dh_noise = _input_grad(dy_ptr, dx_ptr, noise_ptr, h, a_hat, offsets, mask, p, P,
                               noise_stride_p, rstd, scale, scale * sum_dy * inv_p,
                               scale * sum_dy_ah * inv_p, slope, HAS_NOISE, HAS_ACT, COMPUTE)
    tl.store(rows_ptr + row, sum_dy, mask=c_mask)
    tl.store(rows_ptr + rows_stride + row, sum_dy_ah, mask=c_mask)
    tl.store(rows_ptr + 2 * rows_stride + row, tl.sum(dh, axis=1), mask=c_mask)
    tl.store(rows_ptr + 3 * rows_stride + row, tl.sum(dh_noise, axis=1), mask=c_mask)


@triton.jit
def adain_grad_sums_kernel(
    dy_ptr, x_ptr, noise_ptr, nw_ptr, b_ptr, mean_ptr, rstd_ptr, partial_ptr,
    C, P, chunk_size, stride_n, stride_c, stride_p, noise_stride_n, noise_stride_p, slope,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Long rows, backward pass 1: per chunk, sums of dy and dy * a_hat."""
    n, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    x_ptr += n.to(tl.int64) * stride_n
    dy_ptr += n.to(tl.int64) * stride_n
    noise_ptr += n.to(tl.int64) * noise_stride_n
    mean = tl.load(mean_ptr + n * C + c, mask=c_mask, other=0)
    rstd = tl.load(rstd_ptr + n * C + c, mask=c_mask, other=0)
    acc_dy = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    acc_dy_ah = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    for p0 in range(chunk * chunk_size, (chunk + 1) * chunk_size, BLOCK_P):
        _h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c,
                                               p0 + tl.arange(0, BLOCK_P), c_mask, mean, rstd,
                                               stride_c, stride_p, noise_stride_p, slope, C, P,
                                               HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0).to(COMPUTE)
        acc_dy += dy
        acc_dy_ah += dy * a_hat
    store_chunk_sums(partial_ptr, n, chunk, c, c_mask, C, acc_dy, acc_dy_ah)


@triton.jit
def adain_grad_kernel(
    dy_ptr, x_ptr, noise_ptr, nw_ptr, b_ptr, scale_ptr, mean_ptr, rstd_ptr, dx_ptr, rows_ptr,
    sums_ptr, partial_ptr, C, P, inv_p, chunk_size, stride_n, stride_c, stride_p,
    noise_stride_n, noise_stride_p, slope,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Long rows, backward pass 2: dx for this chunk from the row sums of pass 1 (sums);
    rows[0:2] = those row sums, partial = this chunk's sums of dh and dh * noise."""
    n, chunk, c, c_mask = chunk_program(C, BLOCK_C)
    x_ptr += n.to(tl.int64) * stride_n
    dy_ptr += n.to(tl.int64) * stride_n
    dx_ptr += n.to(tl.int64) * stride_n
    noise_ptr += n.to(tl.int64) * noise_stride_n
    row = n * C + c
    mean = tl.load(mean_ptr + row, mask=c_mask, other=0)
    rstd = tl.load(rstd_ptr + row, mask=c_mask, other=0)
    scale = tl.load(scale_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    sum_dy, sum_dy_ah = combine_chunks(sums_ptr, n, c, c_mask, C, COMPUTE)
    rows_stride = tl.num_programs(2) * C
    first_chunk = c_mask & ((c * 0 + chunk) == 0)  # the row's chunk 0 stores the row sums
    tl.store(rows_ptr + row, sum_dy, mask=first_chunk)
    tl.store(rows_ptr + rows_stride + row, sum_dy_ah, mask=first_chunk)
    acc_dh = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    acc_dh_noise = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
    for p0 in range(chunk * chunk_size, (chunk + 1) * chunk_size, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p, c_mask,
                                              mean, rstd, stride_c, stride_p, noise_stride_p,
                                              slope, C, P, HAS_NOISE, HAS_BIAS, HAS_ACT,
                                              COMPUTE)
        dh, dh_noise = _input_grad(dy_ptr, dx_ptr, noise_ptr, h, a_hat, offsets, mask, p, P,
                                   noise_stride_p, rstd, scale, scale * sum_dy * inv_p,
                                   scale * sum_dy_ah * inv_p, slope, HAS_NOISE, HAS_ACT,
                                   COMPUTE)
        acc_dh += dh
        acc_dh_noise += dh_noise
    store_chunk_sums(partial_ptr, n, chunk, c, c_mask, C, acc_dh, acc_dh_noise)


# ----------------------------------------------------------------------------- host side


class _Launch:
    """Shapes, strides, tiles and the optional-input arguments of one call."""

    def __init__(self, x: torch.Tensor, noise: torch.Tensor | None,
                 noise_weight: torch.Tensor | None, bias: torch.Tensor | None,
                 slope: float | None) -> None:
        n, c, h, w = x.shape
        if n * c * h * w >= 2**31:
            raise ValueError(f"adain kernels take fewer than 2^31 elements, got shape "
                             f"{tuple(x.shape)}")
        self.n, self.c, self.p = n, c, h * w
        self.strides = (x.stride(0), x.stride(1), x.stride(3))
        noise_strides = (0, 0)
        if noise is not None:  # one (1, 1, H, W) map may serve the whole batch
            noise_strides = (noise.stride(0) if noise.shape[0] > 1 else 0, noise.stride(3))
        self.noise_strides = noise_strides
        self.block_c, self.block_p, self.num_warps = row_tiles(c, self.p, self.strides[2] == 1,
                                                             x.element_size())
        self.c_blocks = cdiv(c, self.block_c)
        self.one_tile = self.p <= self.block_p
        self.chunks, tiles_per_chunk = row_chunks(x.device, self.c_blocks * n,
                                                  cdiv(self.p, self.block_p))
        self.chunk_size = tiles_per_chunk * self.block_p
        self.optional = (x if noise is None else noise, x if noise is None else noise_weight,
                         x if bias is None else bias)
        self.meta = dict(HAS_NOISE=noise is not None, HAS_BIAS=bias is not None,
                         HAS_ACT=slope is not None, BLOCK_C=self.block_c,
                         BLOCK_P=self.block_p, COMPUTE=compute_dtype(x.dtype),
                         num_warps=self.num_warps)
        self.slope = float(slope or 0.0)

    def partial(self, like: torch.Tensor) -> torch.Tensor:
        """A (2, N, chunks, C) buffer of per-chunk sums."""
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        return torch.empty((2, self.n, self.chunks, self.c), device=like.device, dtype=dtype)


def adain_forward(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                  noise: torch.Tensor | None, noise_weight: torch.Tensor | None,
                  bias: torch.Tensor | None, y: torch.Tensor, mean: torch.Tensor,
                  rstd: torch.Tensor, *, slope: float | None, eps: float) -> None:
    """Fills y (laid out like x) and the (N, C) row statistics mean and rstd.

    scale and shift are contiguous (N, C); noise (N or 1, 1, H, W) with noise_weight (C,),
    and bias (C,), are optional.
    """
    g = _Launch(x, noise, noise_weight, bias, slope)
    if g.one_tile:
        adain_fwd_kernel[(g.c_blocks, g.n)](
            x, *g.optional, scale, shift, y, mean, rstd, g.c, g.p, 1.0 / g.p, *g.strides,
            *g.noise_strides, g.slope, float(eps), **g.meta)
        return
    partial = g.partial(mean)
    grid = (g.c_blocks, g.chunks, g.n)
    adain_stats_kernel[grid](x, *g.optional, partial, g.c, g.p, g.chunk_size, *g.strides,
                             *g.noise_strides, g.slope, **g.meta)
    adain_norm_kernel[grid](x, *g.optional, scale, shift, y, mean, rstd, partial, g.c, g.p,
                            1.0 / g.p, g.chunk_size, *g.strides, *g.noise_strides, g.slope,
                            float(eps), **g.meta)


def adain_backward(dy: torch.Tensor, x: torch.Tensor, scale: torch.Tensor,
                   noise: torch.Tensor | None, noise_weight: torch.Tensor | None,
                   bias: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor,
                   dx: torch.Tensor, rows: torch.Tensor, *, slope: float | None) -> None:
    """Fills dx (laid out like x; dy too) and rows (4, N, C): per-row sums of dy,
    dy * a_hat, dh and dh * noise."""
    g = _Launch(x, noise, noise_weight, bias, slope)
    if g.one_tile:
        adain_bwd_kernel[(g.c_blocks, g.n)](
            dy, x, *g.optional, scale, mean, rstd, dx, rows, g.c, g.p, 1.0 / g.p, *g.strides,
            *g.noise_strides, g.slope, **g.meta)
        return
    sums, partial = g.partial(rows), g.partial(rows)
    grid = (g.c_blocks, g.chunks, g.n)
    adain_grad_sums_kernel[grid](dy, x, *g.optional, mean, rstd, sums, g.c, g.p, g.chunk_size,
                                 *g.strides, *g.noise_strides, g.slope, **g.meta)
    adain_grad_kernel[grid](dy, x, *g.optional, scale, mean, rstd, dx, rows, sums, partial,
                            g.c, g.p, 1.0 / g.p, g.chunk_size, *g.strides, *g.noise_strides,
                            g.slope, **g.meta)
    rows[2:] = partial.sum(dim=2)


# ------------------------------------------------------------------- ahead-of-time specs


def aot_specs() -> list[Spec]:
    """The one-tile kernels where a row fits a tile, the chunked ones where it does not,
    at the tiles ``_blocks`` picks, in both layouts."""
    shapes = {"c512_32x32": (16, 512, 32 * 32), "c512_64x64": (8, 512, 64 * 64),
              "c32_512x512": (4, 32, 512 * 512)}  # (N, C, P); the last two benchmarked
    specs = []
    for dtype, (compute, elem_bytes) in STORAGE_DTYPES.items():
        for layout, unit in UNIT_STRIDES.items():
            for shape_name, (n, c, p) in shapes.items():
                block_c, block_p, num_warps = row_tiles(c, p, layout == "nchw", elem_bytes)
                constexprs = dict(HAS_NOISE=True, HAS_BIAS=True, HAS_ACT=True, BLOCK_C=block_c,
                                  BLOCK_P=block_p, COMPUTE=compute, num_warps=num_warps,
                                  noise_stride_p=1, **unit)
                # big tensors each kernel must read or write (x, y; dy, x, dx), and noise
                kernels = (((adain_fwd_kernel, 2), (adain_bwd_kernel, 3)) if p <= block_p else
                           ((adain_stats_kernel, 1), (adain_norm_kernel, 2),
                            (adain_grad_sums_kernel, 2), (adain_grad_kernel, 3)))
                strides = {"stride_c": p, "stride_p": 1} if layout == "nchw" else {
                    "stride_c": 1, "stride_p": c}
                specs += [spec(kernel, f"{layout}/{shape_name}", dtype, constexprs,
                               stat_buffers=("mean_ptr", "rstd_ptr", "partial_ptr", "sums_ptr",
                                             "rows_ptr"),
                               fp32_args=("inv_p", "slope", "eps"),
                               ints=dict(C=c, P=p, stride_n=c * p, noise_stride_n=p,
                                         chunk_size=block_p,  # a multiple of it
                                         **strides),
                               bytes_moved=(big * c + 1) * n * p * elem_bytes)
                          for kernel, big in kernels]
    return specs
