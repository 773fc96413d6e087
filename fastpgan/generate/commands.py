"""``fastpgan generate`` and ``fastpgan interpolate``: seeded samples and latent walks."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor, nn

from fastpgan.generate.latents import seed_latents, slerp
from fastpgan.models import GrowthStage
from fastpgan.models.sampling import (
    check_truncation,
    is_style_based,
    render,
    style_count,
    style_resolution,
    synthesize,
    to_w,
    truncate,
)
from fastpgan.ops import frozen_weights
from fastpgan.runs.pictures import save_animation, save_grid

CHUNK = 32
"""Images rendered at a time."""
GRID_WIDTH = 512
"""grid.png is nearest-upscaled to at least this many pixels wide."""
GRID_LIMIT = 256
"""The most images grid.png shows (the first seeds'): a grid of thousands is unreadable,
and keeping their images for it would grow memory with every seed."""


def image_chunks(G: nn.Module, seeds: list[int], *, truncation: float = 1.0,
                 cutoff: int | None = None, device: str = "cpu",
                 stage: GrowthStage | None = None, seed_rng: str = "torch",
                 classes: int | None = None) -> Iterator[tuple[list[int], Tensor]]:
    """The seeds' images at ``stage`` (None: G's full resolution), CHUNK seeds a batch,
    as (those seeds, their images as float32 on the CPU): what ``fastpgan generate``
    writes, one chunk at a time.

    ``truncation`` and ``cutoff``: psi, and the style inputs it applies to (None: all).
    ``seed_rng``: how seeds become latents (:func:`~fastpgan.generate.seed_latents`).
    ``classes``: the class of a conditional G's images.
    """
    check_truncation(G, truncation, cutoff)
    with torch.no_grad(), frozen_weights():
        for start in range(0, len(seeds), CHUNK):
            chunk = seeds[start:start + CHUNK]
            z = seed_latents(chunk, G.latent_dim, seed_rng).to(device)
            yield chunk, render(G, z, stage, truncation, classes, cutoff).float().cpu()


def generate(G: nn.Module, seeds: list[int], out: str | Path, *, columns: int | None = None,
             **rendering) -> list[Path]:
    """Writes seed{N}.png for each seed and grid.png (the first GRID_LIMIT seeds) into
    ``out``; returns the files. Images are written as they are rendered, CHUNK at a time,
    so memory stays flat however many seeds are asked. ``rendering``: the keyword
    arguments of :func:`image_chunks`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, grid, shown = [], [], 0
    for chunk, images in image_chunks(G.to(rendering.get("device", "cpu")), seeds,
                                      **rendering):
        files += [save_grid(image[None], out / f"seed{seed:04d}.png", columns=1)
                  for seed, image in zip(chunk, images, strict=True)]
        grid.append(images[:GRID_LIMIT - shown])
        shown += len(grid[-1])
    files.append(save_grid(torch.cat(grid), out / "grid.png", columns=columns,
                           upscale_to=GRID_WIDTH))
    return files


def walk_points(G: nn.Module, seeds: list[int], space: str = "z", *, truncation: float = 1.0,
                cutoff: int | None = None, device: str = "cpu",
                stage: GrowthStage | None = None, seed_rng: str = "torch",
                classes: int | None = None) -> Tensor:
    """The seeds' points in the walk's space, on the CPU: z (N, latent_dim), or in
    StyleGAN's w space their truncated styles (N, style inputs at ``stage``, w_dim)."""
    if space not in ("z", "w"):
        raise ValueError(f"--space must be z or w, got {space}")
    check_truncation(G, truncation, cutoff)
    z = seed_latents(seeds, G.latent_dim, seed_rng)
    if space == "z":
        return z
    if not is_style_based(G):
        raise ValueError("--space w needs a StyleGAN generator")
    with torch.no_grad():
        w = to_w(G, z.to(device), classes)
        ws = w[:, None].expand(-1, style_count(G, stage), -1)
        return truncate(G, ws, truncation, cutoff).cpu()


def walk_frames(G: nn.Module, points: Tensor, *, steps: int = 60, mode: str = "slerp",
                truncation: float = 1.0, cutoff: int | None = None, device: str = "cpu",
                stage: GrowthStage | None = None, classes: int | None = None) -> Tensor:
    """A looping walk through ``points`` (:func:`walk_points`: z, or per-input styles
    ws): ``steps`` frames from each point to the next and from the last back to the
    first, as float32 images on the CPU; frame k * steps is exactly point k's image.

    In z, "slerp" follows great circles (z is Gaussian, so its norm concentrates) and
    the frames are truncated as G renders them; styles are walked linearly.
    """
    if len(points) < 2:
        raise ValueError("interpolation needs at least two seeds")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1 (frames from one seed to the next), "
                         f"got {steps}")
    if mode not in ("slerp", "lerp"):
        raise ValueError(f"--mode must be slerp or lerp, got {mode}")
    ends = torch.roll(points, -1, 0)
    if points.dim() == 2:  # z
        t = torch.arange(steps, dtype=torch.float64).view(1, -1, 1) / steps
        walk = (slerp(points[:, None], ends[:, None], t) if mode == "slerp" else
                torch.lerp(points[:, None].double(), ends[:, None].double(), t).float())
        latents = walk.reshape(-1, G.latent_dim)
        check_truncation(G, truncation, cutoff)
        with torch.no_grad(), frozen_weights():
            return torch.cat([render(G, chunk.to(device), stage, truncation, classes,
                                     cutoff).float().cpu() for chunk in latents.split(CHUNK)])
    t = torch.arange(steps, dtype=torch.float64).view(1, -1, 1, 1) / steps
    walk = torch.lerp(points[:, None].double(), ends[:, None].double(), t).float()
    with torch.no_grad(), frozen_weights():
        return torch.cat([synthesize(G, chunk.to(device), stage).float().cpu()
                          for chunk in walk.flatten(0, 1).split(CHUNK)])


