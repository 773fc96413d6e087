"""``fastpgan generate`` and ``fastpgan interpolate``: seeded samples and latent walks."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from fastpgan.generate.latents import seed_latents, slerp
from fastpgan.models import StyleGANGenerator
from fastpgan.train.report import image_grid, save_grid


def _images(G: nn.Module, z: Tensor, truncation: float, device: str) -> Tensor:
    """G's images for latents z, in chunks, as float32 on the CPU."""
    if truncation != 1.0 and not isinstance(G, StyleGANGenerator):
        raise ValueError("--truncation needs a StyleGAN generator (ProGAN has no w space)")
    kwargs = {"truncation_psi": truncation} if isinstance(G, StyleGANGenerator) else {}
    with torch.no_grad():
        return torch.cat([G(chunk.to(device), **kwargs).float().cpu()
                          for chunk in z.split(32)])


def generate(G: nn.Module, seeds: list[int], out: str | Path, *, columns: int | None = None,
             truncation: float = 1.0, device: str = "cpu") -> list[Path]:
    """Writes seed{N}.png for each seed and grid.png into ``out``; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = _images(G.to(device), seed_latents(seeds, G.latent_dim), truncation, device)
    files = [save_grid(image[None], out / f"seed{seed:04d}.png", columns=1)
             for seed, image in zip(seeds, images, strict=True)]
    files.append(save_grid(images, out / "grid.png", columns=columns, upscale_to=512))
    return files


def interpolate(G: nn.Module, seeds: list[int], out: str | Path, *, steps: int = 60,
                mode: str = "slerp", space: str = "z", truncation: float = 1.0,
                device: str = "cpu", frame_ms: int = 50) -> tuple[Path, Path]:
    """A looping walk through the seeds' latents: a GIF at ``out`` and a strip PNG beside it.

    ``steps`` frames go from each seed to the next (and from the last back to the first).
    In z, "slerp" follows great circles (z is Gaussian, so its norm concentrates); in
    StyleGAN's w space the walk is linear. Frame k * steps is exactly seed k's image.
    """
    if len(seeds) < 2:
        raise ValueError("interpolation needs at least two seeds")
    if mode not in ("slerp", "lerp") or space not in ("z", "w"):
        raise ValueError(f"--mode must be slerp or lerp and --space z or w, got {mode}, {space}")
    if space == "w" and not isinstance(G, StyleGANGenerator):
        raise ValueError("--space w needs a StyleGAN generator")
    G = G.to(device)
    z = seed_latents(seeds, G.latent_dim)
    ends = torch.roll(z, -1, 0)
    t = torch.arange(steps, dtype=torch.float64).view(1, -1, 1) / steps
    if space == "z":
        walk = (slerp(z[:, None], ends[:, None], t) if mode == "slerp" else
                torch.lerp(z[:, None].double(), ends[:, None].double(), t).float())
        frames = _images(G, walk.reshape(-1, G.latent_dim), truncation, device)
    else:
        with torch.no_grad():
            w = G.mapping(z.to(device)).cpu()
            if truncation != 1.0:
                w = G.w_avg.cpu().lerp(w, truncation)
            walk = torch.lerp(w[:, None].double(), torch.roll(w, -1, 0)[:, None].double(), t)
            walk = walk.reshape(-1, 1, G.w_dim).float().expand(-1, G.num_layers, -1)
            frames = torch.cat([G.synthesis(chunk.to(device), len(G.blocks) - 1, 1.0).float()
                                .cpu() for chunk in walk.split(32)])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures = [_picture(frame) for frame in frames]
    pictures[0].save(out, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    pick = frames[:: max(1, math.ceil(len(frames) / 12))]
    strip = save_grid(pick, out.with_suffix(".png"), columns=len(pick),
                      upscale_to=96 * len(pick))
    return out, strip


def _picture(image: Tensor):
    from PIL import Image

    pixels = image_grid(image[None], columns=1).numpy()
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
