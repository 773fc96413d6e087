"""Minibatch standard deviation (Karras et al. 2017, section 3): forward and backward.

Sample n belongs to group m = n mod M (M = N / G) as member g = n // M, the official
(G, M, F, C/F, H, W) reshape. For each group m and channel group f the statistic is the
mean over the C/F channels and H x W pixels of sqrt(var_g(x) + eps), the biased variance
over the G members.

The statistic is reduced in two passes. Pass one (``mbstd_fwd_kernel``) gives each
program one tile of one (m, f) channel group: it loops over the G members, copies each
member's tile of x into the output and accumulates the member sums, then writes the
tile's sum of standard deviations to its own slot of a partial buffer. Pass two
(``mbstd_stat_kernel``) sums the partials of each (m, f) in a fixed order and writes the
statistic channel. One program per (m, f) would leave most of the GPU idle (M * F = 4
programs for ProGAN's batch of 16), and atomic sums would make the statistic depend on
scheduling. x is read once and written once; the partial buffer is a few KB.

In channels_last a pixel's C + F output channels start wherever the previous pixel's
ended, so a (channels, pixels) tile's rows are misaligned and every store would be
scalar. There pass one is ``mbstd_fwd_rows_kernel``: it walks each member's output as one
flat run (aligned stores; the loads of x take the misalignment instead), writes zeros
into the statistic slots, which pass two then fills, and splits its partial sums by
channel group.

The backward (``mbstd_bwd_kernel``) recomputes each tile's group mean and standard
deviation from x (one read of the G member tiles, a second from cache) rather than
storing them: dx = dout[:, :C] + gs[m, f] / (G * C/F * H * W) * (x - mean) / std, with
gs the sum of the statistic channel's gradient over the G members and H x W.

Variances come from sums shifted by the group's first member, which avoids the
cancellation of sum(x^2) - sum(x)^2 when values are large relative to their spread.
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
    compute_dtype,
    next_power_of_2,
    spec,
)

MAX_TILE = 2048
"""Elements of one group member's tile (half that for float64)."""


