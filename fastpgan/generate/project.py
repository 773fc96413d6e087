"""``fastpgan project``: the latent whose image is closest to a target image.

ProGAN is searched in z (the generator pixel-normalizes z, so only its direction
matters), StyleGAN in w, one w for every layer, or in W+, a w for each layer (Abdal et al.
2019, Image2StyleGAN: it reaches images far outside the training data, at the price of
latents the mapping network never produces). The search follows the StyleGAN2
projector's published schedule (Karras et al. 2020, appendix D): Adam, learning rate
ramped up over the first 5% of the steps and down with a cosine over the last 25%, and
Gaussian noise on the latent (by default 5% of the latent distribution's spread) that
fades out quadratically over the first 75%, to shake it out of poor local minima. Several starts
are optimized at once, as one batch, and the best is kept: a single start often settles in
a poor local minimum.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from fastpgan.data.cache import load_square
from fastpgan.generate.latents import seed_latents
from fastpgan.metrics.inception import InceptionPerceptualDistance
from fastpgan.models import GrowthStage
from fastpgan.models.sampling import is_style_based, render, style_count, synthesize, to_w
from fastpgan.ops import frozen_weights
from fastpgan.runs.pictures import save_animation, save_grid

PROJECTION_LOSSES = ("l2", "l1", "inception")
PROJECTION_SPACES = ("z", "w", "w+")
W_SAMPLES = 4096  # latents mapped to estimate w's mean and spread


@dataclass
class Projection:
    """The result of :func:`project`."""

    space: str  # "z", "w" or "w+"
    loss: str
    latent: Tensor  # (latent_dim,) z, (w_dim,) w or (style inputs, w_dim) w+
    image: Tensor  # (1, C, R, R) in [-1, 1]
    target: Tensor
    losses: list[float] = field(default_factory=list)  # one per step
    frames: list[Tensor] = field(default_factory=list)  # images along the search


def load_target(source: str | os.PathLike | bytes, resolution: int, channels: int) -> Tensor:
    """The image file at ``source`` (a path, or the file's bytes) as (1, channels, R, R) in
    [-1, 1]: center-cropped and Lanczos-resized (smaller images are upscaled). ValueError
    if Pillow cannot read it."""
    def opener() -> BinaryIO:  # load_square closes what it opens
        return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")

    name = "the uploaded image" if isinstance(source, bytes) else f"the target image {source}"
    try:
        array = load_square(opener, resolution, channels, upscale=True)
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read {name}: {exc}") from exc
    return torch.from_numpy(array)[None] / 127.5 - 1


def _render(G: nn.Module, latents: Tensor, stage: GrowthStage,
            classes: int | None = None) -> Tensor:
    if latents.dim() == 3:  # w+: the class is in it already
        return synthesize(G, latents, stage)
    if is_style_based(G):  # w
        return synthesize(G, latents[:, None].expand(-1, style_count(G, stage), -1), stage)
    return render(G, latents, stage, classes=classes)


def _distance(loss: str, target: Tensor, inception: str | os.PathLike | None):
    """Per-image distances (N,) from images (N, C, R, R) to the target (1, C, R, R)."""
    if loss == "inception":
        perceptual = InceptionPerceptualDistance(inception, target.device)
        with torch.no_grad():
            target_activations = perceptual.activations(target)

    def distance(images: Tensor) -> Tensor:
        if loss == "l1":
            return (images - target).abs().mean((1, 2, 3))
        l2 = (images - target).square().mean((1, 2, 3))
        if loss == "l2":
            return l2
        return perceptual(images, target_activations) + l2
    return distance


def _starts(G: nn.Module, target: Tensor, restarts: int, candidates: int, seed: int,
            device: torch.device, stage: GrowthStage,
            classes: int | None) -> tuple[Tensor, float]:
    """The ``restarts`` starting latents and the spread (RMS per coordinate) of their
    distribution: the seeded candidates nearest the target in pixels, and for StyleGAN
    the mean w first."""
    with torch.no_grad():
        if is_style_based(G):
            z = torch.randn(W_SAMPLES, G.latent_dim, generator=torch.Generator().manual_seed(seed))
            w = torch.cat([to_w(G, chunk.to(device), classes) for chunk in z.split(512)])
            mean = w.mean(0)
            spread = float((w - mean).square().sum(1).mean().div(w.shape[1]).sqrt())
            pool, first = w[:candidates], [mean[None]]
        else:
            pool, first, spread = seed_latents(list(range(seed, seed + candidates)),
                                               G.latent_dim).to(device), [], 1.0
        errors = torch.cat([(_render(G, chunk, stage, classes) - target).square()
                            .mean((1, 2, 3)) for chunk in pool.split(32)])
        nearest = pool[errors.argsort()[:restarts - len(first)]]
        return torch.cat([*first, nearest]), spread


def projection_space(G: nn.Module, space: str | None) -> str:
    """The space a projection searches: ``space``, or z for ProGAN and w for StyleGAN if
    None. ValueError for a space G does not have."""
    if space is None:
        return "w" if is_style_based(G) else "z"
    if space not in PROJECTION_SPACES:
        raise ValueError(f"--space must be one of {', '.join(PROJECTION_SPACES)}, got "
                         f"{space!r}")
    if (space == "z") == is_style_based(G):
        raise ValueError(f"--space {space} is not this generator's: ProGAN is projected in "
                         f"z, StyleGAN in w or w+")
    return space


@frozen_weights()  # G's weights stay as they are: its kernels are built once
def project(G: nn.Module, target: Tensor, *, steps: int = 1000, loss: str = "l2",
            space: str | None = None, learning_rate: float = 0.1, noise: float = 0.05,
            restarts: int = 8, candidates: int = 64, seed: int = 0,
            frames: int = 50, device: str | torch.device = "cpu",
            inception: str | os.PathLike | None = None, progress: bool = True,
            stage: GrowthStage | None = None, classes: int | None = None,
            on_step: Callable[[int, float, Tensor | None], None] | None = None) -> Projection:
    """Searches G's latent space for the image closest to ``target`` (1, C, R, R) in [-1, 1].

    Args:
        space: "z" (ProGAN), "w" or "w+" (StyleGAN); None: z for ProGAN, w for StyleGAN.
        steps: optimizer steps.
        loss: "l2" or "l1" on pixels, or "inception": the Inception perceptual distance
            (:class:`~fastpgan.metrics.inception.InceptionPerceptualDistance`) plus l2.
        learning_rate: Adam's peak learning rate.
        noise: the latent noise at the start, as a fraction of the latent distribution's
            spread (it fades out over the first 75% of the steps).
        restarts: starts optimized together (one batch); the best one is returned.
        candidates: the starts are the nearest of this many seeded latents (for StyleGAN,
            the mean w and the nearest restarts - 1).
        seed: seeds the starting latents and the latent noise.
        frames: images kept along the search for the animation.
        inception: the Inception file for loss="inception" (found if None).
        stage: the resolution and fade-in alpha G renders at (None: its full one); the
            target is at that resolution.
        classes: the class a conditional G renders.
        on_step: called after each step with the step, the best start's loss and, on the
            steps whose image is kept for the animation, that image (else None); an
            exception it raises stops the search.
    """
    if loss not in PROJECTION_LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(PROJECTION_LOSSES)}, got {loss!r}")
    if steps < 1 or restarts < 1:
        raise ValueError(f"--steps and --restarts must be at least 1, got {steps} and "
                         f"{restarts}")
    space = projection_space(G, space)
    stage = stage or G.full_stage
    resolution = stage.resolution
    if target.dim() != 4 or target.shape[0] != 1 or target.shape[-2:] != (resolution, resolution):
        raise ValueError(f"the target must be (1, C, {resolution}, {resolution}), got "
                         f"{tuple(target.shape)}")
    device = torch.device(device)
    G = G.to(device).eval().requires_grad_(False)
    target = target.to(device)
    distance = _distance(loss, target, inception)
    starts, spread = _starts(G, target, restarts, max(candidates, restarts), seed,
                             device, stage, classes)
    if space == "w+":
        starts = starts[:, None].repeat(1, style_count(G, stage), 1)
    latents = starts.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latents], betas=(0.9, 0.999), lr=learning_rate)
    noise_rng = torch.Generator(device=device).manual_seed(seed)
    result = Projection(space, loss, starts[0], target.cpu(), target.cpu())
    keep_every = max(1, steps // max(frames, 1))
    from tqdm import tqdm

    for step in tqdm(range(steps), desc="projecting", disable=not progress):
        t = step / steps
        ramp = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / 0.25))
        ramp *= min(1.0, (step + 1) / (0.05 * steps))
        optimizer.param_groups[0]["lr"] = learning_rate * ramp
        shake = noise * spread * max(0.0, 1.0 - t / 0.75) ** 2
        images = _render(G, latents + shake * torch.randn(latents.shape, generator=noise_rng,
                                                          device=device), stage, classes)
        values = distance(images)
        optimizer.zero_grad(set_to_none=True)
        values.sum().backward()  # the starts are independent: each gets its own gradient
        optimizer.step()
        best = int(values.argmin())
        result.losses.append(values[best].item())
        frame = None
        if step % keep_every == 0:
            frame = images[best:best + 1].detach().float().cpu()
            result.frames.append(frame)
        if on_step is not None:
            on_step(step, result.losses[-1], frame)
    with torch.no_grad():
        best = int(distance(_render(G, latents, stage, classes)).argmin())
        result.latent = latents[best].detach().cpu()
        result.image = _render(G, latents[best:best + 1], stage, classes).float().cpu()
    result.frames.append(result.image)
    return result


PICTURE_SIZE = 256
"""A projection's pictures are nearest-upscaled to at least this many pixels a side."""


def save_target(projection: Projection, out: str | os.PathLike | BinaryIO) -> Path | BinaryIO:
    """The target as the generator sees it (cropped, resized) as a PNG (target.png)."""
    return save_grid(projection.target, out, upscale_to=PICTURE_SIZE)


def save_projected(projection: Projection, out: str | os.PathLike | BinaryIO) -> Path | BinaryIO:
    """The projection's image as a PNG (projected.png)."""
    return save_grid(projection.image, out, upscale_to=PICTURE_SIZE)


def save_search(projection: Projection, out: str | os.PathLike | BinaryIO) -> Path | BinaryIO:
    """The search as a looping GIF (projection.gif): the target beside the best start's
    image along the way."""
    return save_animation([torch.cat([projection.target, frame])
                           for frame in projection.frames], out, columns=2,
                          upscale_to=2 * PICTURE_SIZE)


PROJECTION_PICTURES: dict[str, Callable[[Projection, str | os.PathLike | BinaryIO],
                                        Path | BinaryIO]] = {
    "target.png": save_target, "projected.png": save_projected, "projection.gif": save_search}
"""The pictures of a projection ``fastpgan project`` writes, by file name, each saved to a
path or a binary file."""


def save_projection(projection: Projection, out: str | os.PathLike) -> list[Path]:
    """Writes into ``out``: target.png, projected.png, compare.png (target | projection),
    latent.npy (z or w) with latent.json, projection.gif (the search) and loss.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [save(projection, out / name) for name, save in PROJECTION_PICTURES.items()]
    files.append(save_grid(torch.cat([projection.target, projection.image]),
                           out / "compare.png", columns=2, upscale_to=2 * PICTURE_SIZE))
    np.save(out / "latent.npy", projection.latent.numpy())
    final = projection.losses[-1] if projection.losses else None
    (out / "latent.json").write_text(json.dumps({
        "space": projection.space, "loss": projection.loss, "steps": len(projection.losses),
        "final_loss": final,
        "pixel_mse": float((projection.image - projection.target).square().mean()),
    }, indent=1), encoding="utf-8")
    files += [out / "latent.npy", out / "latent.json"]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(range(1, len(projection.losses) + 1), projection.losses)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel(f"{projection.loss} loss")
    axis.set_title(f"projection in {projection.space}")
    figure.tight_layout()
    figure.savefig(out / "loss.png", dpi=100)
    plt.close(figure)
    files.append(out / "loss.png")
    return files
