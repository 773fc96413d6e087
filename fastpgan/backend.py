"""Which implementation an op runs: the fused kernels or the plain-PyTorch reference.

Every op in :mod:`fastpgan.ops` takes ``backend="auto" | "fused" | "reference"``;
``None`` means the process default, set by :func:`set_backend` or the
``FASTPGAN_BACKEND`` environment variable (read at import).

- ``auto``: the fused kernels for CUDA tensors when they can be loaded, the reference
  for everything else (silently for CPU tensors; with one warning when the kernels
  failed to load).
- ``fused``: always the kernels. On CPU tensors they run in Triton's interpreter, which
  must be switched on with ``TRITON_INTERPRET=1`` before the first fused call; without
  it the call raises and says so.
- ``reference``: always plain PyTorch.

The resampling convolutions (:mod:`fastpgan.ops.resample_conv`) run on the C++/CUDA
extension instead of Triton (:func:`use_extension`): ``fused`` works there on CPU
tensors too, with no interpreter.
"""

from __future__ import annotations

import importlib
import os
import types
import warnings

import torch

from fastpgan.extension import extension_status

BACKENDS = ("auto", "fused", "reference")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

_ENV_VAR = "FASTPGAN_BACKEND"


def _check(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {BACKENDS}")
    return name


_default = _check(os.environ.get(_ENV_VAR, "auto"), f"environment variable {_ENV_VAR}")
_kernels: types.ModuleType | None = None
_kernels_error: str | None = None
_warned: set[str] = set()


def set_backend(name: str) -> None:
    """Sets the process-wide default backend: ``"auto"``, ``"fused"`` or ``"reference"``."""
    global _default
    _default = _check(name, "set_backend")


def get_backend() -> str:
    """The process-wide default backend."""
    return _default


def load_kernels() -> types.ModuleType | None:
    """Imports ``fastpgan.kernels`` once; returns None (and keeps the reason) on failure."""
    global _kernels, _kernels_error
    if _kernels is None and _kernels_error is None:
        try:
            _kernels = importlib.import_module("fastpgan.kernels")
        except Exception as exc:
            _kernels_error = f"{type(exc).__name__}: {exc}"
    return _kernels


def kernels_error() -> str | None:
    """Why ``fastpgan.kernels`` failed to import, or None."""
    return _kernels_error


def resolve_backend(op: str, backend: str | None) -> str:
    """``backend`` checked, or the process default when None."""
    return _default if backend is None else _check(backend, op)


def use_fused(op: str, x: torch.Tensor, backend: str | None) -> bool:
    """Resolves ``backend`` for one call of ``op`` on ``x``: True for the fused path.

    Raises RuntimeError when ``"fused"`` is asked for and cannot run, naming the fix,
    and TypeError for a dtype the kernels do not take.
    """
    name = resolve_backend(op, backend)
    if name == "reference":
        return False
    if name == "auto":
        if not x.is_cuda or x.dtype not in FUSED_DTYPES:
            return False
        if load_kernels() is None:
            _warn_once(f"fastpgan: fused kernels unavailable ({_kernels_error}); "
                       "using the PyTorch reference ops")
            return False
        return True
    if x.dtype not in FUSED_DTYPES:
        raise TypeError(f"{op}: the fused backend takes float32, float16, bfloat16 or "
                        f"float64 tensors, got {x.dtype}")
    kernels = load_kernels()
    if kernels is None:
        raise RuntimeError(f"{op}: backend='fused' but the Triton kernels failed to load "
                           f"({_kernels_error}); install triton or use backend='reference'")
    if not x.is_cuda and not kernels.INTERPRETED:
        raise RuntimeError(
            f"{op}: backend='fused' on a {x.device.type} tensor needs Triton's interpreter: "
            "set TRITON_INTERPRET=1 in the environment before the first fused call "
            "(it is read when fastpgan.kernels is imported), or move the tensor to CUDA")
    return True


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def use_extension(op: str, x: torch.Tensor, backend: str | None) -> bool:
    """Like :func:`use_fused`, for the ops whose fused path is the C++/CUDA extension.

    ``auto`` takes the extension for CUDA tensors when it was built with CUDA, and warns
    once (with the reason and the build log's path) when it was not.
    """
    name = resolve_backend(op, backend)
    if name == "reference" or (name == "auto" and not x.is_cuda):
        return False
    if x.dtype not in FUSED_DTYPES:
        if name == "auto":
            return False
        raise TypeError(f"{op}: the fused backend takes float32, float16, bfloat16 or "
                        f"float64 tensors, got {x.dtype}")
    status = extension_status()
    reason = status.error or (None if status.with_cuda or not x.is_cuda else
                              f"it was built without CUDA: {status.cuda_note}")
    if reason is None:
        return True
    if name == "auto":
        _warn_once(f"fastpgan: C++ extension unavailable ({reason}); using the PyTorch "
                   "reference ops")
        return False
    raise RuntimeError(f"{op}: backend='fused' but fastpgan's C++ extension is unavailable "
                       f"({reason}); run `python -m fastpgan.doctor` or use "
                       "backend='reference'")
