"""What a file is, decided from its first bytes (and a zip's member names), never from its
name: ``ffhq.pkl.1``, ``FFHQ.PKL`` and ``ffhq.pickle`` are all the pickle they hold."""

from __future__ import annotations

import enum
import os
import struct
import zipfile
from pathlib import Path


class RefusedFileError(ValueError):
    """A file fastpgan does not read: the message names the file, what it is or what in it
    was refused, and what to give instead. Nothing from the file ran."""


class Kind(enum.Enum):
    """The kinds of file fastpgan reads, each through its own reader in this room."""

    FOLDER = "a folder"
    SAFETENSORS = "a safetensors file"
    TORCH_ZIP = "a torch.save zip file"
    TORCHSCRIPT = "a TorchScript archive"
    PICKLE = "a pickle"
    TORCH_LEGACY = "a torch.save file in the pre-1.6 format"


LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
"""The pickled magic number (LONG1 0x1950a86a20f9469cfc6c) that opens torch's pre-1.6
serialization, after the PROTO opcode."""

_SIGNATURES = (  # (first bytes, what a person would call the file)
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ", "an xz archive"),
    (b"7z\xbc\xaf", "a 7z archive"), (b"\x89HDF", "an HDF5 file (Keras or TensorFlow weights)"),
    (b"\x93NUMPY", "a NumPy .npy array"), (b"ustar", "a tar archive"),
)


def identify(path: str | os.PathLike) -> Kind:
    """The kind of ``path``, read from its content.

    Raises RefusedFileError for a path that does not exist, cannot be read, is empty, or
    holds something none of fastpgan's readers takes (saying what it looks like).
    """
    path = Path(path)
    if path.is_dir():
        return Kind.FOLDER
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise RefusedFileError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise RefusedFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not head:
        raise RefusedFileError(f"{path} is empty (an interrupted download or copy?)")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    # before the pickle openings, which a header length can begin with (0x280 bytes: 80 02)
    if _is_safetensors(head, size):
        return Kind.SAFETENSORS
    if head[0] == 0x80 and 2 <= head[1] <= 5:  # the PROTO opcode of pickle protocols 2-5
        return Kind.TORCH_LEGACY if head[2:].startswith(LEGACY_MAGIC) else Kind.PICKLE
    if head[:1] in (b"(", b"}", b"]") and size > 1:  # how protocols 0 and 1 open
        return Kind.PICKLE
    raise RefusedFileError(f"{path} is {describe(head)}, not a network, checkpoint or "
                           "weights file fastpgan reads")


def describe(head: bytes) -> str:
    """What a person would call a file that starts with ``head``."""
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON or other text"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return f"a file of unknown format (it starts with {head[:8].hex(' ')})"


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: a little-endian u64 header length, then a JSON object."""
    if len(head) < 9:
        return False
    (header,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + header <= size


def _zip_kind(path: Path) -> Kind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise RefusedFileError(f"{path} starts as a zip archive but cannot be read as one "
                               f"({exc}); it may be truncated") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) == 1 and any(name.endswith("/data.pkl") for name in names):
        if any("/code/" in name for name in names) or any(
                name.endswith("/constants.pkl") for name in names):
            return Kind.TORCHSCRIPT
        return Kind.TORCH_ZIP
    raise RefusedFileError(f"{path} is a zip archive, but not one torch.save or TorchScript "
                           "writes (no single folder holding data.pkl)")
