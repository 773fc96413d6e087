"""The multi-resolution image cache that training reads.

A cache is a folder with ``manifest.json`` and one raw uint8 array per resolution,
``r{res}.u8`` of shape (N, C, res, res), res = 4, 8, ..., R, memory-mapped at training
time so no resizing or decoding happens in the training loop. Lower resolutions are 2x2
box averages of the level above, computed in float32 (as ProGAN's dataset tool does).

``prepare_dataset`` fills a cache from a folder or zip of JPEG/PNG/WebP/BMP images
(Pillow): each is turned upright as its EXIF orientation says (a phone photo taken
sideways is stored sideways, as every image viewer knows), center-cropped to a square and
resized to R with a Lanczos filter; 16-bit grayscale images are scaled to 8 bits, not
clipped. Unreadable images, encrypted zip members and images smaller than R are skipped
and listed in the manifest's report, never a crash halfway; when nothing is left, the
error counts the reasons.
The manifest also holds a fingerprint of the source's contents (each image's name, size
and modification time; a zip member's size and CRC), so a cache of a folder that has
changed since is known to be stale. The cache is built in a temporary folder beside the
target and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastpgan.atomic import disk_full_error, is_disk_full, temporary_folder, writable_folder
from fastpgan.data.labels import read_class_labels
from fastpgan.sizes import check_resolution

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MANIFEST = "manifest.json"
SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""Pillow's modes of a 16-bit grayscale image (a 16-bit PNG opens as "I;16" or "I")."""


def level_name(resolution: int) -> str:
    """The file name of one resolution's array."""
    return f"r{resolution}.u8"


def pyramid(image: np.ndarray) -> Iterator[np.ndarray]:
    """uint8 (C, R, R) levels of a float32 (C, R, R) image in [0, 255]: R, R/2, ..., 4."""
    level = image
    while True:
        yield np.clip(np.rint(level), 0, 255).astype(np.uint8)
        if level.shape[-1] == 4:
            return
        level = 0.25 * (level[:, 0::2, 0::2] + level[:, 0::2, 1::2] + level[:, 1::2, 0::2]
                        + level[:, 1::2, 1::2])


def build_cache(images: Iterable[np.ndarray], out: str | os.PathLike, resolution: int,
                channels: int, *, source: str, skipped: list[dict] | None = None,
                overwrite: bool = False, fingerprint: str | None = None,
                labels: CacheLabels | None = None) -> Path:
    """Writes a cache from float32 (C, R, R) images in [0, 255]; returns its folder.

    The folder appears only when complete (built beside it, then renamed). An existing
    cache is replaced only with ``overwrite``. ``fingerprint`` (of the source's
    contents, :func:`source_fingerprint`) is kept in the manifest, and so are
    ``labels``, whose classes are filled in while ``images`` is consumed (one per
    image).
    """
    check_resolution("build_cache", resolution)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    writable_folder(out.parent, f"the cache {out}: its folder")
    tmp = temporary_folder(out)
    try:
        resolutions = [resolution >> k for k in range(int(np.log2(resolution)) - 1)]
        count = 0
        with contextlib.ExitStack() as stack:
            files = {res: stack.enter_context(open(tmp / level_name(res), "wb"))
                     for res in resolutions}
            for image in images:
                if image.shape != (channels, resolution, resolution):
                    raise ValueError(f"image {count} has shape {image.shape}, expected "
                                     f"{(channels, resolution, resolution)}")
                for res, level in zip(resolutions, pyramid(image), strict=True):
                    files[res].write(level.tobytes())
                count += 1
            for f in files.values():
                f.flush()
                os.fsync(f.fileno())
        if count == 0:
            raise ValueError(f"no usable images in {source}{skip_summary(skipped or [])}")
        manifest = {"source": source, "count": count, "channels": channels,
                    "resolution": resolution, "resolutions": sorted(resolutions),
                    "skipped": skipped or [], "fingerprint": fingerprint,
                    "labels": labels.manifest() if labels else None}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException as exc:
        written = sum(f.stat().st_size for f in tmp.iterdir()) if tmp.exists() else 0
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(out, written, None) from exc
        raise
    return out


