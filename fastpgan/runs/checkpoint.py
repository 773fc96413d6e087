"""Training checkpoints: one typed record (:class:`Checkpoint`) that writes and reads itself,
written atomically (temporary file, fsync, rename), the last K kept.

A checkpoint holds everything a run needs to continue exactly: the networks, the EMA,
both optimizers, the gradient scaler, the objective's own state, the schedule position
and every RNG state. Its versions:

1. ``checkpoint-N.pt``: a ``torch.save`` pickle (fastpgan until December 2026). Read by
   torch's weights-only unpickler with numpy's globals resolved to stand-ins
   (:func:`fastpgan.files.read_torch_zip`), so a shared ``.pt`` cannot run code, and
   migrated by :meth:`Checkpoint.from_version_1`.
2. ``checkpoint-N.safetensors``: the tensors as safetensors, everything else as JSON in
   its metadata (:func:`fastpgan.files.write_tree`); no pickle at all.
3. the same file, with the settings of augmentation, per-network learning rates, mirror
   and class-conditional training in its config; version 2's are completed with what a
   run did before them (:data:`SETTINGS_ADDED_IN_VERSION_3`).

A file's version is read from its content, never its name.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastpgan.files import (
    Kind,
    RefusedFileError,
    as_tensor,
    identify,
    read_torch_zip,
    read_tree,
    record_kind,
    write_tree,
)

KIND = "training checkpoint"
VERSION = 3
VERSION_2_SETTINGS = frozenset({
    "data", "out", "arch", "resolution", "loss", "gp_lambda", "drift", "r1_gamma",
    "reg_interval", "pl_weight", "pl_interval", "log_every", "precision", "memory_format",
    "batch", "fade_kimg", "stable_kimg", "total_kimg", "seed", "device", "latent_dim",
    "fmap_base", "fmap_max", "channels", "conv_clamp", "mapping_layers", "init", "lr",
    "betas", "eps", "reset_optimizer", "checkpoint_activations", "compile", "cuda_graphs",
    "tensorboard", "ema_decay", "ema_kimg", "ema_rampup", "checkpoint_kimg",
    "keep_checkpoints", "sample_kimg", "swd_images", "fid_images", "inception", "workers",
    "progress"})
"""The settings a version 2 checkpoint's config holds."""
SETTINGS_ADDED_IN_VERSION_3 = {
    "g_lr": None, "d_lr": None,  # both networks at lr
    "mirror": True,  # the loader always flipped at random
    "aug": "none", "aug_p": None, "aug_target": None, "aug_kimg": None,  # no augmentation
    "cond": False, "classes": 0}  # unconditional
"""The settings version 3 added, each with what a run did before it existed."""
VERSION_3_SETTINGS = VERSION_2_SETTINGS | set(SETTINGS_ADDED_IN_VERSION_3)
"""The settings a version 3 checkpoint's config holds. A new training setting needs a new
version whose migration says what a run did before the setting existed (a test compares
this with the trainer's settings)."""
SETTINGS_BEFORE_THEY_EXISTED = {
    "gp_lambda": None, "drift": None, "r1_gamma": None,  # the losses' defaults, then as now
    "reg_interval": 1,  # the penalty every minibatch: lazy regularization came later
    "pl_weight": 0.0, "pl_interval": 4, "log_every": 10, "memory_format": "auto",
    "conv_clamp": None, "mapping_layers": 8, "init": None, "checkpoint_activations": False,
    "compile": False, "cuda_graphs": "off", "tensorboard": False, "ema_kimg": None,
    "ema_rampup": None, "fid_images": 0, "inception": None}
"""The settings added while version 1 was written, each with what a run did before it
existed: version 1 configs are completed with them."""
SUFFIX = ".safetensors"
PATTERNS = ("checkpoint-*.safetensors", "checkpoint-*.pt")
"""Checkpoint files in a run's checkpoints/ folder: this version's, then version 1's."""


