"""Image resolutions as every room checks them: powers of two from 4x4 up."""

from __future__ import annotations

import math


def check_resolution(name: str, resolution: int, maximum: int | None = None) -> int:
    """log2(resolution), after checking it is a power of two >= 4 (and <= maximum);
    ValueError naming ``name`` otherwise."""
    if (not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 4
            or resolution & (resolution - 1)):
        raise ValueError(f"{name}: resolution must be a power of two >= 4, got {resolution}")
    if maximum is not None and resolution > maximum:
        raise ValueError(f"{name}: resolution {resolution} is above the network's {maximum}")
    return int(math.log2(resolution))
