"""JSON files that come with networks (``config.json``, ``source.json``), read within a
size limit and without recursing past Python's stack."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastpgan.files.kinds import RefusedFileError

MAX_JSON_BYTES = 1 << 20
"""The largest JSON file read (a network's config is a few hundred bytes)."""


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value in ``path`` (``what`` it is, for messages); RefusedFileError naming
    the file when it is missing, larger than :data:`MAX_JSON_BYTES`, or not JSON."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise RefusedFileError(f"cannot read the {what} {path}: {size} bytes, more than "
                                   f"a {what} takes ({MAX_JSON_BYTES})")
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RefusedFileError(f"cannot read the {what} {path}: there is none") from None
    except RecursionError:
        raise RefusedFileError(f"cannot read the {what} {path}: it nests too deeply to "
                               "read") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, RefusedFileError):
            raise
        raise RefusedFileError(f"cannot read the {what} {path}: {exc}") from None
