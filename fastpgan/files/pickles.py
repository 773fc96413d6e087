"""Reading published network pickles without running anything from them, in memory
bounded by the file's size.

NVlabs' StyleGAN2-ADA / StyleGAN3 pickles hold ``torch_utils.persistence`` records (each
network's module source, class name and state) that ``legacy.load_network_pkl`` executes;
the official ProGAN pickles hold ``tfutil.Network`` objects whose unpickling ``exec``s
their build code and needs TensorFlow 1. :func:`read_pickle` reads both with an
unpickler that resolves only the names in :data:`ALLOWED`, each to a stand-in of
fastpgan's own that builds plain data: tensors (their storages parsed from torch's
pre-1.6 format here, never through ``torch.load``), numpy arrays and scalars decoded from
their bytes (numpy is never called), containers, :class:`PersistentRecord` and
:class:`TFNetwork`. A pickle naming anything else (``os.system``, ``builtins.eval``, an
unknown class) is refused before that name is looked up, with a :class:`RefusedPickleError`
naming it; the module sources in the file stay text.

What a file claims never sizes an allocation: every length is checked against the bytes
present, the tensors built from storages may not add up to more than the file holds, and
the structure read is walked once, without recursion, before anything else reads it, so
a small file that shares one list a million times over or nests records 20,000 deep is
refused in one line.
"""

from __future__ import annotations

import contextvars
import io
import math
import os
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastpgan.files.kinds import RefusedFileError

MAX_DEPTH = 200
"""How deeply containers and records may nest (NVlabs' deepest is about 30)."""
MIN_NODES = 100_000
"""The fewest containers and values a pickle may unfold to, however small the file; a
larger file may unfold to one per byte (sharing lets a few bytes refer to much more)."""


class RefusedPickleError(RefusedFileError):
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
        kwargs = self.state.get("_init_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise RefusedPickleError(f"an NVlabs {self.class_name} whose _init_kwargs is a "
                                     f"{type(kwargs).__name__}, not a dict")
        return dict(kwargs)

    def child(self, name: str) -> PersistentRecord | None:
        """The submodule ``name`` (dotted for deeper ones), or None."""
        record: Any = self
        for part in name.split("."):
            modules = record.state.get("_modules") or {}
            record = modules.get(part) if isinstance(modules, dict) else None
            if not isinstance(record, PersistentRecord):
                return None
        return record

    def named_records(self, prefix: str = "") -> Iterator[tuple[str, PersistentRecord]]:
        """This record and every submodule record, by dotted name ("" for this one)."""
        stack = [(prefix, self)]
        while stack:
            name, record = stack.pop()
            yield name, record
            for child_name, child in (record.state.get("_modules") or {}).items():
                if isinstance(child, PersistentRecord):
                    stack.append((f"{name}{'.' if name else ''}{child_name}", child))
                elif child is not None:
                    raise RefusedPickleError(
                        f"submodule {name}{'.' if name else ''}{child_name} is a "
                        f"{type(child).__name__}, not a persistent NVlabs module")

    def named_tensors(self) -> dict[str, Tensor]:
        """Parameters and buffers of this module and its submodules by dotted name, as a
        state_dict has them (None entries left out)."""
        found = {}
        for name, record in self.named_records():
            for group in ("_parameters", "_buffers"):
                for key, value in (record.state.get(group) or {}).items():
                    if value is not None:
                        found[f"{name}{'.' if name else ''}{key}"] = as_tensor(value)
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
        name, func = state.get("name", ""), state.get("build_func_name", "")
        kwargs, variables = state.get("static_kwargs") or {}, state.get("variables", [])
        if not (isinstance(name, str) and isinstance(func, str) and isinstance(kwargs, dict)
                and isinstance(variables, (list, tuple))
                and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                        for v in variables)):
            raise RefusedPickleError("a tfutil.Network state whose name, build function, "
                                     "arguments or variables are not what the official code "
                                     "writes")
        self.name, self.build_func_name = name, func
        self.static_kwargs = dict(kwargs)
        self.variables = dict(variables)


class EasyDict(dict):
    """Stands in for ``dnnlib.EasyDict``: a plain dict."""

    def __setstate__(self, state: Any) -> None:
        pass


_NUMPY_TYPES = {"f2": torch.float16, "f4": torch.float32, "f8": torch.float64,
                "i1": torch.int8, "i2": torch.int16, "i4": torch.int32, "i8": torch.int64,
                "u1": torch.uint8, "u2": torch.uint16, "u4": torch.uint32,
                "u8": torch.uint64, "b1": torch.bool}
