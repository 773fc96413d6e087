"""AdaIN with noise injection (StyleGAN, Karras et al. 2019, section 2): forward and backward.

Per sample n and channel c, over the H x W pixels p of a row:
h = x + noise_weight[c] * noise[n, p] + bias[c], a = leaky_relu(h) (if a slope is
given), a_hat = (a - mean) * rstd with the biased variance, y = scale[n, c] * a_hat +
shift[n, c].

A program owns BLOCK_C channels of one sample and every pixel of them, so each row's
statistics, and in the backward each row's sums for the scale and shift gradients, are
reduced inside one program in a fixed order, with no atomics. Means multiply by 1 / P
from the host: the GPU's float32 division is approximate, and with one pixel a - a / 1
must be exactly zero (rstd is then 1 / sqrt(eps)). When a row fits in one
BLOCK_P tile (up to 64 x 64 pixels in NCHW) it stays in registers between the
statistics and the output; longer rows are read twice, the second time mostly from
cache. Variances come from sums shifted by each row's first value. The forward saves
the per-row mean and rstd (float32, float64 for float64 input).

Backward, with g = scale * dy: da = rstd * (g - mean_p(g) - a_hat * mean_p(g * a_hat)),
dx = dh = da * leaky_relu'(h). Per row it also writes sum_p(dy) (dshift),
sum_p(dy * a_hat) (dscale), sum_p(dh) and sum_p(dh * noise), which the caller sums over
the batch into the bias and noise-weight gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import compute_dtype

MAX_TILE = 4096
"""Elements per program tile (half that for float64)."""


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
def adain_fwd_kernel(
    x_ptr, noise_ptr, nw_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr, mean_ptr, rstd_ptr,
    C, P, inv_p, stride_n, stride_c, stride_p, noise_stride_n, noise_stride_p, slope, eps,
    HAS_NOISE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ACT: tl.constexpr,
    ONE_TILE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """y = scale * (a - mean) * rstd + shift over each (n, c) row; saves mean and rstd."""
    n = tl.program_id(1)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    pl = tl.arange(0, BLOCK_P)
    x_ptr += n.to(tl.int64) * stride_n
    y_ptr += n.to(tl.int64) * stride_n
    noise_ptr += n.to(tl.int64) * noise_stride_n
    c_mask = c < C
    row = n * C + c
    if ONE_TILE:  # the whole row in registers: an exact two-pass variance
        mask = c_mask[:, None] & (pl[None, :] < P)
        _, a, offsets = _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, pl, mask, stride_c,
                                    stride_p, noise_stride_p, slope, C, P, HAS_NOISE,
                                    HAS_BIAS, HAS_ACT, COMPUTE)
        mean = tl.sum(a, axis=1) * inv_p
        d = tl.where(mask, a - mean[:, None], 0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) * inv_p + eps)
    else:  # sums shifted by each row's first value, against cancellation
        first = tl.arange(0, 2)  # pixel 0, with one masked lane (aranges need 2+ lanes)
        _h0, a0, _offsets0 = _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, first,
                                       c_mask[:, None] & (first[None, :] < 1), stride_c,
                                       stride_p, noise_stride_p, slope, C, P, HAS_NOISE,
                                       HAS_BIAS, HAS_ACT, COMPUTE)
        shift0 = tl.sum(a0, axis=1)
        # Per-lane sums, reduced after the loop (fewer reductions, and no loop result with
        # two uses, which trips Triton 3.6's thread-locality pass).
        s1 = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
        s2 = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
        for p0 in range(0, P, BLOCK_P):
            mask = c_mask[:, None] & ((p0 + pl)[None, :] < P)
            _h, a, offsets = _activation(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p0 + pl, mask,
                                        stride_c, stride_p, noise_stride_p, slope, C, P,
                                        HAS_NOISE, HAS_BIAS, HAS_ACT, COMPUTE)
            d = tl.where(mask, a - shift0[:, None], 0)
            s1 += d
            s2 += d * d
        mean_d = tl.sum(s1, axis=1) * inv_p
        mean = shift0 + mean_d
        rstd = 1.0 / tl.sqrt(tl.maximum(tl.sum(s2, axis=1) * inv_p - mean_d * mean_d, 0) + eps)
    tl.store(mean_ptr + row, mean, mask=c_mask)
    tl.store(rstd_ptr + row, rstd, mask=c_mask)
    # scale * ((a - mean) * rstd) + shift, not (scale * rstd) * a + (...): with a tiny
    # variance rstd is huge and the folded form cancels catastrophically.
    s = tl.load(scale_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    t = tl.load(shift_ptr + row, mask=c_mask, other=0).to(COMPUTE)
    if ONE_TILE:
        a_hat = (a - mean[:, None]) * rstd[:, None]
        tl.store(y_ptr + offsets, (s[:, None] * a_hat + t[:, None]).to(y_ptr.dtype.element_ty),
                 mask=mask)
    else:
        for p0 in range(0, P, BLOCK_P):
            _, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p0 + pl,
                                                  c_mask, mean, rstd, stride_c, stride_p,
                                                  noise_stride_p, slope, C, P, HAS_NOISE,
                                                  HAS_BIAS, HAS_ACT, COMPUTE)
            tl.store(y_ptr + offsets,
                     (s[:, None] * a_hat + t[:, None]).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _row_sums(dy_ptr, a_hat, offsets, mask, COMPUTE: tl.constexpr):
    """(sum_p dy, sum_p dy * a_hat) of a tile."""
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0).to(COMPUTE)
    return tl.sum(dy, axis=1), tl.sum(dy * a_hat, axis=1)


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
    ONE_TILE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """dx (laid out like x), and per row in rows[k, n, c]: k = 0 sum(dy), 1 sum(dy * a_hat),
    2 sum(dh), 3 sum(dh * noise)."""
    n = tl.program_id(1)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    pl = tl.arange(0, BLOCK_P)
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
    if ONE_TILE:  # the row stays in registers between the two passes
        h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, pl, c_mask,
                                              mean, rstd, stride_c, stride_p, noise_stride_p,
                                              slope, C, P, HAS_NOISE, HAS_BIAS, HAS_ACT,
                                              COMPUTE)
        sum_dy, sum_dy_ah = _row_sums(dy_ptr, a_hat, offsets, mask, COMPUTE)
    else:  # per-lane sums reduced after the loop, as in the forward
        acc_dy = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
        acc_dy_ah = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
        for p0 in range(0, P, BLOCK_P):
            h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p0 + pl,
                                                  c_mask, mean, rstd, stride_c, stride_p,
                                                  noise_stride_p, slope, C, P, HAS_NOISE,
                                                  HAS_BIAS, HAS_ACT, COMPUTE)
            dy = tl.load(dy_ptr + offsets, mask=mask, other=0).to(COMPUTE)
            acc_dy += dy
            acc_dy_ah += dy * a_hat
        sum_dy = tl.sum(acc_dy, axis=1)
        sum_dy_ah = tl.sum(acc_dy_ah, axis=1)
    tl.store(rows_ptr + row, sum_dy, mask=c_mask)
    tl.store(rows_ptr + rows_stride + row, sum_dy_ah, mask=c_mask)
    mean_g = scale * sum_dy * inv_p
    mean_g_ah = scale * sum_dy_ah * inv_p
    if ONE_TILE:
        dh, dh_noise = _input_grad(dy_ptr, dx_ptr, noise_ptr, h, a_hat, offsets, mask, pl, P,
                                   noise_stride_p, rstd, scale, mean_g, mean_g_ah, slope,
                                   HAS_NOISE, HAS_ACT, COMPUTE)
        sum_dh = tl.sum(dh, axis=1)
        sum_dh_noise = tl.sum(dh_noise, axis=1)
    else:
        acc_dh = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
        acc_dh_noise = tl.zeros([BLOCK_C, BLOCK_P], COMPUTE)
        for p0 in range(0, P, BLOCK_P):
            h, a_hat, offsets, mask = _normalized(x_ptr, noise_ptr, nw_ptr, b_ptr, c, p0 + pl,
                                                  c_mask, mean, rstd, stride_c, stride_p,
                                                  noise_stride_p, slope, C, P, HAS_NOISE,
                                                  HAS_BIAS, HAS_ACT, COMPUTE)
            dh, dh_noise = _input_grad(dy_ptr, dx_ptr, noise_ptr, h, a_hat, offsets, mask,
                                       p0 + pl, P, noise_stride_p, rstd, scale, mean_g,
                                       mean_g_ah, slope, HAS_NOISE, HAS_ACT, COMPUTE)
            acc_dh += dh
            acc_dh_noise += dh_noise
        sum_dh = tl.sum(acc_dh, axis=1)
        sum_dh_noise = tl.sum(acc_dh_noise, axis=1)
    tl.store(rows_ptr + 2 * rows_stride + row, sum_dh, mask=c_mask)
    tl.store(rows_ptr + 3 * rows_stride + row, sum_dh_noise, mask=c_mask)


# ----------------------------------------------------------------------------- host side



def _blocks(c: int, p: int, pixels_contiguous: bool, elem_bytes: int) -> tuple[int, int, int]:
    """BLOCK_C, BLOCK_P and num_warps: whole rows in one tile where they fit."""
    max_tile = MAX_TILE // 2 if elem_bytes == 8 else MAX_TILE
    if pixels_contiguous:
        block_p = min(triton.next_power_of_2(p), max_tile)
        block_c = max(1, min(triton.next_power_of_2(c), max_tile // block_p, 16))
    else:
        block_c = min(triton.next_power_of_2(c), 32)
        block_p = max(1, min(triton.next_power_of_2(p), max_tile // block_c))
    return block_c, block_p, max(1, min(8, block_c * block_p // 512))


def _layout(x: torch.Tensor, noise: torch.Tensor | None):
    """(N, C, P, x strides, noise strides) of a 4-D NCHW- or channels_last-dense x."""
    n, c, h, w = x.shape
    if n * c * h * w >= 2**31:
        raise ValueError(f"adain kernels take fewer than 2^31 elements, got shape "
                         f"{tuple(x.shape)}")
    noise_strides = (0, 0)
    if noise is not None:  # one (1, 1, H, W) map may serve the whole batch
        noise_strides = (noise.stride(0) if noise.shape[0] > 1 else 0, noise.stride(3))
    return n, c, h * w, (x.stride(0), x.stride(1), x.stride(3)), noise_strides


def adain_forward(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                  noise: torch.Tensor | None, noise_weight: torch.Tensor | None,
                  bias: torch.Tensor | None, y: torch.Tensor, mean: torch.Tensor,
                  rstd: torch.Tensor, *, slope: float | None, eps: float) -> None:
    """Fills y (laid out like x) and the (N, C) row statistics mean and rstd.

    scale and shift are contiguous (N, C); noise (N, 1, H, W) with noise_weight (C,), and
    bias (C,), are optional.
    """
    n, c, p, strides, noise_strides = _layout(x, noise)
    block_c, block_p, num_warps = _blocks(c, p, strides[2] == 1, x.element_size())
    adain_fwd_kernel[(triton.cdiv(c, block_c), n)](
        x, noise if noise is not None else x, noise_weight if noise is not None else x,
        bias if bias is not None else x, scale, shift, y, mean, rstd,
        c, p, 1.0 / p, *strides, *noise_strides, float(slope or 0.0), float(eps),
        HAS_NOISE=noise is not None, HAS_BIAS=bias is not None, HAS_ACT=slope is not None,
        ONE_TILE=p <= block_p, BLOCK_C=block_c, BLOCK_P=block_p,
        COMPUTE=compute_dtype(x.dtype), num_warps=num_warps,
    )


def adain_backward(dy: torch.Tensor, x: torch.Tensor, scale: torch.Tensor,
                   noise: torch.Tensor | None, noise_weight: torch.Tensor | None,
                   bias: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor,
                   dx: torch.Tensor, rows: torch.Tensor, *, slope: float | None) -> None:
    """Fills dx (laid out like x; dy too) and rows (4, N, C): per-row sums of dy,
    dy * a_hat, dh and dh * noise."""
    n, c, p, strides, noise_strides = _layout(x, noise)
    block_c, block_p, num_warps = _blocks(c, p, strides[2] == 1, x.element_size())
    adain_bwd_kernel[(triton.cdiv(c, block_c), n)](
        dy, x, noise if noise is not None else x, noise_weight if noise is not None else x,
        bias if bias is not None else x, scale, mean, rstd, dx, rows,
        c, p, 1.0 / p, *strides, *noise_strides, float(slope or 0.0),
        HAS_NOISE=noise is not None, HAS_BIAS=bias is not None, HAS_ACT=slope is not None,
        ONE_TILE=p <= block_p, BLOCK_C=block_c, BLOCK_P=block_p,
        COMPUTE=compute_dtype(x.dtype), num_warps=num_warps,
    )
