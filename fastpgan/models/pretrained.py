"""save_pretrained / from_pretrained: a network as safetensors weights plus a JSON config.

A saved folder holds ``config.json`` (the class name and its constructor arguments) and
``model.safetensors`` (parameters and persistent buffers). ``from_pretrained`` also takes
a published pickle file (:mod:`fastpgan.models.published` registers its reader here).
Loading needs only fastpgan's models, not the training code. Both files are written
atomically (a temporary file, then a rename), so an interrupted save never leaves a
half-written file behind.

Whatever a file claims about a network (its config, a pickle's recorded arguments) is
built first on the meta device, where building allocates nothing, and compared with the
tensors the file holds (:func:`build_checked`): a claim of a network far larger than its
weights is refused before any memory is taken.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastpgan.atomic import atomic_write
from fastpgan.files import RefusedFileError, identify, read_json, read_tensors
from fastpgan.files.kinds import Kind

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

_classes: dict[str, type[Pretrained]] = {}
_file_readers: list[Callable[[type[Pretrained], Path], Pretrained]] = []


def register_file_reader(reader: Callable[[type[Pretrained], Path], Pretrained]) -> None:
    """Makes ``from_pretrained(file)`` return ``reader(cls, file)`` for a path that is a
    file (a published pickle) rather than a saved folder."""
    _file_readers.append(reader)


class Pretrained(nn.Module):
    """Base of fastpgan's networks: records the constructor's arguments as ``config``."""

    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _classes[cls.__name__] = cls
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if type(self) is cls:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                self.config = {k: v for k, v in bound.arguments.items() if k != "self"}

        cls.__init__ = recording_init

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Writes config.json and model.safetensors into the folder ``path`` (created)."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"class": type(self).__name__, "config": self.config}
        atomic_write(folder / CONFIG_FILE,
                      lambda f: f.write_text(json.dumps(config, indent=1), encoding="utf-8"))
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        atomic_write(folder / WEIGHTS_FILE, lambda f: save_file(tensors, str(f)))
        return folder

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> Pretrained:
        """The network saved in the folder ``path``, on the CPU, in float32.

        ``overrides`` replace saved constructor arguments (e.g. ``backend="reference"``).
        Called on :class:`Pretrained` itself, it builds whichever class was saved.
        ``path`` may also be the folder's ``model.safetensors`` or a published pickle
        (NVlabs StyleGAN2-ADA / StyleGAN3, official ProGAN) under any name: its D for a
        discriminator class, its G_ema otherwise (``overrides`` do not apply).
        Raises ValueError naming the file or the keys and shapes that do not fit.
        """
        folder = Path(path)
        if not folder.exists():
            raise RefusedFileError(f"cannot read the model config {folder / CONFIG_FILE}: "
                                   "no such file or folder")
        kind = identify(folder)
        if kind is Kind.SAFETENSORS and folder.name == WEIGHTS_FILE:
            folder, kind = folder.parent, Kind.FOLDER
        if kind is not Kind.FOLDER:
            if overrides:
                raise ValueError(f"{folder}: overrides apply to saved folders, not pickles; "
                                 "convert it first (fastpgan convert)")
            if not _file_readers:
                raise RefusedFileError(f"{folder} is {kind.value}, not a saved network folder")
            return _file_readers[0](cls, folder)
        saved = read_json(folder / CONFIG_FILE, "model config")
        if not (isinstance(saved, dict) and isinstance(saved.get("class"), str)
                and isinstance(saved.get("config"), dict)):
            raise RefusedFileError(f"{folder / CONFIG_FILE}: not a fastpgan model config (a "
                                   "class name and its arguments)")
        target = _classes.get(saved["class"])
        if target is None or not issubclass(target, cls):
            raise ValueError(f"{folder} holds a {saved['class'][:80]}, not a {cls.__name__}")
        return build_checked(target, {**saved["config"], **overrides},
                             read_tensors(folder / WEIGHTS_FILE), str(folder))


def build_checked(cls: type[Pretrained], arguments: Mapping[str, Any],
                  state: Mapping[str, Tensor], where: str) -> Pretrained:
    """``cls(**arguments)`` holding ``state``.

    It is built first on the meta device, where building allocates nothing, with its
    parameters and buffers counted as they are registered (a claim of a million layers
    stops after as many as ``state`` holds), and compared with ``state``; only a network
    the tensors present fill is built for real. Raises ValueError naming ``where`` and
    what does not fit.
    """
    limit = len(state) + 64  # besides the saved tensors: non-persistent buffers

    def count(*_: Any) -> None:
        nonlocal limit
        limit -= 1
        if limit < 0:
            raise _TooManyTensorsError

    hooks = [torch.nn.modules.module.register_module_parameter_registration_hook(count),
             torch.nn.modules.module.register_module_buffer_registration_hook(count)]
    try:
        with torch.device("meta"):
            probe = cls(**arguments)
    except _TooManyTensorsError:
        raise ValueError(f"{where}: its arguments describe a network with more tensors than "
                         f"the {len(state)} it holds") from None
    except (TypeError, ValueError, OverflowError, RuntimeError, ZeroDivisionError) as exc:
        raise ValueError(f"{where}: cannot build a {cls.__name__} from its recorded "
                         f"arguments ({exc})") from None
    finally:
        for hook in hooks:
            hook.remove()
    problems = state_problems(probe, state)
    if problems:
        raise ValueError(f"{where}: cannot load weights into {cls.__name__}: {problems}")
    model = cls(**arguments)
    load_checked(model, state)
    return model


class _TooManyTensorsError(Exception):
    """Raised inside a meta-device build that registers more tensors than a file holds."""


def state_problems(module: nn.Module, state: Mapping[str, Tensor]) -> str:
    """What keeps ``state`` from loading into ``module``: its missing keys, unexpected
    keys and keys whose shape differs (saved vs expected), or "" when it fits."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: saved {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes [{'; '.join(_first(shapes))}]")
    return ", ".join(problems)


def _first(items: list[str], shown: int = 8) -> list[str]:
    """At most ``shown`` of ``items``, then how many more there are."""
    return items if len(items) <= shown else [*items[:shown], f"... {len(items) - shown} more"]


def load_checked(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """module.load_state_dict(state), with an error that lists every mismatch.

    Raises ValueError naming the missing keys, the unexpected keys, and each key whose
    shape differs (saved vs expected).
    """
    problems = state_problems(module, state)
    if problems:
        raise ValueError(f"cannot load weights into {type(module).__name__}: {problems}")
    with torch.no_grad():
        module.load_state_dict(state)