@triton.jit
def _program_tile(F, Cf, HW, num_c_tiles, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """This program's (m, f) index mf, group m, and its tile's channels, pixels and mask.

    Axis 0 of the grid enumerates the tiles of one channel group, axis 1 the (m, f) pairs.
    """
    tile = tl.program_id(0)
    mf = tl.program_id(1)
    c = (tile % num_c_tiles) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = (tile // num_c_tiles) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = (c[:, None] < Cf) & (p[None, :] < HW)
    return mf, mf // F, (mf % F) * Cf + c, p, mask


@triton.jit
def _group_moments(x_ptr, x_off, x_stride_g, out_ptr, out_off, out_stride_g, mask,
                   store_mask, G, COPY: tl.constexpr, COMPUTE: tl.constexpr):
    """Mean and biased variance over the G members of a tile (zeros where not mask); with
    COPY, each member's tile is also stored, where store_mask, at
    out_ptr + g * out_stride_g + out_off as it goes by."""
    x0 = tl.load(x_ptr + x_off, mask=mask, other=0)
    if COPY:
        tl.store(out_ptr + out_off, x0, mask=store_mask)
    x0 = x0.to(COMPUTE)
    s1 = tl.zeros(x0.shape, COMPUTE)
    # x0 - x0: 0, or NaN for a non-finite x0, which a group of one never subtracts
    # otherwise (the reference's x - mean is NaN there)
    s2 = x0 - x0
    for g in range(1, G):
        xg = tl.load(x_ptr + g * x_stride_g + x_off, mask=mask, other=0)
        if COPY:
            tl.store(out_ptr + g * out_stride_g + out_off, xg, mask=store_mask)
        d = xg.to(COMPUTE) - x0
        s1 += d
        s2 += d * d
    mean_d = s1 / G
    # a NaN member must make the statistic NaN, as in the reference (tl.maximum would
    # drop it by default)
    return x0 + mean_d, tl.maximum(s2 / G - mean_d * mean_d, 0,
                                   propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def mbstd_fwd_kernel(
    x_ptr, out_ptr, partial_ptr,
    G, F, Cf, HW, num_c_tiles, x_stride_n, x_stride_c, x_stride_p, x_stride_g,
    out_stride_n, out_stride_c, out_stride_p, out_stride_g, eps,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """Copies x into out[:, :C] and writes each tile's sum of group standard deviations."""
    mf, m, channel, p, mask = _program_tile(F, Cf, HW, num_c_tiles, BLOCK_C, BLOCK_P)
    _, var = _group_moments(
        x_ptr + m * x_stride_n, channel[:, None] * x_stride_c + p[None, :] * x_stride_p,
        x_stride_g, out_ptr + m * out_stride_n,
        channel[:, None] * out_stride_c + p[None, :] * out_stride_p, out_stride_g, mask, mask,
        G, True, COMPUTE)
    std = tl.where(mask, tl.sqrt(var + eps), 0)
    tl.store(partial_ptr + mf * tl.num_programs(0) + tl.program_id(0),
             tl.sum(tl.sum(std, axis=1), axis=0))


@triton.jit
def mbstd_fwd_rows_kernel(
    x_ptr, out_ptr, partial_ptr, G, out_numel, x_stride_n, x_stride_g, out_stride_n,
    out_stride_g, eps,
    ROW: tl.constexpr, F: tl.constexpr, BLOCK: tl.constexpr, COMPUTE: tl.constexpr,
):
    """mbstd_fwd_kernel for channels_last: each sample's output is one run of pixel rows of
    ROW = C + F channels, walked flat, so each store is aligned whatever ROW is. Out
    element j is channel j % ROW of pixel j // ROW, x's element j - (j // ROW) * F; the
    statistic slots get zeros here and their values from mbstd_stat_kernel."""
    tile = tl.program_id(0)
    m = tl.program_id(1)
    j = tile * BLOCK + tl.arange(0, BLOCK)
    channel = j % ROW
    inside = j < out_numel
    in_x = inside & (channel < ROW - F)
    _, var = _group_moments(x_ptr + m * x_stride_n, j - (j // ROW) * F, x_stride_g,
                            out_ptr + m * out_stride_n, j, out_stride_g, in_x, inside, G,
                            True, COMPUTE)
    std = tl.where(in_x, tl.sqrt(var + eps), 0)
    for f in tl.static_range(F):
        in_group = channel // ((ROW - F) // F) == f
        tl.store(partial_ptr + (m * F + f) * tl.num_programs(0) + tile,
                 tl.sum(tl.where(in_group, std, 0), axis=0))


@triton.jit
def mbstd_stat_kernel(
    partial_ptr, out_ptr, M, F, C, HW, num_tiles, inv_count,
    out_stride_n, out_stride_c, out_stride_p,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """out[n, C + f, :] = (sum of the partials of (n mod M, f)) * inv_count."""
    n = tl.program_id(0)
    f = tl.program_id(1)
    row = partial_ptr + ((n % M) * F + f) * num_tiles
    acc = tl.zeros([BLOCK_T], COMPUTE)
    for t0 in range(0, num_tiles, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        acc += tl.load(row + t, mask=t < num_tiles, other=0)
    stat = tl.sum(acc, axis=0) * inv_count
    base = out_ptr + n * out_stride_n + (C + f) * out_stride_c
    for p0 in range(0, HW, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        value = tl.zeros([BLOCK_P], COMPUTE) + stat
        tl.store(base + p * out_stride_p, value.to(out_ptr.dtype.element_ty), mask=p < HW)


@triton.jit
def mbstd_bwd_kernel(
    dout_ptr, x_ptr, gs_ptr, dx_ptr,
    G, F, Cf, HW, num_c_tiles, scale, x_stride_n, x_stride_c, x_stride_p, x_stride_g,
    dout_stride_n, dout_stride_c, dout_stride_p, dout_stride_g, eps,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, COMPUTE: tl.constexpr,
):
    """dx = dout[:, :C] + gs[m, f] * scale * (x - mean) / std; dx is laid out like x."""
    mf, m, channel, p, mask = _program_tile(F, Cf, HW, num_c_tiles, BLOCK_C, BLOCK_P)
    x_ptr += m * x_stride_n
    dx_ptr += m * x_stride_n
    dout_ptr += m * dout_stride_n
    x_off = channel[:, None] * x_stride_c + p[None, :] * x_stride_p
    dout_off = channel[:, None] * dout_stride_c + p[None, :] * dout_stride_p
    mean, var = _group_moments(x_ptr, x_off, x_stride_g, x_ptr, x_off, x_stride_g, mask, mask,
                               G, False, COMPUTE)
    coef = tl.load(gs_ptr + mf).to(COMPUTE) * scale / tl.sqrt(var + eps)
    for g in range(G):
        xg = tl.load(x_ptr + g * x_stride_g + x_off, mask=mask, other=0).to(COMPUTE)
        dg = tl.load(dout_ptr + g * dout_stride_g + dout_off, mask=mask, other=0)
        dx = dg.to(COMPUTE) + coef * (xg - mean)
        tl.store(dx_ptr + g * x_stride_g + x_off, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- host side


def member_strides(t: torch.Tensor, group_count: int) -> tuple[int, int, int, int]:
    """(stride_n, stride_c, stride_p, stride_g) of a 4-D NCHW- or channels_last-dense tensor.

    Group member g of group m is sample g * group_count + m; p indexes H x W.
    """
    return t.stride(0), t.stride(1), t.stride(3), group_count * t.stride(0)


def _max_tile(elem_bytes: int) -> int:
    return MAX_TILE // 2 if elem_bytes == 8 else MAX_TILE


def _num_warps(tile: int) -> int:
    return 4 if tile <= 1024 else 8


def _blocks(cf: int, hw: int, pixels_contiguous: bool, elem_bytes: int) -> tuple[int, int, int]:
    """BLOCK_C, BLOCK_P and num_warps: the contiguous dimension first, up to MAX_TILE."""
    max_tile = _max_tile(elem_bytes)
    if pixels_contiguous:
        block_p = min(next_power_of_2(hw), max_tile)
        block_c = max(1, min(next_power_of_2(cf), max_tile // block_p))
    else:
        block_c = min(next_power_of_2(cf), max_tile)
        block_p = max(1, min(next_power_of_2(hw), max_tile // block_c))
    return block_c, block_p, _num_warps(block_c * block_p)


def _row_block(sample_numel: int, elem_bytes: int) -> int:
    """mbstd_fwd_rows_kernel's BLOCK: one sample's output, up to MAX_TILE elements."""
    return min(next_power_of_2(sample_numel), _max_tile(elem_bytes))


def _geometry(x: torch.Tensor, group_size: int, num_channels: int):
    """Tile sizes and counts for x (N, C, H, W) split into groups and channel groups."""
    n, c, h, w = x.shape
    if n * (c + num_channels) * h * w >= 2**31:
        raise ValueError(f"minibatch_stddev kernels take outputs of fewer than 2^31 elements, "
                         f"got x of shape {tuple(x.shape)}")
    cf, hw = c // num_channels, h * w
    block_c, block_p, num_warps = _blocks(cf, hw, x.stride(3) == 1, x.element_size())
    num_c_tiles = cdiv(cf, block_c)
    return dict(group_count=n // group_size, cf=cf, hw=hw, block_c=block_c, block_p=block_p,
                num_warps=num_warps, num_c_tiles=num_c_tiles,
                num_tiles=num_c_tiles * cdiv(hw, block_p))


def minibatch_stddev_forward(x: torch.Tensor, out: torch.Tensor, *, group_size: int,
                             num_channels: int, eps: float) -> None:
    """Fills out (N, C + F, H, W), laid out like x, with x and the statistic channels.

    group_size is G (already min(group_size, N)) and must divide N; F must divide C.
    x and out are dense (NCHW or channels_last); out in pixel rows of C + F channels
    (channels_last, or 1 x 1 maps) is copied by mbstd_fwd_rows_kernel.
    """
    geo = _geometry(x, group_size, num_channels)
    m, n, c = geo["group_count"], x.shape[0], x.shape[1]
    rows = out.stride(1) == 1
    if rows:
        block = _row_block(out[0].numel(), x.element_size())
        num_tiles = cdiv(out[0].numel(), block)
    else:
        num_tiles = geo["num_tiles"]
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    partial = torch.empty((m * num_channels, num_tiles), device=x.device, dtype=stat_dtype)
    compute = compute_dtype(x.dtype)
    x_stride_n, *_, x_stride_g = member_strides(x, m)
    out_strides = member_strides(out, m)
    if rows:
        mbstd_fwd_rows_kernel[(num_tiles, m)](
            x, out, partial, group_size, out[0].numel(), x_stride_n, x_stride_g,
            out_strides[0], out_strides[3], float(eps), ROW=c + num_channels,
            F=num_channels, BLOCK=block, COMPUTE=compute, num_warps=_num_warps(block))
    else:
        mbstd_fwd_kernel[(num_tiles, m * num_channels)](
            x, out, partial, group_size, num_channels, geo["cf"], geo["hw"],
            geo["num_c_tiles"], *member_strides(x, m), *out_strides, float(eps),
            BLOCK_C=geo["block_c"], BLOCK_P=geo["block_p"], COMPUTE=compute,
            num_warps=geo["num_warps"],
        )
    mbstd_stat_kernel[(n, num_channels)](
        partial, out, m, num_channels, c, geo["hw"], num_tiles,
        1.0 / (geo["cf"] * geo["hw"]), *out_strides[:3],
        BLOCK_T=min(next_power_of_2(num_tiles), 1024),
        BLOCK_P=min(next_power_of_2(geo["hw"]), 1024), COMPUTE=compute,
    )


def minibatch_stddev_backward(dout: torch.Tensor, x: torch.Tensor, dx: torch.Tensor, *,
                              group_size: int, num_channels: int, eps: float) -> None:
    """Fills dx (laid out like x) from dout (N, C + F, H, W) and x."""
    geo = _geometry(x, group_size, num_channels)
    m = geo["group_count"]
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # gs[m, f]: the statistic channel's gradient summed over the G members and H x W.
    gs = dout[:, x.shape[1]:].to(stat_dtype).reshape(group_size, m, num_channels, -1).sum((0, 3))
    mbstd_bwd_kernel[(geo["num_tiles"], m * num_channels)](
        dout, x, gs.contiguous(), dx, group_size, num_channels, geo["cf"], geo["hw"],
        geo["num_c_tiles"], 1.0 / (group_size * geo["cf"] * geo["hw"]),
        *member_strides(x, m), *member_strides(dout, m), float(eps),
        BLOCK_C=geo["block_c"], BLOCK_P=geo["block_p"], COMPUTE=compute_dtype(x.dtype),
        num_warps=geo["num_warps"],
    )


# ------------------------------------------------------------------- ahead-of-time specs


def aot_specs() -> list[Spec]:
    """The four kernels at the tiles the launchers pick for ProGAN's 4x4 block and a
    32x32 map, in both layouts (the forward's copy by layout, as the launcher picks it)."""
    shapes = {"progan4x4": (512, 4 * 4, 16), "c512_32x32": (512, 32 * 32, 64)}  # C, HW, N
    specs = []
    for dtype, (compute, e) in STORAGE_DTYPES.items():
        for layout, unit in UNIT_STRIDES.items():
            for shape_name, (c, hw, n) in shapes.items():
                block_c, block_p, num_warps = _blocks(c, hw, layout == "nchw", e)
                variant = f"{layout}/{shape_name}"
                units = {f"{tensor}_{name}": 1 for name in unit for tensor in ("x", "out", "dout")}
                tiles = dict(BLOCK_C=block_c, BLOCK_P=block_p, COMPUTE=compute,
                             num_warps=num_warps, **units)
                m = n // 4  # G = 4
                typed = dict(stat_buffers=("partial_ptr", "gs_ptr"),
                             fp32_args=("eps", "scale", "inv_count"),
                             ints=dict(G=4, F=1, Cf=c, C=c, M=m, HW=hw, out_numel=(c + 1) * hw,
                                       **_strides("x", c, hw, m, layout),
                                       **_strides("out", c + 1, hw, m, layout),
                                       **_strides("dout", c + 1, hw, m, layout)))
                # x read and out[:, :C] written forward; dout, x read and dx written backward
                if layout == "nchw":
                    num_tiles = cdiv(c, block_c) * cdiv(hw, block_p)
                    specs.append(spec(mbstd_fwd_kernel, variant, dtype, tiles, **typed,
                                      bytes_moved=2 * n * c * hw * e))
                else:
                    block = _row_block((c + 1) * hw, e)
                    num_tiles = cdiv((c + 1) * hw, block)
                    rows = dict(ROW=c + 1, F=1, BLOCK=block, COMPUTE=compute,
                                num_warps=_num_warps(block))
                    specs.append(spec(mbstd_fwd_rows_kernel, variant, dtype, rows, **typed,
                                      bytes_moved=2 * n * c * hw * e))
                specs.append(spec(mbstd_bwd_kernel, variant, dtype, tiles, **typed,
                                  bytes_moved=3 * n * c * hw * e))
                stat = dict(BLOCK_T=next_power_of_2(num_tiles),
                            BLOCK_P=next_power_of_2(hw), COMPUTE=compute, num_warps=4,
                            **units)
                specs.append(spec(mbstd_stat_kernel, variant, dtype, stat, **typed,
                                  bytes_moved=n * hw * e))  # the statistic channel
    return specs


def _strides(tensor: str, channels: int, hw: int, m: int, layout: str) -> dict[str, int]:
    """A (N, channels, HW) tensor's strides as the launcher passes them, by name."""
    pixel, channel = (1, hw) if layout == "nchw" else (channels, 1)
    return {f"{tensor}_stride_n": channels * hw, f"{tensor}_stride_c": channel,
            f"{tensor}_stride_p": pixel, f"{tensor}_stride_g": m * channels * hw}
