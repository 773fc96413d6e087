"""ADA's bgc augmentation (Karras et al. 2020, NVlabs' ``training/augment.py``): the
geometric resampling and the colour transform of a batch, forward and adjoint.

The definition (``fastpgan.ops.augment``) pads the image by reflection, upsamples it 2x
with the sym6 filter, samples it bilinearly at each output point's transformed position,
downsamples 2x with the same filter and transforms the colours. Two passes do it here.

``bgc_sample_kernel`` computes the sampled, still upsampled image S (N, C, 2(H+6),
2(W+6)) without storing the padded or the upsampled image: along each axis an output
point's two bilinear taps at upsampled positions u and u+1 read, through the polyphase
upsampling filter, 6 or 7 padded pixels i, each with the weight w_i = (1 - f) F[u + 5 -
2i] + f F[u + 6 - 2i] (F the filter times its gain 2, zero outside its 12 taps; a tap
outside the upsampled image's valid span counts zero). The two axes' weights multiply, so
a point reads a 7 x 7 neighbourhood of padded pixels, each reflected back into the image
(zero beyond the padding the batch's transforms need). The x axis is a (BLOCK, 8) tile,
the y axis a loop of 7.

``bgc_downsample_color_kernel`` filters S with the 12 x 12 separable filter at stride 2
(D[y] = sum_a F[a] S[2y + 1 + a] per axis) for every channel of a pixel, then applies
the image's colour matrix: out_c = sum_k M[c, k] D_k + M[c, C] (for grey images the
mean of NVlabs' RGB rows, C = 1).

The adjoint, for the backward: ``bgc_downsample_color_adjoint_kernel`` gathers, for each
point of S, the colour-transposed gradient through the stride-2 filter (6 x 6 taps);
``bgc_sample_adjoint_kernel`` scatters each point's gradient to its 7 x 7 padded pixels,
folded back by the reflection, with atomic adds (a point's footprint overlaps its
neighbours', and the reflection sends several padded pixels to one image pixel).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import STORAGE_DTYPES, Spec, cdiv, compute_dtype, spec

TAPS = 12
"""The sym6 filter's length."""
BLOCK = 128
"""Points a program computes."""


@triton.jit
def _reflect(i, size):
    """Padded index i (the image starts at size - 1) to the image's own, reflected once."""
    t = tl.abs(i - (size - 1))
    return tl.where(t > size - 1, 2 * (size - 1) - t, t)


@triton.jit
def _axis_tile(coord, u_lo, u_hi, p_lo, p_hi, size, filter_ptr, COMPUTE: tl.constexpr):
    """For upsampled coordinates (BLOCK,), the (BLOCK, 8) weights of the padded pixels a
    bilinear sample reads along one axis and their reflected image indices (column 7 and
    pixels outside the padding weigh 0)."""
    base = tl.floor(coord)
    frac = coord - base
    u0 = base.to(tl.int32)
    first = tl.floor((base - 5.0) * 0.5).to(tl.int32)
    k = tl.arange(0, 8)[None, :]
    i = first[:, None] + k
    t0 = u0[:, None] + 5 - 2 * i
    ok0 = (u0 >= u_lo) & (u0 < u_hi)
    ok1 = (u0 + 1 >= u_lo) & (u0 + 1 < u_hi)
    f0 = tl.load(filter_ptr + t0, mask=(t0 >= 0) & (t0 < 12) & ok0[:, None], other=0.0)
    f1 = tl.load(filter_ptr + t0 + 1, mask=(t0 + 1 >= 0) & (t0 + 1 < 12) & ok1[:, None],
                 other=0.0)
    weight = 2.0 * ((1.0 - frac)[:, None] * f0.to(COMPUTE) + frac[:, None] * f1.to(COMPUTE))
    inside = (i >= p_lo) & (i < p_hi) & (k < 7)
    return tl.where(inside, weight, 0.0), _reflect(i, size), inside


