"""Nested values (dicts, lists, tuples, numbers, text and tensors) as one safetensors file:
the tensors as its tensors, everything else as JSON in its metadata, with the record's
kind and version. No pickle is involved, so reading one runs nothing, and safetensors
checks every tensor's extent against the file, so it takes the memory the file's tensors
take; the JSON is bounded by safetensors' header limit (100 MB).

JSON has no tuples, no dicts with other than text keys, and no tensors, so those are
written as ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` and
``{"$tensor": name}``; a dict any of whose keys starts with ``$`` is written as a
``$dict`` too, so a value never reads back as something else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from fastpgan.atomic import atomic_write
from fastpgan.files.kinds import RefusedFileError

METADATA_KEY = "fastpgan"
"""The safetensors metadata entry holding {"kind", "version", "tree"}."""


def write_tree(path: str | os.PathLike, value: Any, *, kind: str, version: int) -> Path:
    """Writes ``value`` to ``path`` atomically as a ``kind`` record of ``version``."""
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    tree = _encode(value, "", tensors)
    metadata = {METADATA_KEY: json.dumps({"kind": kind, "version": version, "tree": tree})}
    size = sum(t.numel() * t.element_size() for t in tensors.values()) + len(metadata[METADATA_KEY])
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata),
                        size=size)


def _encode(value: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        key = name or "tensor"
        while key in tensors:
            key += "'"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$tensor": key}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, f"{name}/{k}".lstrip("/"), tensors) for k, v in value.items()}
        return {"$dict": [[_encode(k, f"{name}/key", tensors),
                           _encode(v, f"{name}/{k}".lstrip("/"), tensors)]
                          for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{name}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{name or 'the value'}: a {type(value).__name__} has no record form")


def record_kind(path: str | os.PathLike) -> tuple[str, int] | None:
    """(kind, version) of the fastpgan record at ``path`` (a safetensors file), read from
    its header alone; None for a safetensors file that is not a fastpgan record."""
    header = _header(Path(path))
    return None if header is None else (header["kind"], header["version"])


def read_tree(path: str | os.PathLike, kind: str) -> tuple[int, Any]:
    """(version, value) of the ``kind`` record at ``path``.

    Raises RefusedFileError naming the file when it is not a fastpgan record of that kind
    or its contents are not what :func:`write_tree` writes.
    """
    from safetensors.torch import load_file

    path = Path(path)
    header = _header(path)
    if header is None or header["kind"] != kind:
        found = "a safetensors file, not a fastpgan record" if header is None else \
            f"a fastpgan {header['kind']}"
        raise RefusedFileError(f"{path} is {found}, not a {kind}")
    try:
        tensors = load_file(str(path))
        return header["version"], _decode(header["tree"], tensors)
    except RecursionError:
        raise RefusedFileError(f"{path}: the {kind} nests too deeply to read") from None
    except (ValueError, TypeError, KeyError, OSError) as exc:
        if isinstance(exc, RefusedFileError):
            raise RefusedFileError(f"{path}: {exc}") from None
        raise RefusedFileError(f"{path}: cannot read the {kind} ({exc})") from None


def _header(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if METADATA_KEY not in metadata:
            return None
        header = json.loads(metadata[METADATA_KEY])
    except RecursionError:
        raise RefusedFileError(f"{path}: its header nests too deeply to read") from None
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise RefusedFileError(f"{path}: not a readable safetensors file ({exc}); it may be "
                               "truncated") from None
    if not (isinstance(header, dict) and isinstance(header.get("kind"), str)
            and isinstance(header.get("version"), int) and "tree" in header):
        raise RefusedFileError(f"{path}: its fastpgan header lacks a kind, a version or "
                               "contents")
    return header


def _decode(tree: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1 and "$tensor" in tree:
        name = tree["$tensor"]
        if not isinstance(name, str) or name not in tensors:
            raise RefusedFileError(f"it refers to a tensor {str(name)[:80]!r} it does not hold")
        return tensors[name]
    if len(tree) == 1 and "$tuple" in tree and isinstance(tree["$tuple"], list):
        return tuple(_decode(v, tensors) for v in tree["$tuple"])
    if len(tree) == 1 and "$dict" in tree and isinstance(tree["$dict"], list):
        pairs = tree["$dict"]
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise RefusedFileError("a $dict entry that is not a [key, value] pair")
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in pairs}
    if any(k.startswith("$") for k in tree):
        raise RefusedFileError(f"an object with the reserved keys {sorted(tree)[:5]}")
    return {k: _decode(v, tensors) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, (Tensor, list, dict)):
        raise RefusedFileError(f"a dict key that is a {type(key).__name__}")
    return key


def read_tensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a safetensors file; RefusedFileError naming the file when it is not
    one or is damaged (safetensors checks every tensor's extent against the file)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise RefusedFileError(f"cannot read the weights file {path}: {exc}") from None


__all__ = ["METADATA_KEY", "read_tensors", "read_tree", "record_kind", "write_tree"]
