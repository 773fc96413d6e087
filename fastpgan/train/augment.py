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

:func:`draw_bgc` draws each image's inverse geometric transform ``G_inv`` (3x3: output
pixel -> input pixel, in coordinates centred on the image) and colour transform ``C``
(4x4 on homogeneous RGB) with the distributions and in the order of random draws of
NVlabs' ``training/augment.py``, so that the same random numbers give the same
transforms; the op :func:`fastpgan.ops.augment.augment_bgc` applies them as that code
does (fused on the GPU, twice differentiable). The draws happen on the device from the
generator given, with p a device tensor and the constants made once per device, so
nothing waits for the device or copies from the host, and a step with it can be replayed
as a CUDA graph.

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
from torch import Tensor

from fastpgan.ops.augment import augment_bgc, matrix, scale, translate
from fastpgan.ops.layout import device_constant

AUGMENTATIONS = ("none", "ada", "fixed", "diffaug")
"""--aug: none, ADA with adaptive p, ADA's pipeline at a fixed p, DiffAugment."""
ADA_TARGET = 0.6
"""The paper's target for r_t = E[sign(D(real))]."""
ADA_KIMG = 500.0
"""NVlabs' ada_kimg: p can go from 0 to 1 in this many thousand images."""


# --------------------------------------------------------------------------- matrices

def _rotate(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


LUMA_AXIS = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3), 0.0)
"""The grey axis of homogeneous RGB, which luma flip reflects across and hue rotates
about."""


def _rotate_about_luma(theta: Tensor) -> Tensor:
    """Rodrigues' rotation by theta about the luma axis, (N, 4, 4)."""
    v = LUMA_AXIS
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return matrix([[v[0] * v[0] * cc + c, v[0] * v[1] * cc - v[2] * s,
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
    return scale(1 - 2 * i, torch.ones_like(i))


def _rotate90(d: Draws, width: int, height: int) -> Tensor:
    i = d.chosen(torch.floor(d.uniform() * 4), 0.0)
    return _rotate(math.pi / 2 * i)


def _integer_translation(d: Draws, width: int, height: int) -> Tensor:
    t = d.chosen((d.uniform(2) * 2 - 1) * 0.125, 0.0, None, 1)
    return translate(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height))


def _isotropic_scaling(d: Draws, width: int, height: int) -> Tensor:
    s = d.chosen(torch.exp2(d.normal() * 0.2), 1.0)
    return scale(1 / s, 1 / s)


def _rotation(d: Draws, width: int, height: int) -> Tensor:
    """Arbitrary rotation, drawn twice (before and after anisotropic scaling), each time
    with the probability that makes P(either) = p."""
    p_rotate = 1 - torch.sqrt(torch.clamp(1 - torch.as_tensor(d.p), 0, 1))
    theta = d.chosen((d.uniform() * 2 - 1) * math.pi, 0.0, p_rotate)
    return _rotate(theta)


def _anisotropic_scaling(d: Draws, width: int, height: int) -> Tensor:
    s = d.chosen(torch.exp2(d.normal() * 0.2), 1.0)
    return scale(1 / s, s)


def _fractional_translation(d: Draws, width: int, height: int) -> Tensor:
    t = d.chosen(d.normal(2) * 0.125, 0.0, None, 1)
    return translate(-t[:, 0] * width, -t[:, 1] * height)


def _brightness(d: Draws) -> Tensor:
    b = d.chosen(d.normal() * 0.2, 0.0)
    return matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)


def _contrast(d: Draws) -> Tensor:
    c = d.chosen(torch.exp2(d.normal() * 0.5), 1.0)
    return matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)


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
    kimg: float = ADA_KIMG
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
        """bgc at p (see :func:`draw_bgc` and :func:`fastpgan.ops.augment.augment_bgc`)."""
        n, c, h, w = images.shape
        g_inv, color = draw_bgc(n, c, h, w, self.p, images.device, generator)
        return augment_bgc(images, g_inv, color)

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


def build_augmentation(name: str, p: float | None = None, target: float | None = None,
                       kimg: float | None = None) -> Augmentation | None:
    """The augmentation --aug ``name`` names, with --aug-p, --aug-target and --aug-kimg
    (None: the default: p starts at 0 for ada; the target 0.6; 500 kimg from 0 to 1).
    ValueError for a combination that means nothing, naming it."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation --aug {name!r}; choose one of "
                         f"{', '.join(AUGMENTATIONS)}")
    if name in ("none", "diffaug") and (p is not None or target is not None
                                        or kimg is not None):
        flag = ("--aug-p" if p is not None else "--aug-target" if target is not None
                else "--aug-kimg")
        raise ValueError(f"{flag} is a setting of --aug ada or fixed, not of --aug {name}: "
                         "drop it")
    if name == "fixed" and (p is None or target is not None or kimg is not None):
        raise ValueError("--aug fixed needs --aug-p (its probability) and takes no "
                         "--aug-target or --aug-kimg (they adapt p: --aug ada)")
    if kimg is not None and not 0 < kimg < math.inf:
        raise ValueError(f"--aug-kimg must be positive, got {kimg:g}")
    if name == "none":
        return None
    if name == "diffaug":
        return DiffAugment()
    return AdaptiveAugment(p=torch.tensor(0.0 if p is None else float(p)),
                           target=None if name == "fixed" else
                           (ADA_TARGET if target is None else target),
                           kimg=ADA_KIMG if kimg is None else kimg)
