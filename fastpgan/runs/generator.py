"""The networks a run trains, and its generator loaded back from a saved model folder, a
run folder or a training checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from fastpgan.models import Pretrained, ProGANGenerator, StyleGANGenerator
from fastpgan.models.architectures import architecture
from fastpgan.models.pretrained import load_checked
from fastpgan.runs.checkpoint import latest_checkpoint, load_checkpoint
from fastpgan.runs.schedule import build_phases, phase_at


def network_arguments(config: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments both networks of a run take, from its settings (a
    ``TrainConfig`` as a dict, as a checkpoint stores it)."""
    return dict(resolution=config["resolution"], latent_dim=config["latent_dim"],
                fmap_base=config["fmap_base"], fmap_max=config["fmap_max"],
                img_channels=config["channels"])


def run_networks(config: Mapping[str, Any]) -> tuple[nn.Module, nn.Module]:
    """(G, D) of a run's architecture and size, freshly initialized, on the CPU."""
    arch = architecture(config["arch"])
    arguments = network_arguments(config)
    return arch.generator(**arguments), arch.discriminator(**arguments)


def load_generator(path: str | os.PathLike) -> nn.Module:
    """The generator in ``path``, in eval mode on the CPU.

    ``path`` is a folder written by ``save_pretrained`` (e.g. a run's ``generator/``), a
    run folder (its ``generator/``, else its newest checkpoint), or a training checkpoint
    file, whose EMA generator is used. Raises ValueError naming what could not be read.
    """
    path = Path(path)
    if path.is_dir() and (path / "generator" / "config.json").exists():
        path = path / "generator"
    elif path.is_dir() and not (path / "config.json").exists():
        newest = latest_checkpoint(path / "checkpoints")
        if newest is None:
            raise ValueError(f"{path} holds no saved generator (config.json) and no "
                             "checkpoints/")
        path = newest
    if path.is_dir():
        model = Pretrained.from_pretrained(path)
        if isinstance(model, (ProGANGenerator, StyleGANGenerator)):
            return model.eval()
        raise ValueError(f"{path} holds a {type(model).__name__}, not a generator")
    if not path.exists():
        raise ValueError(f"no such generator or checkpoint: {path}")
    return checkpoint_generator(load_checkpoint(path)).G


@dataclass
class CheckpointGenerator:
    """A training checkpoint's EMA generator and where in the schedule it was."""

    G: nn.Module
    shown: int  # real images shown
    resolution: int  # the resolution being trained then
    alpha: float  # the newest block's weight then


def checkpoint_generator(state: dict) -> CheckpointGenerator:
    """The EMA generator of a loaded checkpoint (eval mode, CPU) and its schedule stage."""
    config = state["config"]
    G = architecture(config["arch"]).generator(**network_arguments(config))
    load_checked(G, state["G_ema"])
    phase = phase_at(build_phases(config["resolution"], config["fade_kimg"],
                                  config["stable_kimg"], config["batch"],
                                  total_kimg=config["total_kimg"]), state["shown"])
    if phase is None:  # the schedule is done
        return CheckpointGenerator(G.eval(), state["shown"], config["resolution"], 1.0)
    return CheckpointGenerator(G.eval(), state["shown"], phase.resolution,
                               phase.alpha(state["shown"]))
