"""``fastpgan generate`` and ``fastpgan interpolate``: seeded samples and latent walks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from fastpgan.generate.latents import seed_latents, slerp
from fastpgan.models import GrowthStage
from fastpgan.models.sampling import (
    is_style_based,
    render,
    style_count,
    style_resolution,
    synthesize,
    to_w,
    w_average,
)
from fastpgan.ops import frozen_weights
from fastpgan.runs.pictures import save_animation, save_grid

CHUNK = 32
"""Images rendered at a time."""
GRID_LIMIT = 256
"""The most images grid.png shows (the first seeds'): a grid of thousands is unreadable,
and keeping their images for it would grow memory with every seed."""


def _image_chunks(G: nn.Module, latents: Iterable[Tensor], truncation: float, device: str,
                  stage: GrowthStage | None, classes: int | None = None) -> Iterator[Tensor]:
    """G's images at ``stage`` (None: G's full resolution) for each chunk of latents [of
    class ``classes``, for a conditional G], as float32 on the CPU, one chunk at a time."""
    if truncation != 1.0 and not is_style_based(G):
        raise ValueError("--truncation needs a StyleGAN generator (ProGAN has no w space)")
    with torch.no_grad(), frozen_weights():
        for chunk in latents:
            yield render(G, chunk.to(device), stage, truncation, classes).float().cpu()


def generate(G: nn.Module, seeds: list[int], out: str | Path, *, columns: int | None = None,
             truncation: float = 1.0, device: str = "cpu", stage: GrowthStage | None = None,
             seed_rng: str = "torch", classes: int | None = None) -> list[Path]:
    """Writes seed{N}.png for each seed and grid.png (the first GRID_LIMIT seeds) into
    ``out``; returns the files. Images are written as they are rendered, CHUNK at a time,
    so memory stays flat however many seeds are asked.

    ``stage``: the resolution and fade-in alpha to render at (None: G's full one).
    ``seed_rng``: how seeds become latents (:func:`~fastpgan.generate.seed_latents`).
    ``classes``: the class of a conditional G's images.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    G = G.to(device)
    chunks = [seeds[start:start + CHUNK] for start in range(0, len(seeds), CHUNK)]
    latents = (seed_latents(chunk, G.latent_dim, seed_rng) for chunk in chunks)
    files, grid, shown = [], [], 0
    for chunk, images in zip(chunks, _image_chunks(G, latents, truncation, device, stage,
                                                   classes), strict=True):
        files += [save_grid(image[None], out / f"seed{seed:04d}.png", columns=1)
                  for seed, image in zip(chunk, images, strict=True)]
        grid.append(images[:GRID_LIMIT - shown])
        shown += len(grid[-1])
    files.append(save_grid(torch.cat(grid), out / "grid.png", columns=columns,
                           upscale_to=512))
    return files


def interpolate(G: nn.Module, seeds: list[int], out: str | Path, *, steps: int = 60,
                mode: str = "slerp", space: str = "z", truncation: float = 1.0,
                device: str = "cpu", frame_ms: int = 50, stage: GrowthStage | None = None,
                seed_rng: str = "torch", classes: int | None = None) -> tuple[Path, Path]:
    """A looping walk through the seeds' latents: a GIF at ``out`` and a strip PNG beside it.

    ``steps`` frames go from each seed to the next (and from the last back to the first).
    In z, "slerp" follows great circles (z is Gaussian, so its norm concentrates); in
    StyleGAN's w space the walk is linear. Frame k * steps is exactly seed k's image.
    ``stage``, ``seed_rng`` and ``classes`` as in :func:`generate`.
    """
    if len(seeds) < 2:
        raise ValueError("interpolation needs at least two seeds")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1 (frames from one seed to the next), "
                         f"got {steps}")
    if mode not in ("slerp", "lerp") or space not in ("z", "w"):
        raise ValueError(f"--mode must be slerp or lerp and --space z or w, got {mode}, {space}")
    if space == "w" and not is_style_based(G):
        raise ValueError("--space w needs a StyleGAN generator")
    G = G.to(device)
    stage = stage or G.full_stage
    z = seed_latents(seeds, G.latent_dim, seed_rng)
    ends = torch.roll(z, -1, 0)
    t = torch.arange(steps, dtype=torch.float64).view(1, -1, 1) / steps
    if space == "z":
        walk = (slerp(z[:, None], ends[:, None], t) if mode == "slerp" else
                torch.lerp(z[:, None].double(), ends[:, None].double(), t).float())
        frames = torch.cat(list(_image_chunks(G, walk.reshape(-1, G.latent_dim).split(CHUNK),
                                              truncation, device, stage, classes)))
    else:
        with torch.no_grad():
            w = to_w(G, z.to(device), classes).cpu()
            if truncation != 1.0:
                w = w_average(G).cpu().lerp(w, truncation)
            walk = torch.lerp(w[:, None].double(), torch.roll(w, -1, 0)[:, None].double(), t)
            walk = walk.reshape(-1, 1, G.w_dim).float().expand(-1, style_count(G, stage), -1)
            with frozen_weights():
                frames = torch.cat([synthesize(G, chunk.to(device), stage).float().cpu()
                                    for chunk in walk.split(32)])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_animation([frame[None] for frame in frames], out, frame_ms=frame_ms)
    pick = frames[:: max(1, math.ceil(len(frames) / 12))]
    strip = save_grid(pick, out.with_suffix(".png"), columns=len(pick),
                      upscale_to=96 * len(pick))
    return out, strip


