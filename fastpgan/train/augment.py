"""Augmenting every image the discriminator sees: ADA's "bgc" pipeline and DiffAugment.

ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data")
transforms each image the discriminator sees, reals and fakes in every phase, so that it
cannot memorize a small data set, while the generator still learns the untransformed
distribution (each transform is invertible in distribution when applied with probability
p < 0.8). The "bgc" pipeline has eight geometric transforms (x-flip, 90-degree rotations,
integer translation, isotropic scaling, arbitrary rotation before and after anisotropic
scaling, fractional translation) and five colour ones (brightness, contrast, luma flip,
hue, saturation), each applied with probability p. :class:`AdaptiveAugment` adapts p
towards r_t = E[sign(D(real))] = target (0.6), every ``interval`` minibatches by
sign(r_t - target) * images / (``kimg`` * 1000), so p can go from 0 to 1 in 500k images.

The definition. :func:`draw_bgc` draws each image's inverse geometric transform
``G_inv`` (3x3: output pixel -> input pixel, in coordinates centred on the image) and
colour transform ``C`` (4x4 on homogeneous RGB) with the distributions and in the order of
random draws of NVlabs' ``training/augment.py``, so that the same random numbers give the
same transforms. :func:`apply_bgc_reference` applies them as that code does: the image is
reflect-padded by the margin the batch's transforms reach (zeros beyond it), upsampled 2x
with the sym6 wavelet's low-pass filter, sampled bilinearly, downsampled 2x with the same
filter (so the resampling does not alias) and its colours transformed. The margin is
computed on the device and applied as a mask over the largest padding, and the constants
are made once per device, so nothing waits for the device or copies from the host, and a
step with it can be replayed as a CUDA graph. It is linear in the
images, so it is differentiable to any order through ATen operations (grid_sample is
twice differentiable in its input, which NVlabs' ``grid_sample_gradfix`` once worked
around).

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): random brightness, saturation and contrast, translation by up to 1/8 of the
image with zero fill, and a cutout of half the image's side, on every image, no p.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from fastpgan.ops.fir import upfirdn2d_reference
from fastpgan.ops.layout import device_constant

SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
        -0.048311742585633, 0.4910559419267466, 0.787641141030194, 0.3379294217276218,
        -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
        0.0017677118642428036, -0.007800708325034148)
"""The sym6 wavelet's low-pass filter (Daubechies' least asymmetric wavelet with six
vanishing moments), the taps NVlabs' augment pipeline resamples with."""
FILTER_REACH = 2 * (len(SYM6) // 4)
"""How far (in input pixels) the resampling filters reach past a sampled point: NVlabs'
``Hz_pad * 2``."""

AUGMENTATIONS = ("none", "ada", "fixed", "diffaug")
"""--aug: none, ADA with adaptive p, ADA's pipeline at a fixed p, DiffAugment."""
ADA_TARGET = 0.6
"""The paper's target for r_t = E[sign(D(real))]."""


# --------------------------------------------------------------------------- matrices

def _matrix(rows: list[list[Tensor | float]], like: Tensor) -> Tensor:
    """A batch of matrices (N, k, k) from rows of (N,) tensors and numbers."""
    n = like.shape[0]
    entries = [e.reshape(n) if isinstance(e, Tensor) else like.new_full((n,), float(e))
               for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(n, len(rows), len(rows[0]))


def _translate(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


LUMA_AXIS = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3), 0.0)
"""The grey axis of homogeneous RGB, which luma flip reflects across and hue rotates
about."""


def _rotate_about_luma(theta: Tensor) -> Tensor:
    """Rodrigues' rotation by theta about the luma axis, (N, 4, 4)."""
    v = LUMA_AXIS
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix([[v[0] * v[0] * cc + c, v[0] * v[1] * cc - v[2] * s,
                     v[0] * v[2] * cc + v[1] * s, 0],
                    [v[1] * v[0] * cc + v[2] * s, v[1] * v[1] * cc + c,
                     v[1] * v[2] * cc - v[0] * s, 0],
                    [v[2] * v[0] * cc - v[1] * s, v[2] * v[1] * cc + v[0] * s,
                     v[2] * v[2] * cc + c, 0],
                    [0, 0, 0, 1]], theta)


# --------------------------------------------------------------------------- draws

@dataclass(frozen=True)
class Draws:
    """Random numbers for n images on a device, from ``generator`` (None: the global
    RNG, as NVlabs' pipeline draws), and the probability p (a float or a 0-d tensor on
    the device, so it can change without a new graph)."""

    n: int
    p: Tensor | float
    device: torch.device
    generator: torch.Generator | None = None

    def uniform(self, *shape: int) -> Tensor:
        """U[0, 1) of shape (n, *shape)."""
        return torch.rand(self.n, *shape, device=self.device, generator=self.generator)

    def normal(self, *shape: int) -> Tensor:
        """N(0, 1) of shape (n, *shape)."""
        return torch.randn(self.n, *shape, device=self.device, generator=self.generator)

    def chosen(self, value: Tensor, otherwise: float, probability: Tensor | float | None = None,
               *shape: int) -> Tensor:
        """``value`` where a fresh uniform draw (shape (n, *shape)) is below the
        probability (p unless given), else ``otherwise``."""
        probability = self.p if probability is None else probability
        return torch.where(self.uniform(*shape) < probability, value,
                           torch.full_like(value, otherwise))


# Each geometric transform returns the inverse of its matrix, multiplied on the right of
# G_inv; each colour transform its matrix, multiplied on the left of C. The order of the
# draws in each is NVlabs': the value, then whether it applies.

def _xflip(d: Draws, width: int, height: int) -> Tensor:
    i = d.chosen(torch.floor(d.uniform() * 2), 0.0)
    return _scale(1 - 2 * i, torch.ones_like(i))


def _rotate90(d: Draws, width: int, height: int) -> Tensor:
    i = d.chosen(torch.floor(d.uniform() * 4), 0.0)
    return _rotate(math.pi / 2 * i)


def _integer_translation(d: Draws, width: int, height: int) -> Tensor:
    t = d.chosen((d.uniform(2) * 2 - 1) * 0.125, 0.0, None, 1)
    return _translate(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height))


