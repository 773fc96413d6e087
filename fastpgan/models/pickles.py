"""Reading published network pickles without running anything from them.

NVlabs' StyleGAN2-ADA pickles hold ``torch_utils.persistence`` records (each network's
module source, class name and state) that ``legacy.load_network_pkl`` executes; the
official ProGAN pickles hold ``tfutil.Network`` objects whose unpickling ``exec``s their
build code and needs TensorFlow 1. :func:`read_pickle` reads both with an unpickler that
resolves only the names in :data:`ALLOWED`, each to a stand-in of fastpgan's own that
builds plain data: tensors (through ``torch.load(weights_only=True)`` for their
storages), numpy arrays and scalars decoded from their bytes (numpy is never called),
containers, :class:`PersistentRecord` and :class:`TFNetwork`. A pickle naming anything
else (``os.system``, ``builtins.eval``, an unknown class) is refused before that name is
looked up, with a :class:`RefusedPickleError` naming it; the module sources in the file stay
text.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class RefusedPickleError(ValueError):
    """A pickle that names a global fastpgan does not load, or is not one it can read."""


@dataclass
class PersistentRecord:
    """An NVlabs ``torch_utils.persistence`` object: its class name, its module's source
    (kept as text, never run) and its pickled state (an ``nn.Module``'s ``__dict__``)."""

    class_name: str
    module_src: str
    state: dict[str, Any]

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the network was built with."""
        return dict(self.state.get("_init_kwargs") or {})

    def named_tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and buffers of this module and its submodules by dotted name, as a
        state_dict has them (None entries left out)."""
        found = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    found[prefix + name] = as_tensor(value)
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                found.update(child.named_tensors(f"{prefix}{name}."))
            elif child is not None:
                raise RefusedPickleError(f"submodule {prefix}{name} is a {type(child).__name__}, "
                                    "not a persistent NVlabs module")
        return found


@dataclass
class TFNetwork:
    """An official ProGAN ``tfutil.Network``: its name, build function, keyword arguments
    and variables by TensorFlow name (the build module's source is dropped, never run)."""

    name: str = ""
    build_func_name: str = ""
    static_kwargs: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("version") != 2:
            raise RefusedPickleError("a tfutil.Network state without version 2: a Theano-era "
                                "ProGAN pickle; convert it with the official code's "
                                "misc.load_pkl first")
        self.name = state.get("name", "")
        self.build_func_name = state.get("build_func_name", "")
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.variables = {name: value for name, value in state.get("variables", [])}


class EasyDict(dict):
    """Stands in for ``dnnlib.EasyDict``: a plain dict."""

    def __setstate__(self, state: Any) -> None:
        pass


_NUMPY_TYPES = {"f2": torch.float16, "f4": torch.float32, "f8": torch.float64,
                "i1": torch.int8, "i2": torch.int16, "i4": torch.int32, "i8": torch.int64,
                "u1": torch.uint8, "b1": torch.bool}
_STRUCT = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q",
           "u1": "B", "b1": "?"}


class NumpyDtype:
    """Stands in for ``numpy.dtype``: the type code and byte order, nothing else."""

    def __init__(self, spec: Any, align: bool = False, copy: bool = False) -> None:
        code = str(spec).lstrip("<>=|")
        if code not in _NUMPY_TYPES:
            raise RefusedPickleError(f"a numpy array of dtype {spec!r}, which fastpgan does not "
                                f"load (it reads {sorted(_NUMPY_TYPES)})")
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: tuple) -> None:
        self.byteorder = state[1]
        if self.byteorder == ">":
            raise RefusedPickleError("a big-endian numpy array, which fastpgan does not load")


class NumpyArray:
    """Stands in for ``numpy.ndarray``: the array's bytes, decoded to a tensor by
    :func:`as_tensor`."""

    def __setstate__(self, state: tuple) -> None:
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, NumpyDtype) or not isinstance(data, (bytes, bytearray)):
            raise RefusedPickleError("a numpy array of Python objects, which fastpgan does "
                                     "not load")
        flat = torch.frombuffer(bytearray(data), dtype=_NUMPY_TYPES[dtype.code]) if data \
            else torch.empty(0, dtype=_NUMPY_TYPES[dtype.code])
        shape = tuple(int(s) for s in shape)
        self.tensor = (flat.reshape(shape[::-1]).permute(*reversed(range(len(shape))))
                       .contiguous() if fortran else flat.reshape(shape))


def _numpy_reconstruct(cls: type, shape: Any, typecode: Any) -> NumpyArray:
    if cls is not NumpyArray:
        raise RefusedPickleError(f"numpy's _reconstruct asked to build {cls!r}")
    return NumpyArray()


def _numpy_scalar(dtype: NumpyDtype, data: bytes = b"") -> float | int | bool:
    (value,) = struct.unpack("<" + _STRUCT[dtype.code], data)
    return value


def _load_storage(data: bytes) -> Any:
    """A tensor storage pickled as torch.save bytes, read by torch's weights-only loader."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage's deprecation
        return torch.load(io.BytesIO(data), weights_only=True)


def _persistent_record(meta: dict[str, Any]) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise RefusedPickleError("an NVlabs persistent record that is not a class instance")
    return PersistentRecord(str(meta.get("class_name")), str(meta.get("module_src", "")),
                            dict(meta.get("state") or {}))


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """copyreg._reconstructor (pickle protocols 0 and 1), for the stand-ins only."""
    if base is not object or cls not in _STAND_INS:
        raise RefusedPickleError(f"copyreg._reconstructor asked to build {cls!r}")
    return cls.__new__(cls)


_STAND_INS = (TFNetwork, EasyDict, NumpyArray)

ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch", "Size"): torch.Size,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("tfutil", "Network"): TFNetwork,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    **{(module, name): stand_in
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name, stand_in in (("_reconstruct", _numpy_reconstruct),
                              ("scalar", _numpy_scalar))},
    ("numpy", "ndarray"): NumpyArray,
    ("numpy", "dtype"): NumpyDtype,
}
"""Every global a pickle may name, and what fastpgan builds for it."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickleError(
                f"{self.source}: the pickle asks for the global {module}.{name}, which "
                "fastpgan does not load (only tensors, numpy arrays, containers and the "
                "network records of NVlabs' StyleGAN2-ADA and the official ProGAN); it was "
                "not unpickled, and nothing in it ran") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickleError(f"{self.source}: a pickle with persistent ids (a torch.save "
                            "file?); give fastpgan a network pickle or a safetensors folder")


def read_pickle(path: str | os.PathLike) -> Any:
    """The contents of the pickle at ``path``, built from :data:`ALLOWED` only.

    Raises RefusedPickleError naming a global outside the allow-list, and ValueError naming
    the file when it is unreadable or not a pickle.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, str(path)).load()
    except RefusedPickleError:
        raise
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error, RuntimeError) as exc:
        raise ValueError(f"cannot read the pickle {path}: {type(exc).__name__}: {exc}") from exc


def as_tensor(value: Any) -> Tensor:
    """A tensor for a value read from a pickle: a tensor as it is, an array's tensor, a
    number as a 0-d float32 tensor; RefusedPickleError otherwise."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, NumpyArray):
        return value.tensor
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value))
    raise RefusedPickleError(f"expected a tensor or an array, got a {type(value).__name__}")