@dataclass
class CacheLabels:
    """A cache's class labels: one class index per cached image, the number of classes,
    where they came from ("dataset.json" or "subfolders") and the classes' names (the
    subfolders') if they have them."""

    classes: list[int]
    count: int
    origin: str
    names: list[str] | None = None

    def manifest(self) -> dict:
        """As the manifest holds them."""
        return {"classes": self.classes, "count": self.count, "origin": self.origin,
                "names": self.names}

    @classmethod
    def from_manifest(cls, entry: dict, images: int) -> CacheLabels:
        """From the manifest; ValueError unless there is one class in range per image."""
        labels = cls(list(entry["classes"]), int(entry["count"]), str(entry["origin"]),
                     entry.get("names"))
        if len(labels.classes) != images or not all(
                type(c) is int and 0 <= c < labels.count for c in labels.classes):
            raise ValueError(f"its labels are not one class in [0, {labels.count}) for each "
                             f"of its {images} images")
        return labels


@dataclass
class ImageCache:
    """A cache folder opened for reading; ``level(res)`` memory-maps one resolution.

    ``fingerprint`` is that of the source's contents when it was cached (None for a
    cache of images given in memory, or one made before fingerprints were kept);
    ``labels`` its images' classes, or None.
    """

    path: Path
    count: int
    channels: int
    resolution: int
    skipped: list[dict]
    fingerprint: str | None = None
    labels: CacheLabels | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> ImageCache:
        """Reads the manifest; ValueError naming the folder if it is not a complete cache."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            count = int(manifest["count"])
            labels = manifest.get("labels")
            cache = cls(path, count, int(manifest["channels"]),
                        int(manifest["resolution"]), list(manifest.get("skipped", [])),
                        manifest.get("fingerprint"),
                        CacheLabels.from_manifest(labels, count) if labels else None)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a fastpgan image cache (no readable "
                             f"{MANIFEST}: {exc}); build one with fastpgan-dataset") from exc
        return cache

    def level(self, resolution: int) -> np.memmap:
        """(N, C, res, res) uint8, memory-mapped read-only."""
        if resolution > self.resolution or resolution < 4:
            raise ValueError(f"the cache {self.path} holds 4..{self.resolution}, not "
                             f"{resolution}")
        shape = (self.count, self.channels, resolution, resolution)
        file = self.path / level_name(resolution)
        expected = int(np.prod(shape))
        if not file.exists() or file.stat().st_size != expected:
            raise ValueError(f"{file} is missing or truncated (expected {expected} bytes); "
                             "rebuild the cache")
        return np.memmap(file, dtype=np.uint8, mode="r", shape=shape)


@dataclass(frozen=True)
class SourceImage:
    """One image file of a source: its name, how to open it, and what identifies its
    contents (size and modification time of a file; size and CRC of a zip member)."""

    name: str
    open: Callable
    identity: tuple[int, int]


def _sources(src: Path) -> list[SourceImage]:
    """Every image file in a folder (recursively) or a zip, in name order."""
    if src.is_dir():
        files = sorted(f for f in src.rglob("*")
                       if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        return [SourceImage(f.relative_to(src).as_posix(), lambda f=f: f.open("rb"),
                            (f.stat().st_size, f.stat().st_mtime_ns)) for f in files]
    if zipfile.is_zipfile(src):
        archive = zipfile.ZipFile(src)
        members = sorted((m for m in archive.infolist()
                          if Path(m.filename).suffix.lower() in IMAGE_SUFFIXES),
                         key=lambda m: m.filename)
        return [SourceImage(m.filename, _encrypted if m.flag_bits & 0x1
                            else lambda m=m: archive.open(m), (m.file_size, m.CRC))
                for m in members]
    raise ValueError(f"{src} is neither a folder nor a zip file of images")


def _encrypted() -> None:
    raise ValueError("an encrypted (password-protected) zip member, which fastpgan does not "
                     "decrypt")


def skip_summary(skipped: list[dict]) -> str:
    """": N skipped: K too small (first: NAME: REASON), ..." for a cache's skipped images,
    counted by the kind of reason (what comes before its first colon), or ""."""
    if not skipped:
        return ""
    kinds: dict[str, list[dict]] = {}
    for entry in skipped:
        kinds.setdefault(entry["reason"].split(":")[0].strip(), []).append(entry)
    counted = "; ".join(f"{len(entries)} {kind} (first: {entries[0]['file']}: "
                        f"{entries[0]['reason'][:120]})" for kind, entries in kinds.items())
    return f": {len(skipped)} skipped: {counted}"


def source_fingerprint(src: str | os.PathLike) -> str:
    """A digest of the images in the folder or zip ``src``: their names, and each file's
    size and modification time (a zip member's size and CRC). It changes when an image
    is added, removed, renamed or rewritten."""
    return _fingerprint(_sources(Path(src)))


def _fingerprint(entries: list[SourceImage]) -> str:
    return hashlib.sha1(json.dumps([[e.name, *e.identity] for e in entries]).encode()).hexdigest()


GREY_MODES = ("1", "L", "LA", "F", *SIXTEEN_BIT_GRAY)
"""Pillow's modes of a grey image."""


def source_channels(src: str | os.PathLike) -> int:
    """1 when every readable image in the folder or zip ``src`` is grey (by its Pillow
    mode, read from its header), else 3. Unreadable images do not count (caching skips
    them and says why)."""
    from PIL import Image

    modes = set()
    for entry in _sources(Path(src)):
        try:
            with entry.open() as f, Image.open(f) as image:
                modes.add(image.mode)
        except (*UNREADABLE, Image.DecompressionBombError):
            continue
        if modes - set(GREY_MODES):
            return 3
    return 1 if modes else 3


def load_square(opener: Callable, resolution: int, channels: int, *,
                upscale: bool = False) -> np.ndarray:
    """An image file as float32 (C, R, R) in [0, 255]: center crop, then Lanczos resize.

    Raises ValueError if the image is smaller than R (unless ``upscale``), OSError if
    Pillow cannot read it.
    """
    from PIL import Image, ImageOps

    with opener() as f, Image.open(f) as image:
        image.load()
        image = ImageOps.exif_transpose(image)  # upright, as its EXIF orientation says
        if image.mode in SIXTEEN_BIT_GRAY:  # Pillow's convert("L") would clip at 255
            gray = np.asarray(image, dtype=np.float32) / 257.0  # 65535 -> 255
            image = Image.fromarray(gray, mode="F")
        else:
            image = image.convert("RGB" if channels == 3 else "L")
    side = min(image.size)
    if side < resolution and not upscale:
        raise ValueError(f"too small: {image.size[0]}x{image.size[1]}, needs at least "
                         f"{resolution}x{resolution}")
    left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.clip(np.asarray(image, dtype=np.float32), 0, 255)  # Lanczos overshoots in F
    if array.ndim == 2:
        return np.repeat(array[None], channels, axis=0)
    return array.transpose(2, 0, 1)


UNREADABLE = (OSError, ValueError, SyntaxError, zipfile.BadZipFile, zlib.error)
"""What reading one image may raise: Pillow raises the first three, a damaged zip member
the last two (e.g. a bad CRC-32)."""


def prepare_dataset(src: str | os.PathLike, out: str | os.PathLike, resolution: int, *,
                    channels: int = 3, overwrite: bool = False, progress: bool = True,
                    max_image_pixels: int | None = None) -> Path:
    """Builds a cache at ``out`` from the images in the folder or zip ``src``.

    Skipped images (unreadable, damaged in the zip, too small, or larger than Pillow's
    decompression-bomb limit) are listed in the manifest with the reason.
    ``max_image_pixels`` raises that limit (Pillow's ``Image.MAX_IMAGE_PIXELS``, about
    179 million pixels by default) for genuinely huge images. Class labels, from a
    ``dataset.json`` or one subfolder per class (:mod:`fastpgan.data.labels`), are kept
    for the cached images. Raises ValueError if ``src`` is missing, holds no usable image
    or has a label file that is not one.
    """
    from PIL import Image

    src = Path(src)
    if not src.exists():
        raise ValueError(f"the data source {src} does not exist")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if max_image_pixels is not None and max_image_pixels < 1:
        raise ValueError(f"max_image_pixels must be positive, got {max_image_pixels}")
    entries = _sources(src)
    if not entries:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {src}")
    found = read_class_labels(src, [entry.name for entry in entries])
    labels = (CacheLabels([], found.count, found.origin, list(found.names or []) or None)
              if found else None)
    skipped: list[dict] = []

    def images() -> Iterator[np.ndarray]:
        from tqdm import tqdm

        for entry in tqdm(entries, desc=f"caching {src.name} at {resolution}px",
                          unit="img", disable=not progress):
            try:
                image = load_square(entry.open, resolution, channels)
            except Image.DecompressionBombError as exc:
                skipped.append({"file": entry.name, "reason": (
                    f"{exc} If the image is genuine, cache the data with fastpgan-dataset "
                    f"--max-image-pixels N (N above its pixel count) and train on that "
                    f"cache.")})
            except UNREADABLE as exc:
                skipped.append({"file": entry.name,
                                "reason": str(exc) or type(exc).__name__})
            else:
                if labels:
                    labels.classes.append(found.classes[entry.name])
                yield image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_image_pixels or limit
    try:
        return build_cache(images(), out, resolution, channels, source=str(src),
                           skipped=skipped, overwrite=overwrite,
                           fingerprint=_fingerprint(entries), labels=labels)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