_STRUCT = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q",
           "u1": "B", "u2": "H", "u4": "I", "u8": "Q", "b1": "?"}


class NumpyDtype:
    """Stands in for ``numpy.dtype``: the type code and byte order, nothing else."""

    def __init__(self, spec: Any, align: bool = False, copy: bool = False) -> None:
        code = str(spec).lstrip("<>=|") if isinstance(spec, str) else None
        if code not in _NUMPY_TYPES:
            raise RefusedPickleError(f"a numpy array of dtype {str(spec)[:40]!r}, which "
                                     f"fastpgan does not load (it reads {sorted(_NUMPY_TYPES)})")
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: tuple) -> None:
        self.byteorder = state[1] if isinstance(state, tuple) and len(state) > 1 else "="
        if self.byteorder == ">":
            raise RefusedPickleError("a big-endian numpy array, which fastpgan does not load")


class NumpyArray:
    """Stands in for ``numpy.ndarray``: the array's bytes, decoded to a tensor by
    :func:`as_tensor`."""

    def __setstate__(self, state: tuple) -> None:
        try:
            _, shape, dtype, fortran, data = state
        except (TypeError, ValueError):
            raise RefusedPickleError("a numpy array state that numpy does not write") from None
        if not isinstance(dtype, NumpyDtype) or not isinstance(data, (bytes, bytearray)):
            raise RefusedPickleError("a numpy array of Python objects, which fastpgan does "
                                     "not load")
        self.tensor = _array(data, dtype, shape, fortran=bool(fortran))


def _array(data: bytes | bytearray, dtype: NumpyDtype, shape: Any, fortran: bool) -> Tensor:
    """The tensor of a numpy array's raw bytes; its shape must account for them exactly."""
    shape = _dimensions(shape, "a numpy array's shape")
    itemsize = torch.empty((), dtype=_NUMPY_TYPES[dtype.code]).element_size()
    if math.prod(shape) * itemsize != len(data):
        raise RefusedPickleError(f"a numpy array of shape {shape} with {len(data)} bytes of "
                                 "data, which do not match")
    flat = (torch.frombuffer(bytearray(data), dtype=_NUMPY_TYPES[dtype.code]) if data
            else torch.empty(0, dtype=_NUMPY_TYPES[dtype.code]))
    if fortran:
        return flat.reshape(shape[::-1]).permute(*reversed(range(len(shape)))).contiguous()
    return flat.reshape(shape)


def _dimensions(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list, torch.Size)) or len(values) > 32 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise RefusedPickleError(f"{what} is not a list of sizes")
    return tuple(values)


def _numpy_reconstruct(cls: type, shape: Any, typecode: Any) -> NumpyArray:
    if cls is not NumpyArray:
        raise RefusedPickleError(f"numpy's _reconstruct asked to build {cls!r}")
    return NumpyArray()


def _numpy_frombuffer(buffer: Any, dtype: NumpyDtype, shape: Any, order: str) -> NumpyArray:
    """numpy's ``_frombuffer``: how protocol 5 pickles an array (Python >= 3.8's default
    for the official ProGAN's ``misc.save_pkl``)."""
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, NumpyDtype):
        raise RefusedPickleError("numpy's _frombuffer with something other than bytes and a "
                                 "dtype")
    array = NumpyArray()
    array.tensor = _array(buffer, dtype, shape, fortran=order == "F")
    return array


def _numpy_scalar(dtype: NumpyDtype, data: bytes = b"") -> float | int | bool:
    if not isinstance(dtype, NumpyDtype) or not isinstance(data, bytes):
        raise RefusedPickleError("a numpy scalar that is not a number")
    try:
        (value,) = struct.unpack("<" + _STRUCT[dtype.code], data)
    except struct.error:
        raise RefusedPickleError(f"a numpy scalar of dtype {dtype.code} with "
                                 f"{len(data)} bytes") from None
    return value


# ---------------------------------------------------------------- tensors

_BUDGET: contextvars.ContextVar[list[int]] = contextvars.ContextVar("tensor_bytes_left")
"""Bytes the tensors of the pickle being read may still take: the file's size to start."""

