"""Which implementation an op runs, and the table of every fastpgan op.

Each op in :mod:`fastpgan.ops` registers an :class:`OpInfo` here when its module is
imported: its functions, and the *provider* of its fused path:

- ``"triton"``: Triton kernels, the module ``fastpgan.kernels.<kernels>``, imported at
  the first fused call (importing fastpgan imports no Triton);
- ``"extension"``: fastpgan's C++/CUDA extension (:mod:`fastpgan.extension`), compiled
  at first use, with a CPU path;
- ``"torch"``: a rewrite in ATen operations, which needs neither.

The doctor, the exports of :mod:`fastpgan.ops` and the tests read this one table.

Every op takes ``backend="auto" | "fused" | "reference"``; ``None`` means the process
default, set by :func:`set_backend` or the ``FASTPGAN_BACKEND`` environment variable
(read at import).

- ``auto``: the fused path for CUDA tensors when its provider can be loaded, the
  reference for everything else (silently for CPU tensors; with one warning, naming the
  reason, when the provider failed to load).
- ``fused``: always the fused path. Triton kernels on CPU tensors run in Triton's
  interpreter, which must be switched on with ``TRITON_INTERPRET=1`` before the first
  fused call; without it the call raises and says so. The extension and the ATen
  rewrites run on CPU tensors as they are.
- ``reference``: always plain PyTorch.
"""

from __future__ import annotations

import importlib
import os
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastpgan.extension import extension_status

BACKENDS = ("auto", "fused", "reference")
PROVIDERS = ("triton", "extension", "torch")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

_ENV_VAR = "FASTPGAN_BACKEND"


@dataclass(frozen=True)
class OpInfo:
    """One public op: its functions and how its fused path is built.

    Attributes:
        name: the public function's name, e.g. "bias_act".
        function: the op (takes ``backend=``).
        reference: its plain-PyTorch definition, differentiable to any order.
        provider: "triton", "extension" or "torch" (see the module docstring).
        kernels: the module of ``fastpgan.kernels`` holding its Triton kernels.
        library_ops: its ``torch.library`` operators, e.g. ("fastpgan::bias_act", ...).
        double_backward: how its backward is differentiated, in one line.
    """

    name: str
    function: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    provider: str
    library_ops: tuple[str, ...]
    double_backward: str
    kernels: str | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"{self.name}: provider must be one of {PROVIDERS}, got "
                             f"{self.provider!r}")
        if (self.provider == "triton") != (self.kernels is not None):
            raise ValueError(f"{self.name}: a kernels module goes with provider 'triton' only")


OPS: dict[str, OpInfo] = {}
"""Every registered op by name, in registration order."""


def register(info: OpInfo) -> OpInfo:
    """Adds an op to :data:`OPS`; returns it. ValueError if the name is taken."""
    if info.name in OPS:
        raise ValueError(f"an op named {info.name!r} is already registered")
    OPS[info.name] = info
    return info


def _check(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {BACKENDS}")
    return name


_default = _check(os.environ.get(_ENV_VAR, "auto"), f"environment variable {_ENV_VAR}")
_kernel_modules: dict[str, types.ModuleType] = {}
_kernel_errors: dict[str, str] = {}
_warned: set[str] = set()


def set_backend(name: str) -> None:
    """Sets the process-wide default backend: ``"auto"``, ``"fused"`` or ``"reference"``."""
    global _default
    _default = _check(name, "set_backend")


def get_backend() -> str:
    """The process-wide default backend."""
    return _default


def resolve_backend(op: str, backend: str | None) -> str:
    """``backend`` checked, or the process default when None."""
    return _default if backend is None else _check(backend, op)


def kernel_module(name: str) -> types.ModuleType | None:
    """``fastpgan.kernels.<name>``, imported once; None (and the reason kept, see
    :func:`kernels_error`) if it cannot be imported."""
    if name not in _kernel_modules and name not in _kernel_errors:
        try:
            _kernel_modules[name] = importlib.import_module(f"fastpgan.kernels.{name}")
        except Exception as exc:
            _kernel_errors[name] = f"{type(exc).__name__}: {exc}"
    return _kernel_modules.get(name)


def kernels_error(name: str) -> str | None:
    """Why ``fastpgan.kernels.<name>`` failed to import, or None."""
    return _kernel_errors.get(name)


def kernels_interpreted() -> bool:
    """Whether the Triton kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1)."""
    return importlib.import_module("fastpgan.kernels").INTERPRETED


def unavailable(op: str, x: torch.Tensor) -> str | None:
    """Why ``op``'s fused path cannot run on ``x``, or None when it can."""
    return _unavailable_on(op, "cuda" if x.is_cuda else x.device.type)


def _unavailable_on(op: str, device_type: str) -> str | None:
    info = OPS[op]
    on_cuda = device_type == "cuda"
    if info.provider == "triton":
        if kernel_module(info.kernels) is None:
            return (f"the Triton kernels failed to load ({kernels_error(info.kernels)}); "
                    "install triton or use backend='reference'")
        if not on_cuda and not kernels_interpreted():
            return (f"running the Triton kernels on a {device_type} tensor needs Triton's "
                    "interpreter: set TRITON_INTERPRET=1 in the environment before the first "
                    "fused call (it is read when fastpgan.kernels is imported), or move the "
                    "tensor to CUDA")
    elif info.provider == "extension":
        status = extension_status()
        reason = status.error or (None if status.with_cuda or not on_cuda else
                                  f"it was built without CUDA: {status.cuda_note}")
        if reason is not None:
            return (f"fastpgan's C++ extension is unavailable ({reason}); run `python -m "
                    "fastpgan.doctor` or use backend='reference'")
    return None


# torch.compile evaluates _unavailable_on once while tracing and keeps the answer, since it
# may import the kernels or build the extension, which cannot be traced. This is what
# torch.compiler.assume_constant_result does; the decorator would import dynamo (and with
# it Triton) when fastpgan is imported.
_unavailable_on._dynamo_marked_constant = True


def use_fused(op: str, x: torch.Tensor, backend: str | None) -> bool:
    """Resolves ``backend`` for one call of the registered ``op`` on ``x``: True for the
    fused path.

    Raises RuntimeError when ``"fused"`` is asked for and cannot run, naming the fix,
    and TypeError for a dtype the fused path does not take.
    """
    name = resolve_backend(op, backend)
    if name == "reference":
        return False
    if x.dtype not in FUSED_DTYPES:
        if name == "auto":
            return False
        raise TypeError(f"{op}: the fused backend takes float32, float16, bfloat16 or "
                        f"float64 tensors, got {x.dtype}")
    if name == "auto" and not x.is_cuda:
        return False
    reason = unavailable(op, x)
    if reason is None:
        return True
    if name == "auto":  # one warning per cause, not per op
        _warn_once(f"fastpgan: {reason}; the ops that need it use their PyTorch reference")
        return False
    raise RuntimeError(f"{op}: backend='fused' but {reason}")


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