@dataclass
class RngStates:
    """Every random number generator a run draws from: torch's CPU generator, Python's,
    NumPy's legacy global one (as a tensor key), the trainer's latent generator ``z``
    and, on a GPU, CUDA's."""

    torch: Tensor
    python: tuple
    numpy: tuple  # ("MT19937", key as an int64 tensor, pos, has_gauss, cached_gaussian)
    z: Tensor
    cuda: list[Tensor] | None = None

    @classmethod
    def capture(cls, z: torch.Generator, device: torch.device) -> RngStates:
        """The generators' states now."""
        name, key, pos, has_gauss, cached = np.random.get_state()
        return cls(torch.get_rng_state(), random.getstate(),
                   (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
                   z.get_state(),
                   torch.cuda.get_rng_state_all() if device.type == "cuda" else None)

    def restore(self, z: torch.Generator, device: torch.device) -> None:
        """Sets every generator to these states (CUDA's only on a CUDA device)."""
        torch.set_rng_state(self.torch)
        if self.cuda and device.type == "cuda":
            torch.cuda.set_rng_state_all(self.cuda)
        random.setstate(self.python)
        name, key, pos, has_gauss, cached = self.numpy
        np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
        z.set_state(self.z)


@dataclass
class Checkpoint:
    """A run's full state after ``shown`` real images (see the module docstring).

    ``config`` is the run's settings as ``TrainConfig.to_dict()`` wrote them; a record
    from before a setting existed lacks it. ``objective`` is the training objective's own
    state (a regularizer's running mean). Fields a run fills and a generator command does
    not need default to empty.
    """

    config: dict[str, Any]
    shown: int
    G_ema: dict[str, Tensor]
    G: dict[str, Tensor] = field(default_factory=dict)
    D: dict[str, Tensor] = field(default_factory=dict)
    phase_step: int = 0
    opt_resolution: int | None = None
    ema_updates: int = 0
    objective: dict[str, Tensor] = field(default_factory=dict)
    opt_g: dict[str, Any] | None = None
    opt_d: dict[str, Any] | None = None
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: RngStates | None = None

    def save(self, folder: str | os.PathLike, keep: int = 3) -> Path:
        """Writes the checkpoint into ``folder`` atomically; deletes all but the last
        ``keep`` checkpoints there (0: none). Returns the file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".checkpoint-*.tmp"):  # killed mid-write (the run's lock:
            stale.unlink(missing_ok=True)              # no other writer here)
        value = {f.name: getattr(self, f.name) for f in fields(self)}
        value["rng"] = None if self.rng is None else vars(self.rng)
        target = write_tree(checkpoint_path(folder, self.shown), value, kind=KIND,
                            version=VERSION)
        for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
            old.unlink(missing_ok=True)
        return target

    @classmethod
    def read(cls, path: str | os.PathLike) -> Checkpoint:
        """The checkpoint in ``path``, of any version, migrated to this one.

        Raises ValueError (RefusedFileError) naming the file, what is wrong with it, and
        the previous checkpoint beside it to resume from instead.
        """
        path = Path(path)
        try:
            kind = identify(path)
            if kind is Kind.TORCH_ZIP:
                return cls.from_version_1(read_torch_zip(path))
            if kind is not Kind.SAFETENSORS:
                raise RefusedFileError(f"it is {kind.value}")
            version, value = read_tree(path, KIND)
            if version not in (2, VERSION):
                raise RefusedFileError(f"a version {version} checkpoint, newer than this "
                                       f"fastpgan reads ({VERSION}); upgrade fastpgan")
            if version == 2 and isinstance(value, dict) and isinstance(value.get("config"),
                                                                       dict):
                value = {**value, "config": {**SETTINGS_ADDED_IN_VERSION_3, **value["config"]}}
            return cls._from_record(value)
        except ValueError as exc:
            older = [p for p in list_checkpoints(path.parent) if _shown(p) < _shown(path)]
            hint = f"; the previous one is {older[-1]} (--resume {older[-1]})" if older else ""
            text = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path} ")
            raise RefusedFileError(f"cannot read the checkpoint {path}: {text}{hint}") \
                from None

    @classmethod
    def _from_record(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict):
            raise RefusedFileError("not a fastpgan training checkpoint")
        rng = value.get("rng")
        if rng is not None:
            value = {**value, "rng": _rng_states(rng)}
        return _checked(cls, value)

    @classmethod
    def from_version_1(cls, state: Any) -> Checkpoint:
        """A version 1 checkpoint (the dict ``torch.save`` wrote) as this version: its
        config completed (:data:`SETTINGS_BEFORE_THEY_EXISTED`), the path length mean the
        objective's state, numpy's RNG key a tensor."""
        if not isinstance(state, dict) or "shown" not in state or "config" not in state:
            raise RefusedFileError("not a fastpgan training checkpoint")
        value = {k: v for k, v in state.items() if k not in ("pl_mean", "rng")}
        if isinstance(value["config"], dict):
            value["config"] = {**SETTINGS_BEFORE_THEY_EXISTED, **SETTINGS_ADDED_IN_VERSION_3,
                               **value["config"]}
        if state.get("pl_mean") is not None:
            value["objective"] = {"pl_mean": state["pl_mean"]}
        if state.get("rng") is not None:
            rng = dict(state["rng"])
            if isinstance(rng.get("numpy"), tuple) and len(rng["numpy"]) == 5:
                name, key, *rest = rng["numpy"]
                rng["numpy"] = (name, as_tensor(key).to(torch.int64), *rest)
            value["rng"] = _rng_states(rng)
        return _checked(cls, value)


def _rng_states(value: Any) -> RngStates:
    if not isinstance(value, dict):
        raise RefusedFileError("its RNG states are not a record")
    return _checked(RngStates, value)


_TYPES = {"config": dict, "shown": int, "G_ema": dict, "G": dict, "D": dict, "phase_step": int,
          "opt_resolution": (int, type(None)), "ema_updates": int, "objective": dict,
          "opt_g": (dict, type(None)), "opt_d": (dict, type(None)), "scaler": dict,
          "rng": (RngStates, type(None)), "torch": Tensor, "python": tuple, "numpy": tuple,
          "z": Tensor, "cuda": (list, type(None))}


def _checked(cls: type, value: Mapping[str, Any]) -> Any:
    """``cls(**value)`` after checking every field's type; RefusedFileError naming the
    field otherwise (a record from elsewhere may hold anything)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise RefusedFileError(f"unknown checkpoint fields {unknown[:5]}")
    for name, item in value.items():
        if not isinstance(item, _TYPES[name]) or isinstance(item, bool):
            raise RefusedFileError(f"its {name} is a {type(item).__name__}")
        if isinstance(item, int) and item < 0:
            raise RefusedFileError(f"its {name} is negative")
    for name in ("G_ema", "G", "D", "objective"):
        if not all(isinstance(k, str) and isinstance(v, Tensor)
                   for k, v in value.get(name, {}).items()):
            raise RefusedFileError(f"its {name} is not tensors by name")
    try:
        return cls(**value)
    except TypeError as exc:
        raise RefusedFileError(f"not a complete checkpoint ({exc})") from None


def checkpoint_path(folder: Path, shown: int) -> Path:
    """The file for the state after ``shown`` real images."""
    return folder / f"checkpoint-{shown:012d}{SUFFIX}"


def _shown(path: Path) -> int:
    """The images a checkpoint file's name says it holds (-1 for another name)."""
    digits = path.name.removeprefix("checkpoint-").split(".")[0]
    return int(digits) if digits.isdigit() else -1


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The folder's checkpoints of every version, oldest first."""
    found = {p for pattern in PATTERNS for p in Path(folder).glob(pattern)}
    return sorted(found, key=lambda p: (_shown(p), p.suffix == SUFFIX))


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest checkpoint in the folder, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a training checkpoint of any version, from its content (a
    torch.save zip file counts: version 1's format; reading it says if it is not one)."""
    kind = identify(path)
    if kind is Kind.TORCH_ZIP:
        return True
    return kind is Kind.SAFETENSORS and (record_kind(path) or ("",))[0] == KIND
