"""save_pretrained / from_pretrained: a network as safetensors weights plus a JSON config.

A saved folder holds ``config.json`` (the class name and its constructor arguments) and
``model.safetensors`` (parameters and persistent buffers). ``from_pretrained`` also takes
a published pickle file (:mod:`fastpgan.models.published` registers its reader here).
Loading needs only fastpgan's models, not the training code. Both files are written
atomically (a temporary file, then a rename), so an interrupted save never leaves a
half-written file behind.
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
        ``path`` may also be a published pickle (NVlabs StyleGAN2-ADA, official ProGAN):
        its D for a discriminator class, its G_ema otherwise (``overrides`` do not apply).
        Raises ValueError naming the file or the keys and shapes that do not fit.
        """
        folder = Path(path)
        if folder.is_file() and _file_readers:
            if overrides:
                raise ValueError(f"{folder}: overrides apply to saved folders, not pickles; "
                                 "convert it first (fastpgan convert)")
            return _file_readers[0](cls, folder)
        try:
            saved = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            name, config = saved["class"], saved["config"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the model config {folder / CONFIG_FILE}: "
                             f"{exc}") from exc
        target = _classes.get(name)
        if target is None or not issubclass(target, cls):
            raise ValueError(f"{folder} holds a {name}, not a {cls.__name__}")
        model = target(**{**config, **overrides})
        load_checked(model, read_weights(folder / WEIGHTS_FILE))
        return model


def read_weights(file: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors in a safetensors file; ValueError naming the file if it is unreadable."""
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as exc:
        raise ValueError(f"cannot read the weights file {file}: {exc}") from exc


def load_checked(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """module.load_state_dict(state), with an error that lists every mismatch.

    Raises ValueError naming the missing keys, the unexpected keys, and each key whose
    shape differs (saved vs expected).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: saved {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"wrong shapes [{'; '.join(shapes)}]")
    if problems:
        raise ValueError(f"cannot load weights into {type(module).__name__}: "
                         + ", ".join(problems))
    with torch.no_grad():
        module.load_state_dict(state)