def _isotropic_scaling(d: Draws, width: int, height: int) -> Tensor:
    s = d.chosen(torch.exp2(d.normal() * 0.2), 1.0)
    return _scale(1 / s, 1 / s)


def _rotation(d: Draws, width: int, height: int) -> Tensor:
    """Arbitrary rotation, drawn twice (before and after anisotropic scaling), each time
    with the probability that makes P(either) = p."""
    p_rotate = 1 - torch.sqrt(torch.clamp(1 - torch.as_tensor(d.p), 0, 1))
    theta = d.chosen((d.uniform() * 2 - 1) * math.pi, 0.0, p_rotate)
    return _rotate(theta)


def _anisotropic_scaling(d: Draws, width: int, height: int) -> Tensor:
    s = d.chosen(torch.exp2(d.normal() * 0.2), 1.0)
    return _scale(1 / s, s)


def _fractional_translation(d: Draws, width: int, height: int) -> Tensor:
    t = d.chosen(d.normal(2) * 0.125, 0.0, None, 1)
    return _translate(-t[:, 0] * width, -t[:, 1] * height)


def _brightness(d: Draws) -> Tensor:
    b = d.chosen(d.normal() * 0.2, 0.0)
    return _matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)


def _contrast(d: Draws) -> Tensor:
    c = d.chosen(torch.exp2(d.normal() * 0.5), 1.0)
    return _matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)


def _luma_projection(device: torch.device) -> Tensor:
    v = device_constant(LUMA_AXIS, torch.float32, device)
    return torch.outer(v, v)


def _luma_flip(d: Draws) -> Tensor:
    i = d.chosen(torch.floor(d.uniform(1, 1) * 2), 0.0, None, 1, 1)
    return torch.eye(4, device=d.device) - 2 * _luma_projection(d.device) * i  # Householder


def _hue(d: Draws) -> Tensor:
    theta = d.chosen((d.uniform() * 2 - 1) * math.pi, 0.0)
    return _rotate_about_luma(theta)


def _saturation(d: Draws) -> Tensor:
    s = d.chosen(torch.exp2(d.normal(1, 1)), 1.0, None, 1, 1)
    vv = _luma_projection(d.device)
    return vv + (torch.eye(4, device=d.device) - vv) * s


GEOMETRIC: tuple[Callable[[Draws, int, int], Tensor], ...] = (
    _xflip, _rotate90, _integer_translation, _isotropic_scaling, _rotation,
    _anisotropic_scaling, _rotation, _fractional_translation)
