"""Latents for generation: one per seed, and spherical interpolation between them."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

SEED_RNGS = ("torch", "numpy")
"""How a seed becomes a latent: torch's generator (fastpgan's own) or NumPy's
``RandomState(seed).randn``, as NVlabs' generate.py and style_mixing.py draw z, so a seed
gives the image their scripts give for a published network."""


SEED_MAX = 2 ** 32 - 1
"""The largest seed: NumPy's RandomState (NVlabs' seeding) takes no more."""
MAX_SEEDS = 1_000_000
"""The most seeds one list may name."""


def parse_seeds(text: str) -> list[int]:
    """"0-3,7,10-11" -> [0, 1, 2, 3, 7, 10, 11]; ValueError naming a bad part, a seed above
    SEED_MAX, or a list of more than MAX_SEEDS seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ValueError(f"bad seed list {text!r}: {part!r} is not N or N-M with M >= N")
        first, last = int(match[1]), int(match[2] or match[1])
        if last > SEED_MAX:
            raise ValueError(f"bad seed list {text!r}: seeds go up to {SEED_MAX}, got {last}")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ValueError(f"bad seed list {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(first, last + 1))
    return seeds


def seed_latents(seeds: list[int], latent_dim: int, rng: str = "torch") -> Tensor:
    """(len(seeds), latent_dim) float32: N(0, 1) latents, each a function of its seed only,
    drawn by ``rng`` (:data:`SEED_RNGS`; "numpy" draws in float64 and rounds, as NVlabs)."""
    if rng == "numpy":
        return torch.from_numpy(np.stack([np.random.RandomState(s).randn(latent_dim)
                                          for s in seeds])).float()
    if rng != "torch":
        raise ValueError(f"the seed RNG must be one of {SEED_RNGS}, got {rng!r}")
    return torch.stack([torch.randn(latent_dim, generator=torch.Generator().manual_seed(s))
                        for s in seeds])


def slerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation from a (t=0) to b (t=1) along the great circle, with the norm
    interpolated linearly (equal for equal-norm endpoints, so it stays on the sphere).

    Falls back to linear interpolation where a and b are (anti)parallel.
    """
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(dim=-1, keepdim=True), b64.norm(dim=-1, keepdim=True)
    ua, ub = a64 / na, b64 / nb
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    t = torch.as_tensor(t, dtype=torch.float64)
    sin = torch.sin(omega)
    safe = sin.abs() > 1e-6
    direction = torch.where(
        safe, (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub)
        / torch.where(safe, sin, torch.ones_like(sin)), (1 - t) * ua + t * ub)
    return (direction * ((1 - t) * na + t * nb)).to(a.dtype)
