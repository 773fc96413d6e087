"""Builds and loads fastpgan's C++/CUDA extension (the sources in ``csrc/``).

The extension is looked for, in order:

1. ``fastpgan._ext``, compiled at install time by ``FASTPGAN_BUILD_EXT=1 pip install
   --no-build-isolation .``;
2. a just-in-time build with ``torch.utils.cpp_extension.load`` into
   ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions/<python>_<cuda>``), in a
   folder named after the torch version, so an upgrade rebuilds instead of loading a
   stale binary. A file lock keeps two processes from building at once.

Its sources are every ``.cpp`` file in ``csrc/`` and, when torch has CUDA and ``nvcc``
is found, every ``.cu`` file; otherwise the extension is CPU-only. A failed build is
remembered for the life of the process and its compiler output is kept in ``build.log``
in the build folder, whose path every message names.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import shutil
import sys
import types
from pathlib import Path

import torch


@dataclasses.dataclass
class ExtensionStatus:
    """What became of the extension in this process.

    Attributes:
        module: the loaded module, or None.
        origin: "installed" (built by pip) or the JIT build folder.
        with_cuda: whether the CUDA kernels were compiled in.
        error: why it could not be loaded, or None.
        cuda_note: why the CUDA kernels are missing, when they are.
    """

    module: types.ModuleType | None = None
    origin: str = ""
    with_cuda: bool = False
    error: str | None = None
    cuda_note: str | None = None


_status: ExtensionStatus | None = None


def source_dir() -> Path:
    """The folder holding the extension's C++ and CUDA sources."""
    return Path(importlib.import_module("fastpgan.csrc").__file__).parent


def sources_in(folder: Path, with_cuda: bool) -> list[Path]:
    """The extension's sources in ``folder``: its .cpp files, and its .cu files
    ``with_cuda`` (setup.py picks them the same way)."""
    return sorted(folder.glob("*.cpp")) + (sorted(folder.glob("*.cu")) if with_cuda else [])


def cuda_build_note() -> str | None:
    """Why the CUDA kernels will not be compiled here, or None when they will be."""
    from torch.utils.cpp_extension import CUDA_HOME

    if torch.version.cuda is None:
        return "this torch build has no CUDA"
    if CUDA_HOME is None:
        return "nvcc not found (set CUDA_HOME or put nvcc on PATH)"
    return None


def build_directory(with_cuda: bool) -> Path:
    """Where the JIT build goes: one folder per torch version and CPU/CUDA variant."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / module_name(with_cuda)


def module_name(with_cuda: bool) -> str:
    """The JIT module's name, e.g. ``fastpgan_ext_cpu_torch2_13_0``."""
    version = re.sub(r"\W", "_", torch.__version__.split("+")[0])
    return f"fastpgan_ext_{'cuda' if with_cuda else 'cpu'}_torch{version}"


def load_extension() -> types.ModuleType | None:
    """The extension module, building it on the first call; None if it cannot be had.

    Never raises and never retries a failed build in the same process: see
    :func:`extension_status` for the reason.
    """
    return extension_status().module


def extension_status() -> ExtensionStatus:
    """Loads the extension once per process and says how that went."""
    global _status
    if _status is None:
        _status = _load()
    return _status


def _load() -> ExtensionStatus:
    try:
        module = importlib.import_module("fastpgan._ext")
    except ImportError:
        pass
    else:
        return ExtensionStatus(module, "installed", module.WITH_CUDA,
                               cuda_note=None if module.WITH_CUDA else "installed without CUDA")
    cuda_note = cuda_build_note()
    with_cuda = cuda_note is None
    folder = build_directory(with_cuda)
    missing = _missing_tool()
    if missing:
        return ExtensionStatus(origin=str(folder), error=missing, cuda_note=cuda_note)
    try:
        module = _jit_build(folder, with_cuda)
    except Exception as exc:
        log = folder / "build.log"
        folder.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
        return ExtensionStatus(origin=str(folder), cuda_note=cuda_note,
                               error=f"the C++ extension failed to build; compiler output in "
                                     f"{log}")
    return ExtensionStatus(module, str(folder), with_cuda, cuda_note=cuda_note)


def _missing_tool() -> str | None:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler: {compiler!r} is not on PATH (install g++ or set CXX)"
    if shutil.which("ninja") is None:
        return "ninja is not installed (pip install ninja)"
    return None


def _jit_build(folder: Path, with_cuda: bool) -> types.ModuleType:
    from filelock import FileLock
    from torch.utils.cpp_extension import load

    folder.mkdir(parents=True, exist_ok=True)
    src = source_dir()
    sources = [str(path) for path in sources_in(src, with_cuda)]
    name = module_name(with_cuda)
    with FileLock(str(folder / "fastpgan.lock")):
        if not any(folder.glob(f"{name}*.so")) and not any(folder.glob(f"{name}*.pyd")):
            print(f"fastpgan: compiling the C++ extension{' with CUDA' if with_cuda else ''} "
                  f"into {folder} (first use only; a minute or two)...", file=sys.stderr,
                  flush=True)
        # torch's own build lock: under ours, one left here is from a killed build, and
        # torch would wait for it forever.
        (folder / "lock").unlink(missing_ok=True)
        flags = ["-O3", "-DFASTPGAN_WITH_CUDA"] if with_cuda else ["-O3"]
        return load(name, sources, extra_cflags=flags, extra_cuda_cflags=["-O3"],
                    extra_include_paths=[str(src)], build_directory=str(folder),
                    with_cuda=with_cuda, verbose=False)
