"""Training checkpoints: written atomically (temporary file, fsync, rename), the last K kept.

A checkpoint holds everything a run needs to continue exactly: the networks, the EMA,
both optimizers, the gradient scaler, the schedule position and every RNG state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fastpgan.atomic import atomic_write

PATTERN = "checkpoint-*.pt"


def checkpoint_path(folder: Path, shown: int) -> Path:
    """The file for the state after ``shown`` real images."""
    return folder / f"checkpoint-{shown:012d}.pt"


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, shown: int,
                    keep: int = 3) -> Path:
    """Writes ``state`` as the checkpoint for ``shown`` images; deletes all but the last keep."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".checkpoint-*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    target = atomic_write(checkpoint_path(folder, shown), lambda tmp: torch.save(state, tmp))
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return target


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The folder's checkpoints, oldest first."""
    return sorted(Path(folder).glob(PATTERN))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a checkpoint; ValueError naming the file (and an older one) if it is unreadable."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "shown" not in state:
            raise ValueError("not a fastpgan training checkpoint")
    except Exception as exc:
        older = [p for p in list_checkpoints(path.parent) if p.name < path.name]
        hint = f"; the previous one is {older[-1]} (--resume {older[-1]})" if older else ""
        raise ValueError(f"cannot read the checkpoint {path}: {exc}{hint}") from exc
    return state


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest checkpoint in the folder, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None