_STORAGE_TYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64,
                  "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                  "LongStorage": torch.int64, "IntStorage": torch.int32,
                  "ShortStorage": torch.int16, "CharStorage": torch.int8,
                  "ByteStorage": torch.uint8, "BoolStorage": torch.bool}
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StoragePickle(pickle.Unpickler):
    """One of the small pickles of torch's pre-1.6 format: the only globals are storage
    types (read as their dtypes) and a persistent id is returned as it is."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        raise RefusedPickleError(f"a tensor storage that asks for the global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return pid


def _load_storage(data: Any) -> Tensor:
    """``torch.storage._load_from_bytes``: one storage as ``Storage.__reduce__`` writes it,
    in torch's pre-1.6 format, parsed here (torch.load would allocate what the file claims):
    the magic number, the protocol, the system's sizes, the storage's description under a
    persistent id, the storage keys, then each storage as a little-endian int64 element
    count and its bytes. Returns the storage as a flat tensor."""
    if not isinstance(data, bytes):
        raise RefusedPickleError("a tensor storage that is not bytes")
    if data.startswith(b"PK\x03\x04"):
        raise RefusedPickleError("a tensor storage in torch's zip format, which NVlabs' "
                                 "pickles never hold")
    stream = io.BytesIO(data)
    try:
        magic, protocol, system = (_StoragePickle(stream).load() for _ in range(3))
        if (magic, protocol) != (_LEGACY_MAGIC_NUMBER, _LEGACY_PROTOCOL) or not isinstance(
                system, dict) or system.get("little_endian") is not True:
            raise RefusedPickleError("a tensor storage that is not little-endian torch "
                                     "serialization")
        description = _StoragePickle(stream).load()
        keys = _StoragePickle(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, struct.error, MemoryError) as exc:
        if isinstance(exc, RefusedPickleError):
            raise
        raise RefusedPickleError(f"a tensor storage that cannot be read ({exc})") from None
    if not (isinstance(description, tuple) and len(description) >= 5
            and description[0] == "storage" and isinstance(description[1], torch.dtype)
            and isinstance(description[4], int) and keys == [description[2]]):
        raise RefusedPickleError("a tensor storage whose description is not one storage")
    dtype, numel = description[1], description[4]
    count = struct.unpack("<q", stream.read(8).ljust(8, b"\0"))[0]
    itemsize = torch.empty((), dtype=dtype).element_size()
    left = len(data) - stream.tell()
    if count != numel or count < 0 or count * itemsize > left:
        raise RefusedPickleError(f"a tensor storage claiming {numel} elements of "
                                 f"{itemsize} bytes with {left} bytes present")
    start = stream.tell()
    chunk = bytearray(memoryview(data)[start:start + count * itemsize])  # one copy, writable
    return torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    hooks: Any = None, metadata: Any = None) -> Tensor:
    """``torch._utils._rebuild_tensor_v2``: a view of a storage, each of its elements a
    distinct one of the storage's, charged to the read's budget."""
    if not isinstance(storage, Tensor) or not isinstance(offset, int):
        raise RefusedPickleError("a tensor rebuilt from something other than a storage")
    size, stride = _dimensions(size, "a tensor's size"), _dimensions(stride, "its strides")
    numel = math.prod(size)
    if len(size) != len(stride) or offset < 0 or (numel and (
            offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
            >= storage.numel() or numel > storage.numel())):
        raise RefusedPickleError(f"a tensor of size {size} reaching outside its storage of "
                                 f"{storage.numel()} elements")
    _charge(numel * storage.element_size())
    return storage.as_strided(size, stride, offset)


def _charge(nbytes: int) -> None:
    budget = _BUDGET.get()
    budget[0] -= nbytes
    if budget[0] < 0:
        raise RefusedPickleError("tensors that add up to more bytes than the file holds "
                                 "(views repeating one storage)")


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None,
                       state: Any = None) -> Tensor:
    if not isinstance(data, Tensor):
        raise RefusedPickleError("a parameter rebuilt from something other than a tensor")
    return data


def _persistent_record(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise RefusedPickleError("an NVlabs persistent record that is not a class instance")
    name, source, state = meta.get("class_name"), meta.get("module_src", ""), meta.get("state")
    if not isinstance(name, str) or not isinstance(source, str) or not isinstance(state, dict):
        raise RefusedPickleError("an NVlabs persistent record whose class name, module "
                                 "source or state is not what NVlabs writes (text, text, "
                                 "a dict)")
    return PersistentRecord(name[:200], source, state)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """copyreg._reconstructor (pickle protocols 0 and 1), for the stand-ins only."""
    if base is not object or cls not in _STAND_INS:
        raise RefusedPickleError(f"copyreg._reconstructor asked to build {cls!r}")
    return cls.__new__(cls)


def _ordered_dict(*args: Any) -> OrderedDict:
    if args and not isinstance(args[0], (list, tuple, dict)):
        raise RefusedPickleError("an OrderedDict built from something other than pairs")
    return OrderedDict(*args)


def _size(values: Any = ()) -> torch.Size:
    return torch.Size(_dimensions(values, "a torch.Size"))


_STAND_INS = (TFNetwork, EasyDict, NumpyArray)

ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch", "Size"): _size,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("tfutil", "Network"): TFNetwork,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    **{(f"{package}.multiarray", name): stand_in
       for package in ("numpy.core", "numpy._core")
       for name, stand_in in (("_reconstruct", _numpy_reconstruct), ("scalar", _numpy_scalar))},
    **{(f"{package}.numeric", "_frombuffer"): _numpy_frombuffer
       for package in ("numpy.core", "numpy._core")},
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
        except (KeyError, TypeError):
            raise RefusedPickleError(
                f"{self.source}: the pickle asks for the global {str(module)[:100]}."
                f"{str(name)[:100]}, which fastpgan does not load (only tensors, numpy "
                "arrays, containers and the network records of NVlabs' StyleGAN2-ADA and "
                "StyleGAN3 and the official ProGAN); it was not unpickled, and nothing in "
                "it ran") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickleError(
            f"{self.source}: a pickle with persistent ids, as torch.save writes them; a "
            "training checkpoint goes to --resume or the generator commands, and a network "
            "to every command as a published pickle or a saved folder")


def read_pickle(path: str | os.PathLike) -> Any:
    """The contents of the pickle at ``path``, built from :data:`ALLOWED` only, in memory
    bounded by the file's size.

    Raises RefusedPickleError naming a global outside the allow-list or a claim the file
    cannot back, and ValueError naming the file when it is unreadable or not a pickle.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the pickle {path}: {exc.strerror or exc}") from None
    token = _BUDGET.set([len(data)])
    try:
        value = _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
        check_structure(value, max(MIN_NODES, len(data)), str(path))
        return value
    except RefusedPickleError as exc:
        message = str(exc)
        if message.startswith(str(path)):
            raise
        raise RefusedPickleError(f"{path}: {message}; it was refused, and nothing in it "
                                 "ran") from None
    except MemoryError:
        raise RefusedPickleError(f"{path}: the pickle claims a string or array longer than "
                                 "the file; it was refused, and nothing in it ran") from None
    except RecursionError:
        raise RefusedPickleError(f"{path}: the pickle nests too deeply to read") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, RuntimeError, OverflowError) as exc:
        raise ValueError(f"cannot read the pickle {path}: {type(exc).__name__}: "
                         f"{str(exc)[:300]}") from None
    finally:
        _BUDGET.reset(token)


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, PersistentRecord):
        return [value.state]
    if isinstance(value, TFNetwork):
        return [value.static_kwargs, value.variables]
    return []


