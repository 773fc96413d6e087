"""``fastpgan-dataset SRC OUT --resolution R``: an image folder or zip to a training cache.

Every JPEG, PNG, WebP or BMP image is center-cropped to a square, resized to R with a
Lanczos filter and stored with its 2x2-averaged lower resolutions down to 4x4, one
memory-mappable uint8 array per resolution plus manifest.json. Unreadable and too-small
images are skipped and listed in the manifest and here. Class labels, from NVlabs'
dataset.json or one subfolder per class, are kept with the images.
"""

from __future__ import annotations

import sys

from fastpgan.atomic import DiskFullError
from fastpgan.cli.options import PATH, RESOLUTION, Parser, integer
from fastpgan.data.cache import ImageCache, prepare_dataset


def build_parser() -> Parser:
    """The fastpgan-dataset argument parser."""
    p = Parser(prog="fastpgan-dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=PATH, help="image folder (searched recursively) or zip file")
    p.add_argument("out", type=PATH, help="cache folder to create")
    p.add_argument("--resolution", type=RESOLUTION, required=True,
                   help="a power of two, e.g. 256")
    p.add_argument("--channels", type=int, default=3, choices=[1, 3], help="RGB or grayscale")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    p.add_argument("--max-image-pixels", type=integer(1, 2 ** 40), default=None,
                   help="raise Pillow's decompression-bomb limit (about 179 million pixels) "
                        "for genuinely huge images; larger images are skipped and listed")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs fastpgan-dataset; returns the exit status."""
    args = build_parser().parse_or_status(argv)
    if isinstance(args, int):
        return args
    try:
        folder = prepare_dataset(args.src, args.out, args.resolution, channels=args.channels,
                                 overwrite=args.overwrite,
                                 max_image_pixels=args.max_image_pixels)
    except (ValueError, FileExistsError, DiskFullError) as exc:
        print(f"fastpgan-dataset: error: {exc}", file=sys.stderr)
        return 2
    cache = ImageCache.open(folder)
    for item in cache.skipped:
        print(f"skipped {item['file']}: {item['reason']}", file=sys.stderr)
    labels = (f", {cache.labels.count} classes from {cache.labels.origin}" if cache.labels
              else "")
    print(f"fastpgan-dataset: {cache.count} images at 4..{cache.resolution}px in {folder}"
          f" ({len(cache.skipped)} skipped{labels})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
