"""Which implementation an op runs, and the table of every fastpgan op.

Each op in :mod:`fastpgan.ops` registers an :class:`OpInfo` here when its module is
imported: its functions, and the *provider* of its fused path:

- ``"triton"``: Triton kernels, the module ``fastpgan.kernels.<kernels>``, imported at
  the first fused call (importing fastpgan imports no Triton);
- ``"extension"``: fastpgan's C++/CUDA extension (:mod:`fastpgan.extension`), compiled
  at first use, with a CPU path;
- ``"torch"``: a rewrite in ATen operations, which needs neither.

The doctor, the exports of :mod:`fastpgan.ops`, the tests and the GPU call read this one
table: each op declares there, beside its functions, the sample inputs, bad call,
half-precision case and test files the registry-driven suites use (:class:`OpTests`).

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
import random
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fastpgan.extension import extension_status

BACKENDS = ("auto", "fused", "reference")
PROVIDERS = ("triton", "extension", "torch")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

_ENV_VAR = "FASTPGAN_BACKEND"


NONFINITE_RULES = ("exact", "nan-spreads", "infinities-fold", "spreads")
"""How an op's non-finite outputs compare with its reference's: "exact" (NaN and each
infinity at the same places), "nan-spreads" (a non-finite input may make more gradients
NaN than the reference does, never fewer), "infinities-fold" (an infinity
meets weights folded into one kernel: non-finite at the same places, of other kinds),
"spreads" (a filter whose taps the fused path groups otherwise: the value non-finite
wherever the reference's is, of any kind, perhaps at a few places more, where a weight
of zero meets the non-finite input; the gradient as "nan-spreads")."""


@dataclass(frozen=True)
class OpSample:
    """One call of an op on inputs drawn at random, for the registry-driven tests.

    Attributes:
        op: the op with its other arguments bound; takes x and ``backend=``.
        reference: its reference with the same arguments, in x's dtype; takes x.
        x: the activation (any layout: NCHW, channels_last or a strided view).
        nonfinite: how its non-finite outputs compare (:data:`NONFINITE_RULES`).
    """

    op: Callable[..., torch.Tensor]
    reference: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor
    nonfinite: str = "exact"


@dataclass(frozen=True)
class HalfPrecisionCase:
    """Inputs with a degenerate part (a zero vector, identical samples, a constant map)
    beside random values, on which the reference in float16 and bfloat16 must stay finite
    and near float64. ``function`` takes ``inputs``; the first is the activation (cast to
    half precision), the others stay float32. ``weight_gradients`` lists the inputs whose
    gradient is a half-precision convolution's weight gradient summed further, held to a
    convolution's own bound rather than the op's."""

    function: Callable[..., torch.Tensor]
    inputs: tuple[torch.Tensor, ...]
    weight_gradients: tuple[int, ...] = ()


@dataclass(frozen=True)
class OpTests:
    """What the registry-driven test suites and the GPU call need of an op, declared in its
    op file next to its :class:`OpInfo` (as PyTorch's OpInfo declares sample inputs).

    Attributes:
        sample: draws one :class:`OpSample` from a ``random.Random``: shapes that are not
            powers of two, 1x1 maps, batch 1, every layout, the op's arguments varied.
        bad_call: calls the function it is given (the op or its reference) with an
            argument the op's checks refuse.
        bad_call_message: a regular expression the refusal's message must match.
        gpu_tests: the pytest files (or node ids) that test the op itself, which the GPU
            call runs on CUDA.
        half_precision: its degenerate case in half precision, or None when its only
            statistic is its bias_act epilogue's (tested there) or it has none.
    """

    sample: Callable[[random.Random], OpSample]
    bad_call: Callable[[Callable[..., torch.Tensor]], object]
    bad_call_message: str
    gpu_tests: tuple[str, ...]
    half_precision: Callable[[], HalfPrecisionCase] | None


@dataclass(frozen=True)
class OpInfo:
    """One public op: its functions, how its fused path is built, and how it is tested.

    Attributes:
        name: the public function's name, e.g. "bias_act".
        function: the op (takes ``backend=``).
        reference: its plain-PyTorch definition, differentiable to any order.
        provider: "triton", "extension" or "torch" (see the module docstring).
        kernels: the module of ``fastpgan.kernels`` holding its Triton kernels.
        library_ops: its ``torch.library`` operators, e.g. ("fastpgan::bias_act", ...).
        double_backward: how its backward is differentiated, in one line.
        tests: its declarations for the registry-driven tests (:class:`OpTests`).
    """

    name: str
    function: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    provider: str
    library_ops: tuple[str, ...]
    double_backward: str
    kernels: str | None = None
    tests: OpTests = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"{self.name}: provider must be one of {PROVIDERS}, got "
                             f"{self.provider!r}")
        if (self.provider == "triton") != (self.kernels is not None):
            raise ValueError(f"{self.name}: a kernels module goes with provider 'triton' only")
        if not isinstance(self.tests, OpTests):
            raise TypeError(f"{self.name}: tests must be an OpTests, the declarations the "
                            f"registry-driven tests read; got {type(self.tests).__name__}")
        if not self.tests.gpu_tests:
            raise ValueError(f"{self.name}: OpTests.gpu_tests names no test file; the GPU "
                             "call would never test the op on CUDA")


OPS: dict[str, OpInfo] = {}
"""Every registered op by name, in registration order."""


def register(info: OpInfo) -> OpInfo:
    """Adds an op to :data:`OPS`; returns it. ValueError if the name is taken."""
    if info.name in OPS:
        raise ValueError(f"an op named {info.name!r} is already registered")
    OPS[info.name] = info
    return info


def unregister(name: str) -> None:
    """Removes the op ``name`` from :data:`OPS` (for tests that register one of their own)."""
    OPS.pop(name, None)


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