@triton.jit
def _axis_point(coord, j, u_lo, u_hi, p_lo, p_hi, size, filter_ptr, COMPUTE: tl.constexpr):
    """The same for the j-th padded pixel only (0 <= j < 7): (BLOCK,) weights, indices
    and whether it is inside the padding."""
    base = tl.floor(coord)
    frac = coord - base
    u0 = base.to(tl.int32)
    i = tl.floor((base - 5.0) * 0.5).to(tl.int32) + j
    t0 = u0 + 5 - 2 * i
    ok0 = (u0 >= u_lo) & (u0 < u_hi)
    ok1 = (u0 + 1 >= u_lo) & (u0 + 1 < u_hi)
    f0 = tl.load(filter_ptr + t0, mask=(t0 >= 0) & (t0 < 12) & ok0, other=0.0)
    f1 = tl.load(filter_ptr + t0 + 1, mask=(t0 + 1 >= 0) & (t0 + 1 < 12) & ok1, other=0.0)
    weight = 2.0 * ((1.0 - frac) * f0.to(COMPUTE) + frac * f1.to(COMPUTE))
    inside = (i >= p_lo) & (i < p_hi)
    return tl.where(inside, weight, 0.0), _reflect(i, size), inside


@triton.jit
def _sample_geometry(affine_ptr, n, o, SW, COMPUTE: tl.constexpr):
    """Upsampled coordinates (ux, uy) of output points o of image n."""
    oy = (o // SW).to(COMPUTE)
    ox = (o % SW).to(COMPUTE)
    a = affine_ptr + n * 6
    ux = (tl.load(a).to(COMPUTE) * ox + tl.load(a + 1).to(COMPUTE) * oy
          + tl.load(a + 2).to(COMPUTE))
    uy = (tl.load(a + 3).to(COMPUTE) * ox + tl.load(a + 4).to(COMPUTE) * oy
          + tl.load(a + 5).to(COMPUTE))
    return ux, uy


@triton.jit
def _limits(limits_ptr):
    """The padded image's span (x, then y) and the upsampled image's, as int32: whole
    numbers kept in the arithmetic type (the launcher computes them on the device)."""
    return (tl.load(limits_ptr).to(tl.int32), tl.load(limits_ptr + 1).to(tl.int32),
            tl.load(limits_ptr + 2).to(tl.int32), tl.load(limits_ptr + 3).to(tl.int32),
            tl.load(limits_ptr + 4).to(tl.int32), tl.load(limits_ptr + 5).to(tl.int32),
            tl.load(limits_ptr + 6).to(tl.int32), tl.load(limits_ptr + 7).to(tl.int32))


@triton.jit
def bgc_sample_kernel(x_ptr, s_ptr, affine_ptr, limits_ptr, filter_ptr, C, H, W, SH, SW,
                      x_stride_n, x_stride_c, x_stride_h, x_stride_w,
                      BLOCK: tl.constexpr, COMPUTE: tl.constexpr):
    """S[n, c] at BLOCK output points: 7 x 7 padded pixels each (see the module)."""
    nc = tl.program_id(0)
    n = nc // C
    c = nc % C
    o = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = o < SH * SW
    ux, uy = _sample_geometry(affine_ptr, n, o, SW, COMPUTE)
    px_lo, px_hi, py_lo, py_hi, ux_lo, ux_hi, uy_lo, uy_hi = _limits(limits_ptr)
    wx, col, in_x = _axis_tile(ux, ux_lo, ux_hi, px_lo, px_hi, W, filter_ptr, COMPUTE)
    image = x_ptr + n * x_stride_n + c * x_stride_c
    acc = tl.zeros((BLOCK,), dtype=COMPUTE)
    for j in tl.static_range(7):
        wy, row, in_y = _axis_point(uy, j, uy_lo, uy_hi, py_lo, py_hi, H, filter_ptr, COMPUTE)
        read = live[:, None] & in_x & in_y[:, None]
        values = tl.load(image + row[:, None] * x_stride_h + col * x_stride_w, mask=read,
                         other=0.0).to(COMPUTE)
        acc += wy * tl.sum(wx * values, axis=1)
    tl.store(s_ptr + nc * SH * SW + o, acc, mask=live)


@triton.jit
def bgc_sample_adjoint_kernel(ds_ptr, dx_ptr, affine_ptr, limits_ptr, filter_ptr, C, H, W,
                              SH, SW, BLOCK: tl.constexpr, COMPUTE: tl.constexpr):
    """The adjoint of :func:`bgc_sample_kernel`: each point's gradient added into its
    7 x 7 padded pixels' image pixels of dx (N, C, H, W), atomically."""
    nc = tl.program_id(0)
    n = nc // C
    o = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = o < SH * SW
    ux, uy = _sample_geometry(affine_ptr, n, o, SW, COMPUTE)
    px_lo, px_hi, py_lo, py_hi, ux_lo, ux_hi, uy_lo, uy_hi = _limits(limits_ptr)
    grad = tl.load(ds_ptr + nc * SH * SW + o, mask=live, other=0.0).to(COMPUTE)
    wx, col, in_x = _axis_tile(ux, ux_lo, ux_hi, px_lo, px_hi, W, filter_ptr, COMPUTE)
    image = dx_ptr + nc * H * W
    for j in tl.static_range(7):
        wy, row, in_y = _axis_point(uy, j, uy_lo, uy_hi, py_lo, py_hi, H, filter_ptr, COMPUTE)
        write = live[:, None] & in_x & in_y[:, None]
        tl.atomic_add(image + row[:, None] * W + col, (grad * wy)[:, None] * wx, mask=write)


@triton.jit
def _image_points(color_ptr, rows, width, C: tl.constexpr, BLOCK: tl.constexpr):
    """Program axis 0 is the image n, axis 1 a block of its ``rows`` x ``width`` points:
    n, their row and column, which are live, and n's colour rows (C x C + 1)."""
    n = tl.program_id(0)
    point = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    return n, point // width, point % width, point < rows * width, color_ptr + n * C * (C + 1)


@triton.jit
def _downsample(s_ptr, plane, y, x, live, SW, filter_ptr, COMPUTE: tl.constexpr):
    """D at pixels (y, x) of one plane of S: sum over a, b < 12 of F[a] F[b]
    S[2y + 1 + a, 2x + 1 + b]."""
    b = tl.arange(0, 16)[None, :]
    fb = tl.load(filter_ptr + b, mask=b < 12, other=0.0).to(COMPUTE)
    columns = 2 * x[:, None] + 1 + b
    acc = tl.zeros(y.shape, dtype=COMPUTE)
    for a in range(12):  # a loop, not unrolled: twelve (BLOCK, 16) tiles live would spill
        values = tl.load(s_ptr + plane + (2 * y[:, None] + 1 + a) * SW + columns,
                         mask=live[:, None] & (b < 12), other=0.0)
        acc += tl.load(filter_ptr + a).to(COMPUTE) * tl.sum(fb * values, axis=1)
    return acc


@triton.jit
def bgc_downsample_color_kernel(s_ptr, out_ptr, color_ptr, filter_ptr, H, W, SH, SW,
                                out_stride_n, out_stride_c, out_stride_h, out_stride_w,
                                C: tl.constexpr, BLOCK: tl.constexpr, COMPUTE: tl.constexpr):
    """out[n] at BLOCK pixels: S downsampled, then the colour matrix (see the module)."""
    n, y, x, live, matrix = _image_points(color_ptr, H, W, C, BLOCK)
    target = out_ptr + n * out_stride_n + y * out_stride_h + x * out_stride_w
    d0 = _downsample(s_ptr, (n * C) * SH * SW, y, x, live, SW, filter_ptr, COMPUTE)
    if C == 1:
        value = tl.load(matrix).to(COMPUTE) * d0 + tl.load(matrix + 1).to(COMPUTE)
        tl.store(target, value.to(out_ptr.dtype.element_ty), mask=live)
    else:
        d1 = _downsample(s_ptr, (n * C + 1) * SH * SW, y, x, live, SW, filter_ptr, COMPUTE)
        d2 = _downsample(s_ptr, (n * C + 2) * SH * SW, y, x, live, SW, filter_ptr, COMPUTE)
        for c in tl.static_range(3):
            row = matrix + c * 4
            value = (tl.load(row).to(COMPUTE) * d0 + tl.load(row + 1).to(COMPUTE) * d1
                     + tl.load(row + 2).to(COMPUTE) * d2 + tl.load(row + 3).to(COMPUTE))
            tl.store(target + c * out_stride_c, value.to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _downsample_adjoint(g_ptr, g_base, sy, sx, live, H, W, g_stride_h, g_stride_w,
                        filter_ptr, COMPUTE: tl.constexpr):
    """The adjoint of :func:`_downsample` at points (sy, sx) of S, for one channel of the
    gradient: sum over the pixels (y, x) whose taps reach it, F[a] F[b] g[y, x]."""
    k = tl.arange(0, 8)[None, :]
    x_top = tl.floor((sx.to(tl.float32) - 1.0) * 0.5).to(tl.int32)
    x = x_top[:, None] - k
    b = sx[:, None] - 1 - 2 * x
    fb = tl.load(filter_ptr + b, mask=(b >= 0) & (b < 12) & (k < 6), other=0.0).to(COMPUTE)
    x_ok = (x >= 0) & (x < W) & (k < 6)
    y_top = tl.floor((sy.to(tl.float32) - 1.0) * 0.5).to(tl.int32)
    acc = tl.zeros(sy.shape, dtype=COMPUTE)
    for j in range(6):
        y = y_top - j
        a = sy - 1 - 2 * y
        fa = tl.load(filter_ptr + a, mask=(a >= 0) & (a < 12) & live, other=0.0).to(COMPUTE)
        read = live[:, None] & x_ok & ((y >= 0) & (y < H))[:, None]
        values = tl.load(g_ptr + g_base + y[:, None] * g_stride_h + x * g_stride_w, mask=read,
                         other=0.0).to(COMPUTE)
        acc += fa * tl.sum(fb * values, axis=1)
    return acc


@triton.jit
def bgc_downsample_color_adjoint_kernel(g_ptr, ds_ptr, color_ptr, filter_ptr, H, W, SH, SW,
                                        g_stride_n, g_stride_c, g_stride_h, g_stride_w,
                                        C: tl.constexpr, BLOCK: tl.constexpr,
                                        COMPUTE: tl.constexpr):
    """dS[n] at BLOCK points of S: the gradient's channels mixed by the colour matrix's
    transpose, through the adjoint of the stride-2 filter."""
    n, sy, sx, live, matrix = _image_points(color_ptr, SH, SW, C, BLOCK)
    o = sy * SW + sx
    base = n * g_stride_n
    u0 = _downsample_adjoint(g_ptr, base, sy, sx, live, H, W, g_stride_h, g_stride_w,
                             filter_ptr, COMPUTE)
    if C == 1:
        tl.store(ds_ptr + n * SH * SW + o, tl.load(matrix).to(COMPUTE) * u0, mask=live)
    else:
        u1 = _downsample_adjoint(g_ptr, base + g_stride_c, sy, sx, live, H, W, g_stride_h,
                                 g_stride_w, filter_ptr, COMPUTE)
        u2 = _downsample_adjoint(g_ptr, base + 2 * g_stride_c, sy, sx, live, H, W, g_stride_h,
                                 g_stride_w, filter_ptr, COMPUTE)
        for k in tl.static_range(3):
            value = (tl.load(matrix + k).to(COMPUTE) * u0
                     + tl.load(matrix + 4 + k).to(COMPUTE) * u1
                     + tl.load(matrix + 8 + k).to(COMPUTE) * u2)
            tl.store(ds_ptr + (n * C + k) * SH * SW + o, value, mask=live)


# ------------------------------------------------------------------- launchers


def sampled_shape(x: torch.Tensor) -> tuple[int, int, int, int]:
    """S's shape for images x: (N, C, 2 (H + 6), 2 (W + 6))."""
    n, c, h, w = x.shape
    return n, c, 2 * (h + 6), 2 * (w + 6)


def bgc_forward(x: torch.Tensor, out: torch.Tensor, affine: torch.Tensor,
                limits: torch.Tensor, color: torch.Tensor, taps: torch.Tensor) -> None:
    """out = the bgc transform of x (any strides; out dense, x's dtype): ``affine`` (N, 6)
    maps output points to upsampled coordinates, ``limits`` (8,) the padded and upsampled
    spans (whole numbers in the arithmetic type), ``color`` (N, C, C + 1) the colour
    matrices, ``taps`` the filter."""
    n, c, h, w = x.shape
    _, _, sh, sw = sampled_shape(x)
    compute = compute_dtype(x.dtype)
    sampled = torch.empty((n, c, sh, sw), dtype=taps.dtype, device=x.device)
    bgc_sample_kernel[(n * c, cdiv(sh * sw, BLOCK))](
        x, sampled, affine, limits, taps, c, h, w, sh, sw, *x.stride(),
        BLOCK=BLOCK, COMPUTE=compute)
    bgc_downsample_color_kernel[(n, cdiv(h * w, BLOCK))](
        sampled, out, color, taps, h, w, sh, sw, *out.stride(),
        C=c, BLOCK=BLOCK, COMPUTE=compute)


def bgc_adjoint(grad: torch.Tensor, dx: torch.Tensor, affine: torch.Tensor,
                limits: torch.Tensor, color: torch.Tensor, taps: torch.Tensor) -> None:
    """dx (zeros, dense NCHW, the arithmetic type) += the adjoint of the bgc transform
    applied to ``grad`` (any strides); the other arguments as :func:`bgc_forward`'s."""
    n, c, h, w = grad.shape
    _, _, sh, sw = sampled_shape(grad)
    compute = compute_dtype(grad.dtype)
    sampled = torch.empty((n, c, sh, sw), dtype=taps.dtype, device=grad.device)
    bgc_downsample_color_adjoint_kernel[(n, cdiv(sh * sw, BLOCK))](
        grad, sampled, color, taps, h, w, sh, sw, *grad.stride(),
        C=c, BLOCK=BLOCK, COMPUTE=compute)
    bgc_sample_adjoint_kernel[(n * c, cdiv(sh * sw, BLOCK))](
        sampled, dx, affine, limits, taps, c, h, w, sh, sw, BLOCK=BLOCK, COMPUTE=compute)


# ------------------------------------------------------------------- ahead-of-time specs


def aot_specs() -> list[Spec]:
    """The four kernels for RGB at 256x256, batch 32, NCHW (the sampling's strides as the
    launcher passes them)."""
    n, c, h, w = 32, 3, 256, 256
    sh, sw = 2 * (h + 6), 2 * (w + 6)
    ints = dict(C=c, H=h, W=w, SH=sh, SW=sw, x_stride_n=c * h * w, x_stride_c=h * w,
                x_stride_h=w, out_stride_n=c * h * w, out_stride_c=h * w, out_stride_h=w,
                g_stride_n=c * h * w, g_stride_c=h * w, g_stride_h=w)
    stat = ("s_ptr", "ds_ptr", "dx_ptr", "affine_ptr", "limits_ptr", "filter_ptr",
            "color_ptr")
    specs = []
    for dtype, (compute, e) in STORAGE_DTYPES.items():
        s_bytes = 8 if dtype == "fp64" else 4
        common = dict(BLOCK=BLOCK, COMPUTE=compute, num_warps=4)
        unit = dict(x_stride_w=1, out_stride_w=1, g_stride_w=1)
        typed = dict(stat_buffers=stat, ints=ints)
        sampled = n * c * sh * sw * s_bytes
        image = n * c * h * w * e
        specs += [
            spec(bgc_sample_kernel, "rgb/256", dtype, {**common, **unit}, **typed,
                 bytes_moved=image + sampled),
            spec(bgc_downsample_color_kernel, "rgb/256", dtype, {**common, **unit, "C": c},
                 **typed, bytes_moved=sampled + image),
            spec(bgc_downsample_color_adjoint_kernel, "rgb/256", dtype,
                 {**common, **unit, "C": c}, **typed, bytes_moved=image + sampled),
            spec(bgc_sample_adjoint_kernel, "rgb/256", dtype, common, **typed,
                 bytes_moved=sampled + n * c * h * w * s_bytes)]
    return specs