def save_walk(frames: Tensor, out: str | Path | BinaryIO, frame_ms: int = 50) -> None:
    """The walk's frames as a looping GIF (a path, or a binary file)."""
    save_animation([frame[None] for frame in frames], out, frame_ms=frame_ms)


def walk_strip(frames: Tensor, out: str | Path | BinaryIO) -> None:
    """A dozen of the walk's frames side by side, as a PNG (a path, or a binary file)."""
    pick = frames[:: max(1, math.ceil(len(frames) / 12))]
    save_grid(pick, out, columns=len(pick), upscale_to=96 * len(pick))


def interpolate(G: nn.Module, seeds: list[int], out: str | Path, *, steps: int = 60,
                mode: str = "slerp", space: str = "z", frame_ms: int = 50,
                **rendering) -> tuple[Path, Path]:
    """A looping walk through the seeds' latents (:func:`walk_frames`): a GIF at ``out``
    and a strip PNG beside it. ``rendering``: the keyword arguments of
    :func:`image_chunks` (truncation, cutoff, device, stage, seed_rng, classes).
    """
    if len(seeds) < 2:
        raise ValueError("interpolation needs at least two seeds")
    G = G.to(rendering.get("device", "cpu"))
    seed_rng = rendering.pop("seed_rng", "torch")
    points = walk_points(G, seeds, space, seed_rng=seed_rng, **rendering)
    if space == "w":  # the styles carry the truncation
        rendering.update(truncation=1.0, cutoff=None)
    frames = walk_frames(G, points, steps=steps, mode=mode, **rendering)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_walk(frames, out, frame_ms)
    walk_strip(frames, out.with_suffix(".png"))
    return out, out.with_suffix(".png")


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


def mixing_grid(G: nn.Module, rows: list[int], cols: list[int], *, layers: str = "middle",
                truncation: float = 1.0, cutoff: int | None = None, device: str = "cpu",
                stage: GrowthStage | None = None, seed_rng: str = "torch",
                classes: int | None = None) -> Tensor:
    """StyleGAN's style-mixing grid as images, row by row ((len(rows) + 1) * (len(cols) +
    1), C, R, R): the first row shows the column seeds' images and the first column the
    row seeds'; cell (i, j) is row seed i's image with the styles of ``layers`` taken from
    column seed j. The corner is blank (-1)."""
    if not is_style_based(G):
        raise ValueError("style mixing needs a StyleGAN generator (ProGAN has no styles)")
    if not rows or not cols:
        raise ValueError("style mixing needs at least one row seed and one column seed")
    stage = stage or G.full_stage
    picked = torch.tensor(mixing_layers(G, layers, stage), device=device)
    count = style_count(G, stage)
    with torch.no_grad(), frozen_weights():
        w = to_w(G, seed_latents(rows + cols, G.latent_dim, seed_rng).to(device), classes)
        ws = truncate(G, w[:, None].expand(-1, count, -1), truncation, cutoff)
        w_rows, w_cols = ws[:len(rows)], ws[len(rows):]
        mixed_ws = w_rows[:, None].repeat(1, len(cols), 1, 1)
        mixed_ws[:, :, picked] = w_cols[None, :, picked]
        col_images = synthesize(G, w_cols, stage).float().cpu()
        row_images = synthesize(G, w_rows, stage).float().cpu()
        mixed = synthesize(G, mixed_ws.flatten(0, 1), stage).float().cpu()
    mixed = mixed.view(len(rows), len(cols), *col_images.shape[1:])
    blank = torch.full_like(col_images[:1], -1.0)
    grid = [torch.cat([blank, col_images])]
    grid += [torch.cat([row_images[i:i + 1], mixed[i]]) for i in range(len(rows))]
    return torch.cat(grid)


def style_mix(G: nn.Module, rows: list[int], cols: list[int], out: str | Path | BinaryIO,
              **mixing) -> str | Path | BinaryIO:
    """StyleGAN's style-mixing grid (:func:`mixing_grid`, whose keyword arguments
    ``mixing`` takes) saved as a PNG at ``out`` (a path, or a binary file)."""
    G = G.to(mixing.get("device", "cpu"))
    grid = mixing_grid(G, rows, cols, **mixing)
    if isinstance(out, str | os.PathLike):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(grid, out, columns=len(cols) + 1, upscale_to=128 * (len(cols) + 1))
    return out
