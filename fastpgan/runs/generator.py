"""The networks a run trains, and its generator (or all its networks) loaded back from
whatever a user gives: a run folder, a saved model folder or its weights file, a training
checkpoint of any version, a published pickle or a converted folder, each told apart by
its content (:func:`fastpgan.files.identify`), never its name."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fastpgan.files import Kind, identify
from fastpgan.models import GrowthStage, Networks, Pretrained, ProGANGenerator, load
from fastpgan.models.architectures import Architecture, architecture
from fastpgan.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, build_checked, load_checked
from fastpgan.models.published import FOLDERS, SOURCE_FILE
from fastpgan.models.sampling import STYLE_BASED
from fastpgan.runs.checkpoint import Checkpoint, is_checkpoint, latest_checkpoint
from fastpgan.runs.schedule import Phase, build_phases, phase_at
from fastpgan.sizes import check_resolution


def initialize_from(path: str | os.PathLike, arch: Architecture, G: Pretrained,
                    D: Pretrained, G_ema: Pretrained) -> list[str]:
    """Copies the networks of ``path`` (a published pickle, a ``fastpgan convert`` folder,
    a ``save_pretrained`` generator, or another run's training checkpoint) into a new
    run's G, D and G_ema of architecture ``arch``, for fine-tuning; returns notes on what
    the file lacked (its G_ema starts G, no D leaves D fresh). Raises ValueError naming
    every constructor argument of the file's networks that differs from the run's, with
    the setting to change."""
    networks = load_networks(path)
    if networks.G is None and networks.G_ema is None:
        raise ValueError(f"--init {path} holds no generator")
    notes = list(networks.notes)
    sources = {"G": networks.G or networks.G_ema, "D": networks.D,
               "G_ema": networks.G_ema or networks.G}
    if networks.G is None:
        notes.append(f"{path} has no training generator: G starts from its G_ema")
    if networks.G_ema is None:
        notes.append(f"{path} has no moving average G_ema: the run's EMA starts from its G")
    if networks.D is None:
        notes.append(f"{path} has no discriminator: D starts fresh")
    for role, target in (("G", G), ("D", D), ("G_ema", G_ema)):
        source = sources[role]
        if source is None:
            continue
        if type(source) is not type(target):
            raise ValueError(f"--init {path}: its {role} is a {type(source).__name__}, the "
                             f"run's a {type(target).__name__}; choose the matching --arch")
        ours, theirs = constructor_arguments(target), constructor_arguments(source)
        differ = [f"{key} {theirs.get(key)!r} there, {ours.get(key)!r} here "
                  f"({_setting_behind(arch, key)})"
                  for key in sorted(set(ours) | set(theirs))
                  if key not in arch.free_arguments
                  and _same(theirs.get(key)) != _same(ours.get(key))]
        if differ:
            raise ValueError(f"--init {path}: its {role} is not the run's network: "
                             f"{'; '.join(differ)}")
        load_checked(target, source.state_dict())
    return notes


def load_networks(path: str | os.PathLike) -> Networks:
    """The networks in ``path``: what :func:`fastpgan.models.load` reads, or a training
    checkpoint's G, D and G_ema (kind "fastpgan-checkpoint"), a run folder's from its
    newest checkpoint."""
    if Path(path).is_dir() and (newest := latest_checkpoint(Path(path) / "checkpoints")):
        path = newest  # a run folder: its newest checkpoint holds all three networks
    if not is_checkpoint(path):
        return load(path)
    checkpoint = Checkpoint.read(path)
    arch = architecture(checkpoint.config["arch"])
    g_arguments, d_arguments = arch.arguments(checkpoint.config)
    built = {role: build_checked(cls, arguments, getattr(checkpoint, role), f"{path} [{role}]")
             for role, cls, arguments in (("G", arch.generator, g_arguments),
                                          ("D", arch.discriminator, d_arguments),
                                          ("G_ema", arch.generator, g_arguments))
             if getattr(checkpoint, role)}
    return Networks(**{role: net.eval() for role, net in built.items()},
                    kind="fastpgan-checkpoint")


def _setting_behind(arch: Architecture, argument: str) -> str:
    setting = arch.setting_of.get(argument)
    if setting is None:
        return "not a setting"
    return f"--{setting.replace('_', '-')}" if setting else "set by the data"


def constructor_arguments(module: Pretrained) -> dict[str, Any]:
    """A network's constructor arguments, its defaults included."""
    bound = inspect.signature(type(module)).bind(**module.config)
    bound.apply_defaults()
    return dict(bound.arguments)


def _same(value: Any) -> Any:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else value


def run_networks(config: Mapping[str, Any]) -> tuple[nn.Module, nn.Module]:
    """(G, D) of a run's architecture and size, freshly initialized, on the CPU."""
    arch = architecture(config["arch"])
    g_arguments, d_arguments = arch.arguments(config)
    return arch.generator(**g_arguments), arch.discriminator(**d_arguments)


def run_phases(config: Mapping[str, Any], *, lengthened: bool = True) -> list[Phase]:
    """A run's schedule: from 4x4 for a growing architecture, else one stabilization at
    the final resolution; the last phase lengthened to total_kimg unless ``lengthened``
    is False."""
    start = architecture(config["arch"]).start_resolution(config["resolution"])
    return build_phases(config["resolution"], config["fade_kimg"], config["stable_kimg"],
                        config["batch"], start_resolution=start,
                        total_kimg=config["total_kimg"] if lengthened else None)


@dataclass
class TrainedGenerator:
    """A generator as training left it, and where in the schedule it was then."""

    G: nn.Module  # eval mode, on the CPU
    stage: GrowthStage  # the resolution (and fade-in alpha) it was training
    shown: int | None  # real images shown; None for a saved generator folder
    source: Path  # the folder or checkpoint file it came from
    kind: str = "fastpgan"  # who trained it: "fastpgan", "nvlabs-stylegan2", "progan-tf"
    notes: list[str] = field(default_factory=list)  # e.g. which network is rendered

    @property
    def grown(self) -> bool:
        """True when it was trained up to its full resolution."""
        return self.stage == self.G.full_stage

    def render_stage(self, resolution: int | None, command: str) -> GrowthStage:
        """The stage a command renders at: ``resolution`` if given (at the checkpoint's
        alpha if it is the one being trained), else the one it was training. Says on
        stderr, as ``fastpgan COMMAND``, when that is not the generator's full resolution,
        or when it asks for blocks that had not been trained."""
        if resolution is None:
            if not self.grown:
                print(f"fastpgan {command}: {self.source} was training "
                      f"{self.stage.describe()}; rendering that (--resolution for another)",
                      file=sys.stderr)
            return self.stage
        check_resolution("--resolution", resolution, self.G.resolution)
        if resolution > self.stage.resolution:
            print(f"fastpgan {command}: warning: {self.source} was training "
                  f"{self.stage.describe()}; at {resolution}px its blocks above that are "
                  f"untrained", file=sys.stderr)
        return self.stage if resolution == self.stage.resolution else GrowthStage(resolution)


def load_generator(path: str | os.PathLike) -> nn.Module:
    """The generator in ``path``, in eval mode on the CPU (see :func:`load_trained`; a
    checkpoint's generator is returned whole, whatever stage it had reached)."""
    return load_trained(path).G


def load_trained(path: str | os.PathLike, raw: bool = False) -> TrainedGenerator:
    """The generator in ``path`` and the stage it was training.

    ``path`` is a folder written by ``save_pretrained`` (e.g. a run's ``generator/``,
    trained to the end) or its ``model.safetensors``, a run folder (its ``generator/``,
    else its newest checkpoint), a training checkpoint file of any version, whose EMA
    generator is used, a published pickle (NVlabs StyleGAN2-ADA / StyleGAN3 or official
    ProGAN: its G_ema / Gs) under any name, or a folder ``fastpgan convert`` wrote. With
    ``raw`` it is the training generator G instead of the moving average: a run folder's
    from its newest checkpoint, as a saved generator holds only the average. Raises
    ValueError naming what could not be read.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such generator or checkpoint: {path}")
    if raw and path.is_dir() and (newest := latest_checkpoint(path / "checkpoints")):
        path = newest
    kind = identify(path)
    if kind is Kind.SAFETENSORS and path.name == WEIGHTS_FILE and not is_checkpoint(path):
        path, kind = path.parent, Kind.FOLDER  # the weights of a saved folder: the folder
    if kind is Kind.FOLDER:
        conversion = [name for role, name in FOLDERS.items() if role != "G_ema"]
        if (path / SOURCE_FILE).exists() or any((path / name).exists() for name in conversion):
            return _published(path, raw)  # complete, or refused
        if (path / "generator" / CONFIG_FILE).exists():
            path = path / "generator"
        elif not (path / CONFIG_FILE).exists():
            newest = latest_checkpoint(path / "checkpoints")
            if newest is None:
                raise ValueError(f"{path} holds no saved generator ({CONFIG_FILE}) and no "
                                 "checkpoints/")
            return checkpoint_generator(Checkpoint.read(newest), newest, raw)
        if raw:
            raise ValueError(f"{path} is a saved generator, the moving average alone: --raw "
                             "takes a run folder or a checkpoint, which hold the training G")
        model = Pretrained.from_pretrained(path)
        if isinstance(model, (ProGANGenerator, *STYLE_BASED)):
            return TrainedGenerator(model.eval(), model.full_stage, None, path)
        raise ValueError(f"{path} holds a {type(model).__name__}, not a generator")
    if is_checkpoint(path):
        return checkpoint_generator(Checkpoint.read(path), path, raw)
    return _published(path, raw)


def _published(path: Path, raw: bool = False) -> TrainedGenerator:
    networks = load(path)
    G = networks.generator(raw)
    return TrainedGenerator(G.eval(), networks.stage or G.full_stage, None, path,
                            networks.kind, networks.notes)


def checkpoint_generator(checkpoint: Checkpoint, source: Path,
                         raw: bool = False) -> TrainedGenerator:
    """The EMA generator of a checkpoint read from ``source`` (with ``raw`` its training
    generator G), and its schedule stage."""
    config = checkpoint.config
    arch = architecture(config["arch"])
    G = build_checked(arch.generator, arch.arguments(config)[0],
                      checkpoint.G if raw else checkpoint.G_ema, str(source))
    phase = phase_at(run_phases(config), checkpoint.shown)
    stage = (G.full_stage if phase is None  # the schedule is done
             else GrowthStage(phase.resolution, phase.alpha(checkpoint.shown)))
    return TrainedGenerator(G.eval(), stage, checkpoint.shown, source)
