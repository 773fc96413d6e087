"""The quality benchmark's data sets beside the demo faces, all offline, each written once
under the benchmark's work folder as PNGs with one subfolder per class (the labels
fastpgan-dataset reads).

A recipe names a data set by a placeholder in its arguments ("--data @digits"); the
benchmark puts the folder in its place, making it on first use, and measures a run against
the set's held-out images where it has them (Fashion-MNIST's test split), else against the
training set itself.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's dataset-fashion-mnist package puts the IDX files."""
FASHION_TRAIN, FASHION_TEST = 10_000, 2_000
"""The training images taken (the first of the 60,000) and the held-out ones measured
against (the first of the 10,000 test images)."""
IDX_LIMIT = 60_000 * 28 * 28
"""The most bytes an IDX file here may claim (Fashion-MNIST's training images)."""


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array (LeCun's MNIST format, gzip'd). ValueError when the file
    is not one, or claims more than IDX_LIMIT bytes or other than it holds: nothing beyond
    what it claims (within the limit) is read."""
    with gzip.open(path, "rb") as f:
        header = f.read(4)
        if len(header) != 4 or header[:3] != b"\0\0\x08" or not 1 <= header[3] <= 3:
            raise ValueError(f"{path} is not an unsigned-byte IDX file")
        shape = tuple(int.from_bytes(f.read(4), "big") for _ in range(header[3]))
        size = int(np.prod(shape))
        if size > IDX_LIMIT:
            raise ValueError(f"{path} claims {size} bytes, over the {IDX_LIMIT} expected")
        data = f.read(size + 1)
    if len(data) != size:
        raise ValueError(f"{path} claims {size} bytes of {shape} but holds {len(data)}")
    return np.frombuffer(data, np.uint8).reshape(shape)


def write_classes(folder: Path, images: np.ndarray, labels: np.ndarray,
                  resolution: int) -> Path:
    """uint8 (N, H, W) grey images as PNGs under folder/<class>/, Lanczos-resized to
    resolution; built aside, then renamed into place, so an interrupted build is never
    taken for a finished one."""
    from PIL import Image

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for index, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        (partial / str(label)).mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if picture.size != (resolution, resolution):
            picture = picture.resize((resolution, resolution), Image.Resampling.LANCZOS)
        picture.save(partial / str(label) / f"{index:05d}.png")
    partial.rename(folder)
    return folder


def digits_folder(work: Path) -> Path:
    """scikit-learn's 1797 8x8 digits at 16x16 (upsampled as the examples do)."""
    folder = work / "data" / "digits"
    if not folder.exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from examples.faces import load_digits

        images, labels = load_digits(16)
        pixels = ((images[:, 0] + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        write_classes(folder, pixels, labels.numpy(), 16)
    return folder


def _fashion(work: Path, split: str, count: int) -> Path:
    folder = work / "data" / f"fashion-{split}"
    if not folder.exists():
        prefix = "train" if split == "train" else "t10k"
        if not FASHION_MNIST.exists():
            sys.exit("quality: Fashion-MNIST comes from Debian's package: "
                     "apt install dataset-fashion-mnist")
        images = read_idx(FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")[:count]
        labels = read_idx(FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")[:count]
        write_classes(folder, images, labels, 32)
    return folder


def fashion_train(work: Path) -> Path:
    """The first FASHION_TRAIN Fashion-MNIST training images at 32x32."""
    return _fashion(work, "train", FASHION_TRAIN)


def fashion_test(work: Path) -> Path:
    """The first FASHION_TEST Fashion-MNIST test images at 32x32 (never trained on)."""
    return _fashion(work, "test", FASHION_TEST)


DATA_SETS: dict[str, Callable[[Path], Path]] = {
    "@digits": digits_folder, "@fashion": fashion_train, "@fashion-test": fashion_test}
"""Each placeholder and what makes its folder under the work folder."""
HELD_OUT = {"@fashion": "@fashion-test"}
"""The images a data set is measured against, where not itself."""


def resolve(arguments: list[str], work: Path) -> list[str]:
    """A recipe's arguments with each data set's folder in place of its placeholder."""
    return [str(DATA_SETS[a](work)) if a in DATA_SETS else a for a in arguments]


def metrics_data(arguments: list[str], work: Path) -> list[str]:
    """The --data that ``fastpgan metrics`` measures a recipe's run against: the held-out
    images of its data set, else the data it trained on ([] for the demo faces)."""
    if "--data" not in arguments:
        return []
    data = arguments[arguments.index("--data") + 1]
    return ["--data", *resolve([HELD_OUT.get(data, data)], work)]
