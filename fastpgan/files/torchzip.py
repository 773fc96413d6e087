"""torch.save zip files (fastpgan's checkpoints before version 2) and TorchScript
archives, checked before torch reads them.

A zip's members must be stored, not compressed, and fit in the file (torch.save writes
them so; a deflated member would let a small file unfold to gigabytes). A torch.save
file is read by torch's weights-only unpickler, which builds tensors and containers only;
the few other globals a checkpoint holds (numpy's RNG state) resolve to fastpgan's numpy
stand-ins, which decode bytes and call nothing. Its tensors must each be a distinct run
of their storage, adding up to no more than the file holds.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastpgan.files.kinds import Kind, RefusedFileError, identify
from fastpgan.files.pickles import NumpyArray, NumpyDtype, _numpy_reconstruct, _numpy_scalar

NUMPY_GLOBALS: dict[str, Any] = {
    "numpy.ndarray": NumpyArray, "numpy.dtype": NumpyDtype,
    **{f"{package}.multiarray.{name}": stand_in
       for package in ("numpy.core", "numpy._core")
       for name, stand_in in (("_reconstruct", _numpy_reconstruct), ("scalar", _numpy_scalar))},
}
"""The globals of numpy arrays and scalars (np.random.get_state() in a checkpoint), each
to its stand-in."""


MAX_CODE_BYTES = 64 << 20
"""What a TorchScript archive's compressed code may inflate to, in all (the Inception
file's: 35 KB)."""


def check_zip(path: Path, code_bytes: int = 0) -> None:
    """RefusedFileError unless every member of the zip at ``path`` is stored uncompressed
    and all of them fit in the file; TorchScript compresses its code (members under
    ``code/``), which may inflate to ``code_bytes`` in all."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise RefusedFileError(f"{path}: not a readable zip archive ({exc})") from None
    packed = [m for m in members if m.compress_type != zipfile.ZIP_STORED]
    if any("/code/" not in m.filename for m in packed) or (packed and not code_bytes):
        raise RefusedFileError(f"{path}: compressed members ({packed[0].filename}, ...), "
                               "which torch.save never writes and fastpgan does not unpack")
    if sum(m.file_size for m in packed) > code_bytes:
        raise RefusedFileError(f"{path}: its compressed code claims more than "
                               f"{code_bytes} bytes")
    if sum(m.file_size for m in members if m not in packed) > size:
        raise RefusedFileError(f"{path}: its members claim more bytes than the file holds")


def read_torch_zip(path: str | os.PathLike,
                   stand_ins: Mapping[str, Any] = NUMPY_GLOBALS) -> Any:
    """The value ``torch.save`` wrote to ``path``, read without running anything from it.

    Globals beyond torch's tensors and containers resolve only through ``stand_ins``
    (full name -> fastpgan's object). Raises RefusedFileError naming the file and what
    was refused: another kind of file, another global, or tensors the file cannot back.
    """
    path = Path(path)
    kind = identify(path)
    if kind is not Kind.TORCH_ZIP:
        raise RefusedFileError(f"{path} is {kind.value}, not a torch.save zip file")
    check_zip(path)
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise RefusedFileError(f"{path}: cannot read its pickle ({exc})") from None
    refused = sorted(unsafe - set(stand_ins))
    if refused:
        raise RefusedFileError(f"{path}: it asks for {', '.join(refused[:5])}, which fastpgan "
                               "does not load; it was not unpickled, and nothing in it ran")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(
                [(obj, name) for name, obj in stand_ins.items()]):
            warnings.simplefilter("ignore", UserWarning)
            value = torch.load(path, map_location="cpu", weights_only=True)
    except RefusedFileError as exc:
        raise RefusedFileError(f"{path}: {exc}") from None
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, EOFError,
            pickle.UnpicklingError, MemoryError, RecursionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RefusedFileError(f"{path}: cannot read it ({first[:300]})") from None
    _check_tensors(value, path)
    return value


def _check_tensors(value: Any, path: Path) -> None:
    """Each tensor within its storage, the tensors' bytes within the file's."""
    budget = path.stat().st_size
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, Tensor):
            nbytes = node.numel() * node.element_size()
            if nbytes > node.untyped_storage().nbytes():
                raise RefusedFileError(f"{path}: a tensor of shape {tuple(node.shape)} that "
                                       "repeats its storage's elements")
            budget -= nbytes
            if budget < 0:
                raise RefusedFileError(f"{path}: tensors that add up to more bytes than the "
                                       "file holds")
        elif isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def load_torchscript(path: str | os.PathLike,
                     device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript module in ``path`` on ``device``, once the file is found to be a
    TorchScript archive (its members stored and within the file): a pickle or anything
    else under that name is refused unread. TorchScript is a language of tensor
    operations, without Python's imports or calls. RefusedFileError (or torch's
    RuntimeError for a damaged archive) otherwise."""
    path = Path(path)
    kind = identify(path)
    if kind is not Kind.TORCHSCRIPT:
        raise RefusedFileError(f"{path} is {kind.value}, not a TorchScript archive")
    check_zip(path, MAX_CODE_BYTES)
    with warnings.catch_warnings():  # TorchScript is deprecated, but files come in it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device)
