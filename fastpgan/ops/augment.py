"""augment_bgc: ADA's geometric and colour transform of a batch (Karras et al. 2020,
"Training Generative Adversarial Networks with Limited Data"), as NVlabs'
``training/augment.py`` executes it, for given transforms.

Each image n has an inverse geometric transform ``g_inv[n]`` (3x3: output pixel ->
input pixel, in coordinates centred on the image) and a colour transform ``color[n]``
(4x4 on homogeneous RGB); :mod:`fastpgan.train.augment` draws them. The definition: the
image is reflect-padded by the margin the batch's transforms reach (zeros beyond it),
upsampled 2x with the sym6 wavelet's low-pass filter, sampled bilinearly at each output
point's transformed position, downsampled 2x with the same filter (so the resampling does
not alias) and its colours transformed (a grey image by the mean of the RGB rows). The
margin is computed on the device and applied as a mask over the largest padding (each
side's size - 1), so nothing waits for the device.

Fused path: the custom ops ``fastpgan::augment_bgc`` and ``fastpgan::augment_bgc_adjoint``
on the kernels of ``fastpgan.kernels.augment``: one pass samples through the padding and
the upsampling filter without storing either (7 x 7 image pixels a point), one filters
down and transforms the colours; the padded and the 4x larger upsampled images the
definition builds are never stored.

Double backward: the transform is affine in the images, L x + an offset (the colour
transform's; the transforms are constants: random draws, not differentiated), so its
backward is L's adjoint (the fused ``augment_bgc_adjoint``) and the adjoint's backward is
L, the transform with the offset dropped: both fused, to any order (R1 on augmented
reals, G's gradient through augmented fakes).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpgan.backend import OpInfo, OpSample, OpTests, kernel_module, register, use_fused
from fastpgan.ops.dispatch import FusedOp
from fastpgan.ops.layout import device_constant, memory_format, stat_dtype
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations

SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
        -0.048311742585633, 0.4910559419267466, 0.787641141030194, 0.3379294217276218,
        -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
        0.0017677118642428036, -0.007800708325034148)
"""The sym6 wavelet's low-pass filter (Daubechies' least asymmetric wavelet with six
vanishing moments), the taps NVlabs' augment pipeline resamples with."""
FILTER_REACH = 2 * (len(SYM6) // 4)
"""How far (in input pixels) the resampling filters reach past a sampled point: NVlabs'
``Hz_pad * 2``."""


def augment_bgc_reference(x: Tensor, g_inv: Tensor, color: Tensor) -> Tensor:
    """The definition of :func:`augment_bgc` in plain PyTorch (see the module
    docstring); arithmetic in float32 (float64 for float64), output in x's dtype."""
    _validate(x, g_inv, color)
    dtype = stat_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        y = _resample(x.to(dtype), g_inv.to(dtype))
        y = _recolor(y, color.to(dtype))
    return y.to(x.dtype)


def augment_bgc(x: Tensor, g_inv: Tensor, color: Tensor, *, backend: str | None = None
                ) -> Tensor:
    """Images x (N, 1 or 3, H, W) resampled by the inverse geometric transforms g_inv
    (N, 3, 3) and colour-transformed by color (N, 4, 4), as ADA's bgc pipeline does.

    Args:
        x: NCHW, channels_last or any strides; the output has x's dtype and memory format.
        g_inv: output pixel -> input pixel, in coordinates centred on the image.
        color: on homogeneous RGB (a grey image: the mean of its RGB rows).
        backend: "auto", "fused", "reference" or None for the process default.
    """
    _validate(x, g_inv, color)
    if not use_fused("augment_bgc", x, backend):
        return augment_bgc_reference(x, g_inv, color)
    return _augment_op(x, g_inv.detach(), color.detach())


def _validate(x: Tensor, g_inv: Tensor, color: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"augment: images must be (N, 1 or 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"augment: images must be floating-point, got {x.dtype}")
    n = x.shape[0]
    if g_inv.shape != (n, 3, 3) or color.shape != (n, 4, 4):
        raise ValueError(f"augment: transforms must be (N, 3, 3) and (N, 4, 4) for N = {n}, "
                         f"got {tuple(g_inv.shape)} and {tuple(color.shape)}")


# ---------------------------------------------------------------- the definition


def matrix(rows: list[list[Tensor | float]], like: Tensor) -> Tensor:
    """A batch of matrices (N, k, k) from rows of (N,) tensors and numbers (like's
    batch, dtype and device)."""
    n = like.shape[0]
    entries = [e.reshape(n) if isinstance(e, Tensor) else like.new_full((n,), float(e))
               for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(n, len(rows), len(rows[0]))


def translate(tx: Tensor, ty: Tensor) -> Tensor:
    """(N, 3, 3) translations by (tx, ty)."""
    return matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale(sx: Tensor, sy: Tensor) -> Tensor:
    """(N, 3, 3) scalings by (sx, sy)."""
    return matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def batch_margin(g_inv: Tensor, height: int, width: int) -> Tensor:
    """How far (left, top, right, bottom, in whole pixels, at most the image's size - 1)
    the batch's transforms reach outside the image, plus the filters' reach: NVlabs'
    padding, in float64 (the same whole numbers for every dtype of the images)."""
    g = g_inv.double()
    cx, cy = (width - 1) / 2, (height - 1) / 2
    reach = torch.stack([g[:, :2, 0] * x + g[:, :2, 1] * y + g[:, :2, 2]
                         for x, y in ((-cx, -cy), (cx, -cy), (cx, cy), (-cx, cy))], dim=2)
    extent = torch.cat([-reach, reach], dim=1).amax(dim=(0, 2))  # x0, y0, x1, y1
    limits = ((cx, width - 1), (cy, height - 1)) * 2
    return torch.stack([(extent[i] + FILTER_REACH - centre).clamp(0, top)
                        for i, (centre, top) in enumerate(limits)]).ceil()


def padded_spans(g_inv: Tensor, height: int, width: int) -> Tensor:
    """(8,) float64: the padded image's span [lo, hi) in x and in y (the image starts at
    size - 1 of the largest padding), then the upsampled image's (twice those)."""
    m = batch_margin(g_inv, height, width)
    pad_x, pad_y = width - 1, height - 1
    spans = torch.stack([pad_x - m[0], pad_x + width + m[2], pad_y - m[1], pad_y + height + m[3]])
    return torch.cat([spans, 2 * spans])


def sampling_matrix(g_inv: Tensor, height: int, width: int) -> Tensor:
    """(N, 3, 3): G_inv in grid_sample's [-1, 1] coordinates, from the sampled grid
    (2 (H + 6) x 2 (W + 6)) to the upsampled padded image (2 (3H - 2) x 2 (3W - 2))."""
    n = g_inv.shape[0]
    one = g_inv.new_ones(n)
    g = (translate(-0.5 * one, -0.5 * one) @ scale(2 * one, 2 * one) @ g_inv
         @ scale(0.5 * one, 0.5 * one) @ translate(0.5 * one, 0.5 * one))
    up_h, up_w = 2 * (3 * height - 2), 2 * (3 * width - 2)
    out_h, out_w = 2 * (height + FILTER_REACH), 2 * (width + FILTER_REACH)
    return scale(2 / up_w * one, 2 / up_h * one) @ g @ scale(out_w / 2 * one, out_h / 2 * one)


def _span(length: int, start: Tensor, stop: Tensor) -> Tensor:
    """(length,) bool mask of the indices in [start, stop)."""
    index = torch.arange(length, device=start.device, dtype=start.dtype)
    return (index >= start) & (index < stop)


def _resample(x: Tensor, g_inv: Tensor) -> Tensor:
    n, c, h, w = x.shape
    spans = padded_spans(g_inv, h, w)
    padded = F.pad(x, [w - 1, w - 1, h - 1, h - 1], mode="reflect")
    ph, pw = padded.shape[2:]
    inside = _span(ph, spans[2], spans[3])[:, None] & _span(pw, spans[0], spans[1])
    padded = torch.where(inside, padded, 0.0)  # zeros beyond the batch's own padding
    up = _upsample(padded)
    inside = _span(2 * ph, spans[6], spans[7])[:, None] & _span(2 * pw, spans[4], spans[5])
    up = torch.where(inside, up, 0.0)
    theta = sampling_matrix(g_inv, h, w)[:, :2, :]
    grid = F.affine_grid(theta, [n, c, 2 * (h + FILTER_REACH), 2 * (w + FILTER_REACH)],
                         align_corners=False)
    sampled = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return _downsample(sampled)


def _taps(x: Tensor, vertical: bool) -> Tensor:
    """The sym6 filter normalized to sum 1, as a depthwise kernel along one axis."""
    total = sum(SYM6)
    f = device_constant(tuple(t / total for t in SYM6), x.dtype, x.device)
    shape = (len(SYM6), 1) if vertical else (1, len(SYM6))
    return f.view(1, 1, *shape).expand(x.shape[1], 1, *shape)


def _upsample(x: Tensor) -> Tensor:
    """2x upsampling, as NVlabs' upfirdn2d (zeros inserted, the filter times 2 along each
    axis as a true convolution): U[u] = 2 sum_i x[i] F[u + 5 - 2i], u < 2L, one
    transposed stride-2 convolution an axis."""
    c = x.shape[1]
    for vertical in (True, False):
        stride = (2, 1) if vertical else (1, 2)
        x = 2 * F.conv_transpose2d(x, _taps(x, vertical), stride=stride, groups=c)
        x = x[:, :, 5:-5] if vertical else x[..., 5:-5]
    return x


def _downsample(x: Tensor) -> Tensor:
    """2x downsampling after NVlabs' crop of one pixel: D[y] = sum_t x[2y + 1 + t] F[t],
    one stride-2 convolution an axis."""
    c = x.shape[1]
    x = F.conv2d(x[:, :, 1:], _taps(x, True), stride=(2, 1), groups=c)
    return F.conv2d(x[..., 1:], _taps(x, False), stride=(1, 2), groups=c)


def color_rows(color: Tensor, channels: int) -> Tensor:
    """(N, C, C + 1): each output channel's weights of the input channels and its
    offset; for grey images, the mean of the RGB rows with its three weights summed."""
    if channels == 3:
        return color[:, :3, :]
    mean = color[:, :3, :].mean(dim=1, keepdim=True)
    return torch.cat([mean[:, :, :3].sum(dim=2, keepdim=True), mean[:, :, 3:]], dim=2)


def _recolor(x: Tensor, color: Tensor) -> Tensor:
    n, c, h, w = x.shape
    rows = color_rows(color, c)
    return (rows[:, :, :c] @ x.reshape(n, c, h * w) + rows[:, :, c:]).reshape(n, c, h, w)


# ---------------------------------------------------------------- fused path (custom ops)


def _launch_arguments(x: Tensor, g_inv: Tensor, color: Tensor) -> tuple[Tensor, ...]:
    """The kernels' arguments, computed on the device in the arithmetic type: each
    image's map from output points to upsampled pixel coordinates (N, 6), the spans
    (8,), the colour rows (N, C, C + 1) and the filter taps, normalized to sum 1."""
    n, c, h, w = x.shape
    dtype = stat_dtype(x)
    theta = sampling_matrix(g_inv.to(torch.float64), h, w)[:, :2, :]
    out_w, out_h = 2 * (w + FILTER_REACH), 2 * (h + FILTER_REACH)
    # grid [-1, 1] -> the upsampled image's pixel centres: half its width and height,
    # made once per device (a list copied from the host each call would break a graph)
    half = device_constant((3 * w - 2.0, 3 * h - 2.0), torch.float64, theta.device)[:, None]
    affine = torch.stack([theta[:, :, 0] * 2 / out_w, theta[:, :, 1] * 2 / out_h,
                          theta[:, :, 0] * (1 / out_w - 1) + theta[:, :, 1] * (1 / out_h - 1)
                          + theta[:, :, 2] + 1], dim=2) * half
    affine[:, :, 2] -= 0.5
    total = sum(SYM6)
    taps = device_constant(tuple(t / total for t in SYM6), dtype, x.device)
    return (affine.reshape(n, 6).to(dtype), padded_spans(g_inv, h, w).to(dtype),
            color_rows(color.to(dtype), c).contiguous(), taps)


def _augment_impl(x: Tensor, g_inv: Tensor, color: Tensor) -> Tensor:
    out = torch.empty_like(x, memory_format=memory_format(x))
    kernel_module("augment").bgc_forward(x, out, *_launch_arguments(x, g_inv, color))
    return out


def _augment_fake(x, g_inv, color):
    return torch.empty_like(x, memory_format=memory_format(x))


def _setup(ctx, inputs, output) -> None:
    _, g_inv, color = inputs
    ctx.save_for_backward(g_inv, color)


def _grad(ctx, grad_out: Tensor):
    g_inv, color = ctx.saved_tensors
    return _adjoint_op(grad_out, g_inv, color), None, None


def _adjoint_impl(grad: Tensor, g_inv: Tensor, color: Tensor) -> Tensor:
    dx = torch.zeros(grad.shape, dtype=stat_dtype(grad), device=grad.device)
    kernel_module("augment").bgc_adjoint(grad, dx, *_launch_arguments(grad, g_inv, color))
    return dx.to(grad.dtype).contiguous(memory_format=memory_format(grad))


def _adjoint_fake(grad, g_inv, color):
    return torch.empty_like(grad, memory_format=memory_format(grad))


def _adjoint_grad(ctx, grad_dx: Tensor):
    """The adjoint's backward: the transform's linear part (the colour offset dropped)."""
    g_inv, color = ctx.saved_tensors
    linear = color.clone()
    linear[:, :3, 3] = 0
    return _augment_op(grad_dx, g_inv, linear), None, None


_adjoint_op = FusedOp("augment_bgc_adjoint", _adjoint_impl, fake=_adjoint_fake,
                      setup_context=_setup, backward=_adjoint_grad)
_augment_op = FusedOp("augment_bgc", _augment_impl, fake=_augment_fake, setup_context=_setup,
                      backward=_grad)


def _sample(rng: random.Random) -> OpSample:
    n, c = rng.randint(1, 4), rng.choice([1, 3])
    h, w = rng.choice([2, 3, 4, 5, 8, 11]), rng.choice([2, 3, 4, 6, 7, 9])
    g_inv, color = _random_transforms(rng, n)
    return OpSample(lambda x, **b: augment_bgc(x, g_inv, color, **b),
                    lambda x: augment_bgc_reference(x, g_inv, color),
                    activations(rng, (n, c, h, w)), "spreads")


def _random_transforms(rng: random.Random, n: int) -> tuple[Tensor, Tensor]:
    """Transforms of the kinds ADA draws: a flip, a rotation, an anisotropic scaling and
    a translation (or the identity), and a colour matrix near the identity."""
    generator = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    if rng.random() < 0.2:
        return torch.eye(3).expand(n, 3, 3).clone(), torch.eye(4).expand(n, 4, 4).clone()
    theta = torch.rand(n, generator=generator) * 6.3
    s = torch.exp2(torch.randn(n, 2, generator=generator) * 0.3)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    t = torch.randn(n, 2, generator=generator) * 1.5
    rotation = matrix([[torch.cos(theta), -torch.sin(theta), 0],
                       [torch.sin(theta), torch.cos(theta), 0], [0, 0, 1]], theta)
    g_inv = translate(t[:, 0], t[:, 1]) @ rotation @ scale(s[:, 0] * flip, s[:, 1])
    color = torch.eye(4) + 0.3 * torch.randn(n, 4, 4, generator=generator)
    color[:, 3] = torch.tensor([0.0, 0, 0, 1])
    return g_inv, color


register(OpInfo(
    "augment_bgc", augment_bgc, augment_bgc_reference, "triton", kernels="augment",
    library_ops=("fastpgan::augment_bgc", "fastpgan::augment_bgc_adjoint"),
    double_backward="linear: the backward is the fused adjoint, whose backward is the "
                    "fused transform",
    tests=OpTests(_sample, lambda f: f(NOT_AN_ACTIVATION, torch.eye(3)[None], torch.eye(4)[None]),
                  r"augment: images must be \(N, 1 or 3, H, W\)", ("tests/test_augment.py",),
                  None)))