"""bgc's geometric transforms, in NVlabs' order ("b": the first three; "g": the rest)."""
COLOR: tuple[Callable[[Draws], Tensor], ...] = (_brightness, _contrast, _luma_flip)
"""bgc's colour transforms for any image, in NVlabs' order."""
COLOR_RGB: tuple[Callable[[Draws], Tensor], ...] = (_hue, _saturation)
"""bgc's colour transforms of colour images only, after :data:`COLOR`."""


def draw_bgc(n: int, channels: int, height: int, width: int, p: Tensor | float,
             device: torch.device | str, generator: torch.Generator | None = None
             ) -> tuple[Tensor, Tensor]:
    """Each image's inverse geometric transform G_inv (n, 3, 3) and colour transform C
    (n, 4, 4), float32, every transform applied with probability p."""
    d = Draws(n, p, torch.device(device), generator)
    g_inv = torch.eye(3, device=d.device).expand(n, 3, 3)
    for transform in GEOMETRIC:
        g_inv = g_inv @ transform(d, width, height)
    color = torch.eye(4, device=d.device).expand(n, 4, 4)
    for transform in COLOR + (COLOR_RGB if channels > 1 else ()):
        color = transform(d) @ color
    return g_inv, color


# --------------------------------------------------------------------------- application

def apply_bgc_reference(images: Tensor, g_inv: Tensor, color: Tensor) -> Tensor:
    """``images`` (N, C, H, W), C 1 or 3, resampled by G_inv and then colour-transformed
    by C, as NVlabs' pipeline does (see the module docstring); arithmetic in float32
    (float64 for float64), output in the images' dtype."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"augment: images must be (N, 1 or 3, H, W), got "
                         f"{tuple(images.shape)}")
    n = images.shape[0]
    if g_inv.shape != (n, 3, 3) or color.shape != (n, 4, 4):
        raise ValueError(f"augment: transforms must be (N, 3, 3) and (N, 4, 4) for N = {n}, "
                         f"got {tuple(g_inv.shape)} and {tuple(color.shape)}")
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    with torch.autocast(images.device.type, enabled=False):
        x = images.to(dtype)
        x = _resample(x, g_inv.to(dtype))
        x = _recolor(x, color.to(dtype))
    return x.to(images.dtype)


def batch_margin(g_inv: Tensor, height: int, width: int) -> Tensor:
    """How far (left, top, right, bottom, in whole pixels, at most the image's size - 1)
    the batch's transforms reach outside the image, plus the filters' reach: NVlabs'
    padding, as a float tensor on the device."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    reach = torch.stack([g_inv[:, :2, 0] * x + g_inv[:, :2, 1] * y + g_inv[:, :2, 2]
                         for x, y in ((-cx, -cy), (cx, -cy), (cx, cy), (-cx, cy))], dim=2)
    extent = torch.cat([-reach, reach], dim=1).amax(dim=(0, 2))  # x0, y0, x1, y1
    limits = ((cx, width - 1), (cy, height - 1)) * 2
    return torch.stack([(extent[i] + FILTER_REACH - centre).clamp(0, top)
                        for i, (centre, top) in enumerate(limits)]).ceil()


def _span(length: int, start: Tensor, stop: Tensor) -> Tensor:
    """(length,) mask of the indices in [start, stop)."""
    index = torch.arange(length, device=start.device, dtype=start.dtype)
    return ((index >= start) & (index < stop)).to(start.dtype)


def _resample(x: Tensor, g_inv: Tensor) -> Tensor:
    n, c, h, w = x.shape
    margin = batch_margin(g_inv, h, w)
    # the largest padding NVlabs' can be, and a mask for the batch's own (zeros beyond)
    pad_x, pad_y = w - 1, h - 1
    padded = F.pad(x, [pad_x, pad_x, pad_y, pad_y], mode="reflect")
    ph, pw = padded.shape[2:]
    rows = _span(ph, pad_y - margin[1], pad_y + h + margin[3])
    cols = _span(pw, pad_x - margin[0], pad_x + w + margin[2])
    padded = padded * rows[:, None] * cols
    up = upfirdn2d_reference(padded, SYM6, up=2, padding=(6, 5, 6, 5), gain=4)
    rows = _span(2 * ph, 2 * (pad_y - margin[1]), 2 * (pad_y + h + margin[3]))
    cols = _span(2 * pw, 2 * (pad_x - margin[0]), 2 * (pad_x + w + margin[2]))
    up = up * rows[:, None] * cols
    # G_inv in the upsampled image's pixels, then in grid_sample's [-1, 1] coordinates
    one = g_inv.new_ones(n)
    half = _translate(-0.5 * one, -0.5 * one)
    g = half @ _scale(2 * one, 2 * one) @ g_inv @ _scale(0.5 * one, 0.5 * one) @ (
        _translate(0.5 * one, 0.5 * one))
    out_h, out_w = 2 * (h + FILTER_REACH), 2 * (w + FILTER_REACH)
    g = (_scale(2 / up.shape[3] * one, 2 / up.shape[2] * one) @ g
         @ _scale(out_w / 2 * one, out_h / 2 * one))
    grid = F.affine_grid(g[:, :2, :], [n, c, out_h, out_w], align_corners=False)
    sampled = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return upfirdn2d_reference(sampled, SYM6[::-1], down=2, padding=(-1, -1, -1, -1))