LAYER_GROUPS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


def mixing_layers(G: nn.Module, layers: str, stage: GrowthStage | None = None) -> list[int]:
    """Style inputs named by "coarse" (4-8 px), "middle" (16-32 px), "fine" (64 px and up),
    as in the StyleGAN paper's figure 3, or by an index range "A-B" of the inputs at
    ``stage``'s resolution (None: G's full one; StyleGAN: 2 * log2(R / 2) of them,
    StyleGAN2: G.num_ws). ValueError if it names none of them."""
    stage = stage or G.full_stage
    count = style_count(G, stage)
    if layers in LAYER_GROUPS:
        low, high = LAYER_GROUPS[layers]
        picked = [i for i in range(count) if low <= style_resolution(G, i) <= high]
    else:
        try:
            first, last = (int(v) for v in layers.split("-"))
        except ValueError:
            raise ValueError(f"--layers takes coarse, middle, fine or A-B, got {layers!r}") \
                from None
        picked = [i for i in range(count) if first <= i <= last]
    if not picked:
        raise ValueError(f"--layers {layers} names none of the style inputs 0-{count - 1} "
                         f"of this generator at {stage.resolution}px")
    return picked


def style_mix(G: nn.Module, rows: list[int], cols: list[int], out: str | Path, *,
              layers: str = "middle", truncation: float = 1.0, device: str = "cpu",
              stage: GrowthStage | None = None, seed_rng: str = "torch",
              classes: int | None = None) -> Path:
    """StyleGAN's style-mixing grid, saved as a PNG at ``out``.

    The first row shows the column seeds' images and the first column the row seeds';
    cell (i, j) is row seed i's image with the styles of ``layers`` taken from column
    seed j. ``stage``, ``seed_rng`` and ``classes`` as in :func:`generate`.
    """
    if not is_style_based(G):
        raise ValueError("style mixing needs a StyleGAN generator (ProGAN has no styles)")
    if not rows or not cols:
        raise ValueError("style mixing needs at least one row seed and one column seed")
    G = G.to(device)
    stage = stage or G.full_stage
    picked = torch.tensor(mixing_layers(G, layers, stage), device=device)
    count = style_count(G, stage)
    with torch.no_grad(), frozen_weights():
        w = to_w(G, seed_latents(rows + cols, G.latent_dim, seed_rng).to(device), classes)
        w = w_average(G).lerp(w, truncation)
        w_rows, w_cols = w[:len(rows)], w[len(rows):]
        ws = w_rows[:, None, None].repeat(1, len(cols), count, 1)
        ws[:, :, picked] = w_cols[None, :, None]

        def images(styles: Tensor) -> Tensor:
            return synthesize(G, styles.expand(-1, count, -1) if styles.shape[1] == 1
                              else styles, stage).float().cpu()

        col_images = images(w_cols[:, None])
        row_images = images(w_rows[:, None])
        mixed = images(ws.flatten(0, 1)).view(len(rows), len(cols), *col_images.shape[1:])
    blank = torch.full_like(col_images[:1], -1.0)
    grid = [torch.cat([blank, col_images])]
    grid += [torch.cat([row_images[i:i + 1], mixed[i]]) for i in range(len(rows))]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_grid(torch.cat(grid), out, columns=len(cols) + 1,
                     upscale_to=128 * (len(cols) + 1))