def check_structure(value: Any, max_nodes: int, source: str) -> None:
    """RefusedPickleError when ``value`` unfolds to more than ``max_nodes`` containers and
    values (counting every path to a shared one), nests deeper than :data:`MAX_DEPTH` or
    contains itself. Walks without recursion, each object once."""
    unfolded: dict[int, int] = {}  # id -> its size unfolded, once finished
    open_ids: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_ids.discard(key)
            unfolded[key] = 1 + sum(unfolded[id(c)] for c in _children(node))
            if unfolded[key] > max_nodes:
                raise RefusedPickleError(f"{source}: the pickle unfolds to more than "
                                         f"{max_nodes} values (shared references repeated)")
            continue
        if key in unfolded:
            continue
        if key in open_ids:
            raise RefusedPickleError(f"{source}: the pickle contains itself (a container "
                                     "inside its own contents)")
        children = _children(node)
        if not children:
            unfolded[key] = 1
            continue
        if len(open_ids) >= MAX_DEPTH:
            raise RefusedPickleError(f"{source}: the pickle nests deeper than {MAX_DEPTH} "
                                     "levels")
        open_ids.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children)


def as_tensor(value: Any) -> Tensor:
    """A tensor for a value read from a pickle: a tensor as it is, an array's tensor, a
    number as a 0-d float32 tensor; RefusedPickleError otherwise."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, NumpyArray) and hasattr(value, "tensor"):
        return value.tensor
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value))
    raise RefusedPickleError(f"expected a tensor or an array, got a {type(value).__name__}")
