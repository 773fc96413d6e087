"""The bundled demo set: scikit-image's LFW face crops (installed by the ``demo`` extra)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from filelock import FileLock

from fastpgan.data.cache import (
    MANIFEST,
    ImageCache,
    build_cache,
    prepare_dataset,
    source_channels,
    source_fingerprint,
)

MAX_RESOLUTION = 32  # the crops are 25x25: larger would only be upsampling


def cache_root() -> Path:
    """Where fastpgan keeps data caches: $XDG_CACHE_HOME/fastpgan or ~/.cache/fastpgan."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastpgan"


def demo_faces_cache(resolution: int = 32) -> Path:
    """A cache of the 100 grayscale LFW faces bundled with scikit-image, at ``resolution``.

    Built once (Lanczos-resized from 25x25) under :func:`cache_root`.
    """
    if resolution > MAX_RESOLUTION:
        raise ValueError(f"the demo faces are 25x25 crops; train them at --resolution "
                         f"{MAX_RESOLUTION} or less, or give --data")
    folder = cache_root() / f"demo-lfw-faces-{resolution}"
    with building(folder):
        if not (folder / MANIFEST).exists():
            _cache_demo_faces(folder, resolution)
    return folder


def building(folder: Path) -> FileLock:
    """A lock beside a cache folder, held while it is checked and built, so that two
    processes opening the same data at once build it once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder) + ".lock")


def _cache_demo_faces(folder: Path, resolution: int) -> None:
    try:
        from skimage.data import lfw_subset
    except ImportError as exc:
        raise ValueError("the demo data needs scikit-image: pip install 'fastpgan[demo]' "
                           "(or pass --data)") from exc
    from PIL import Image

    faces = lfw_subset()[:100]  # the first 100 of the 200 crops are faces

    def images():
        for face in faces:
            picture = Image.fromarray(np.asarray(face * 255, dtype=np.float32), mode="F")
            picture = picture.resize((resolution, resolution), Image.Resampling.LANCZOS)
            yield np.clip(np.asarray(picture, dtype=np.float32), 0, 255)[None]

    build_cache(images(), folder, resolution, 1, source="skimage.data.lfw_subset()[:100]",
                overwrite=True)


def open_training_data(data: str | None, resolution: int, channels: int | None) -> Path:
    """The cache folder to train from: the demo faces, a cache, or a folder/zip cached once.

    An image folder or zip is cached under :func:`cache_root`, in a folder named after
    its absolute path, the resolution and the channels; the cache is built again, saying
    so on stderr, when the images in it have changed since (its fingerprint differs).
    With ``channels`` None, a folder whose images are all grey is cached as one channel,
    saying so on stderr, and any other as RGB.
    """
    if data is None:
        return demo_faces_cache(resolution)
    path = Path(data)
    if not path.exists():
        raise ValueError(f"--data {data}: no such file or folder")
    if (path / MANIFEST).exists():
        return path
    if channels is None:
        channels = source_channels(path)
        if channels == 1:
            print(f"fastpgan: every image in {path} is grey: training one channel "
                  "(--channels 3 trains RGB)", file=sys.stderr, flush=True)
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    folder = cache_root() / f"{path.stem}-{key}-{resolution}-c{channels}"
    with building(folder):
        if (folder / MANIFEST).exists():
            cached = ImageCache.open(folder)
            if cached.fingerprint == source_fingerprint(path):
                return folder
            print(f"fastpgan: the images in {path} have changed since they were cached in "
                  f"{folder} ({cached.count} usable then); caching them again",
                  file=sys.stderr, flush=True)
        prepare_dataset(path, folder, resolution, channels=channels, overwrite=True)
    return folder
