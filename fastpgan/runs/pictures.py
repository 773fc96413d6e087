"""Pictures a person looks at: image grids and looping animations of generated images."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image

from fastpgan.data.loader import to_uint8


def image_grid(images: torch.Tensor, columns: int | None = None) -> torch.Tensor:
    """(N, C, H, W) images in [-1, 1] as one uint8 (H * rows, W * columns, C) grid."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.zeros((rows * h, columns * w, c), dtype=torch.uint8)
    for i, image in enumerate(to_uint8(images)):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image.permute(1, 2, 0)
    return grid


def grid_picture(images: torch.Tensor, columns: int | None = None,
                 upscale_to: int = 0) -> Image.Image:
    """Images in [-1, 1] as one PIL image grid, nearest-upscaled to at least upscale_to px
    wide."""
    grid = image_grid(images, columns).numpy()
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if upscale_to and picture.width < upscale_to:
        factor = math.ceil(upscale_to / picture.width)
        picture = picture.resize((picture.width * factor, picture.height * factor),
                                 Image.Resampling.NEAREST)
    return picture


def save_grid(images: torch.Tensor, path: str | os.PathLike | BinaryIO,
              columns: int | None = None, upscale_to: int = 0) -> Path | BinaryIO:
    """Saves images in [-1, 1] as a PNG grid (nearest-upscaled to at least upscale_to px)
    to a path or a binary file; returns the path (as a Path) or the file."""
    path = Path(path) if isinstance(path, str | os.PathLike) else path
    grid_picture(images, columns, upscale_to).save(path, format="PNG")
    return path


def save_animation(frames: list[torch.Tensor], path: str | os.PathLike | BinaryIO, *,
                   columns: int = 1, upscale_to: int = 0,
                   frame_ms: int = 50) -> Path | BinaryIO:
    """Saves a looping GIF (to a path or a binary file); each frame is a batch of images
    in [-1, 1] laid out as a grid."""
    pictures = [grid_picture(frame, columns, upscale_to) for frame in frames]
    path = Path(path) if isinstance(path, str | os.PathLike) else path
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=frame_ms, loop=0)
    return path