def _recolor(x: Tensor, color: Tensor) -> Tensor:
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    if c == 3:
        flat = color[:, :3, :3] @ flat + color[:, :3, 3:]
    else:  # grey: the mean of the RGB rows, as NVlabs does
        mean = color[:, :3, :].mean(dim=1, keepdim=True)
        flat = flat * mean[:, :, :3].sum(dim=2, keepdim=True) + mean[:, :, 3:]
    return flat.reshape(n, c, h, w)


def diffaugment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """DiffAugment's "color,translation,cutout" (Zhao et al. 2020) on images in [-1, 1]:
    brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5) (each about
    its own mean), a translation by a whole number of pixels up to 1/8 of the side with
    zeros shifted in, and a zeroed square of half the side at a random centre."""
    n, c, h, w = images.shape
    device = images.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(n, *shape, device=device, generator=generator, dtype=images.dtype)

    def integers(low: int, high: int) -> Tensor:
        return torch.randint(low, high, (n, 1, 1), device=device, generator=generator)

    x = images + (uniform(1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (uniform(1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (uniform(1, 1, 1) + 0.5) + mean
    shift_x, shift_y = int(w * 0.125 + 0.5), int(h * 0.125 + 0.5)
    dx, dy = integers(-shift_x, shift_x + 1), integers(-shift_y, shift_y + 1)
    ys = torch.arange(h, device=device).view(1, h, 1) - dy
    xs = torch.arange(w, device=device).view(1, 1, w) - dx
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).to(x.dtype)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    x = x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w) * inside[:, None]
    size_x, size_y = int(w * 0.5 + 0.5), int(h * 0.5 + 0.5)
    cx, cy = integers(0, w + (1 - size_x % 2)), integers(0, h + (1 - size_y % 2))
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    cut = ((ys >= cy - size_y // 2) & (ys < cy - size_y // 2 + size_y)
           & (xs >= cx - size_x // 2) & (xs < cx - size_x // 2 + size_x))
    return x * (~cut).to(x.dtype)[:, None]


# --------------------------------------------------------------------------- in training

class Augmentation(Protocol):
    """What the objective passes every discriminator input through."""

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The images augmented, with random draws from ``generator``."""
        ...

    def observe(self, real_sign: Tensor) -> None:
        """Takes a (micro-)batch's mean sign(D(real)) (device work only)."""
        ...

    def adjust(self, step: int, images: int) -> None:
        """After minibatch ``step`` (0, 1, ...) of ``images`` images in all processes."""
        ...

    def stats(self) -> dict[str, Tensor]:
        """Its statistics for the log, as 0-d tensors."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """Its state, by names unique across the objective."""
        ...

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Takes its state from a checkpoint's objective state."""
        ...

    def to(self, device: torch.device) -> Augmentation:
        """Moves its state to ``device``."""
        ...


@dataclass
class AdaptiveAugment:
    """ADA's bgc pipeline at probability p: adapted towards r_t = ``target`` every
    ``interval`` minibatches by at most ``interval`` * batch / (``kimg`` * 1000) (NVlabs'
    4 and 500), or fixed with ``target`` None. p stays in [0, 1] (NVlabs lets it pass 1,
    where every transform already always applies). p and the sums of sign(D(real))
    since the last adjustment live on the device and are checkpointed."""

    p: Tensor = field(default_factory=lambda: torch.zeros(()))
    target: float | None = ADA_TARGET
    interval: int = 4
    kimg: float = 500.0
    sign_sum: Tensor = field(default_factory=lambda: torch.zeros(()))
    sign_count: Tensor = field(default_factory=lambda: torch.zeros(()))

    def __post_init__(self) -> None:
        self.p = torch.as_tensor(self.p, dtype=torch.float32).clone()
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"--aug-p must be a probability in [0, 1], got {float(self.p):g}")
        if self.target is not None and not 0.0 <= self.target <= 1.0:
            raise ValueError(f"--aug-target must be in [0, 1] (r_t = E[sign(D(real))]; the "
                             f"paper's 0.6), got {self.target:g}")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """bgc at p (see :func:`draw_bgc` and :func:`apply_bgc_reference`)."""
        n, c, h, w = images.shape
        g_inv, color = draw_bgc(n, c, h, w, self.p, images.device, generator)
        return apply_bgc_reference(images, g_inv, color)

    def observe(self, real_sign: Tensor) -> None:
        """Adds a mean sign(D(real)) to the sums (in place, on the device)."""
        if self.target is not None:
            self.sign_sum += real_sign.detach().float()
            self.sign_count += 1

    def adjust(self, step: int, images: int) -> None:
        """Every ``interval`` minibatches: p += sign(r_t - target) * interval * images /
        (kimg * 1000), r_t the mean over the interval (and over the processes)."""
        if self.target is None or (step + 1) % self.interval:
            return
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            sums = torch.stack([self.sign_sum, self.sign_count])
            dist.all_reduce(sums)
            self.sign_sum.copy_(sums[0])
            self.sign_count.copy_(sums[1])
        r_t = self.sign_sum / self.sign_count.clamp(min=1)
        change = torch.sign(r_t - self.target) * (images * self.interval / (self.kimg * 1000))
        self.p.copy_((self.p + change * (self.sign_count > 0)).clamp(0, 1))
        self.sign_sum.zero_()
        self.sign_count.zero_()

    def stats(self) -> dict[str, Tensor]:
        """p, for the log."""
        return {"aug_p": self.p.clone()}

    def state_dict(self) -> dict[str, Tensor]:
        """p and the sums since the last adjustment."""
        return {"aug_p": self.p, "aug_sign_sum": self.sign_sum,
                "aug_sign_count": self.sign_count}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Takes a checkpoint's p and sums (a run from before it had them keeps its own)."""
        for key, value in self.state_dict().items():
            if key in state:
                value.copy_(state[key])

    def to(self, device: torch.device) -> AdaptiveAugment:
        """Moves p and the sums to ``device``."""
        self.p, self.sign_sum, self.sign_count = (t.to(device) for t in (
            self.p, self.sign_sum, self.sign_count))
        return self


@dataclass
class DiffAugment:
    """DiffAugment's "color,translation,cutout" on every image (:func:`diffaugment`)."""

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The images augmented."""
        return diffaugment(images, generator)

    def observe(self, real_sign: Tensor) -> None:
        """Nothing: DiffAugment has no p to adapt."""

    def adjust(self, step: int, images: int) -> None:
        """Nothing: DiffAugment has no p to adapt."""

    def stats(self) -> dict[str, Tensor]:
        """None."""
        return {}

    def state_dict(self) -> dict[str, Tensor]:
        """None."""
        return {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Nothing to take."""

    def to(self, device: torch.device) -> DiffAugment:
        """Nothing to move."""
        return self


def build_augmentation(name: str, p: float | None = None,
                       target: float | None = None) -> Augmentation | None:
    """The augmentation --aug ``name`` names, with --aug-p and --aug-target (None: the
    default: p starts at 0 for ada; the target 0.6). ValueError for a combination that
    means nothing, naming it."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation --aug {name!r}; choose one of "
                         f"{', '.join(AUGMENTATIONS)}")
    if name in ("none", "diffaug") and (p is not None or target is not None):
        flag = "--aug-p" if p is not None else "--aug-target"
        raise ValueError(f"{flag} is a setting of --aug ada or fixed, not of --aug {name}: "
                         "drop it")
    if name == "fixed" and (p is None or target is not None):
        raise ValueError("--aug fixed needs --aug-p (its probability) and takes no "
                         "--aug-target (that adapts p: --aug ada)")
    if name == "none":
        return None
    if name == "diffaug":
        return DiffAugment()
    return AdaptiveAugment(p=torch.tensor(0.0 if p is None else float(p)),
                           target=None if name == "fixed" else
                           (ADA_TARGET if target is None else target))
