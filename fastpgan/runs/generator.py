"""The networks a run trains, and its generator loaded back from a saved model folder, a
run folder or a training checkpoint."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from fastpgan.models import GrowthStage, Pretrained, ProGANGenerator, load
from fastpgan.models.architectures import architecture
from fastpgan.models.pretrained import load_checked
from fastpgan.models.published import SOURCE_FILE
from fastpgan.models.sampling import STYLE_BASED
from fastpgan.runs.checkpoint import latest_checkpoint, load_checkpoint
from fastpgan.runs.schedule import Phase, build_phases, phase_at


def network_arguments(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constructor arguments of a run's generator and discriminator, from its settings
    (a ``TrainConfig`` as a dict, as a checkpoint stores it).

    StyleGAN2's channels are NVlabs' channel_base / resolution, so channel_base is twice
    fmap_base (config F: --fmap-base 16384); z and w are latent_dim wide, and training
    mixes styles with probability 0.9, as NVlabs' loss does.
    """
    if architecture(config["arch"]).grows:
        shared = dict(resolution=config["resolution"], latent_dim=config["latent_dim"],
                      fmap_base=config["fmap_base"], fmap_max=config["fmap_max"],
                      img_channels=config["channels"])
        return shared, shared
    # checkpoints written before conv_clamp and mapping_layers were settings had neither
    shared = dict(img_resolution=config["resolution"], img_channels=config["channels"],
                  channel_base=2 * config["fmap_base"], channel_max=config["fmap_max"],
                  conv_clamp=config.get("conv_clamp"),
                  mapping_layers=config.get("mapping_layers", 8))
    return (dict(z_dim=config["latent_dim"], w_dim=config["latent_dim"],
                 style_mixing_prob=0.9, **shared), shared)


NOT_ARCHITECTURE = ("style_mixing_prob", "noise_mode", "backend", "num_fp16_res",
                    "mbstd_group_size")
"""Constructor arguments a fine-tuning run takes as its own: training and sampling
settings, NVlabs' num_fp16_res (recorded, not emulated: fastpgan runs in the autocast
dtype) and the minibatch standard deviation's group (a function of the minibatch, as
when NVlabs resumes with another batch); none changes the parameters."""
RUN_SETTINGS = {"img_resolution": "--resolution", "img_channels": "the data's channels",
                "z_dim": "--latent-dim", "w_dim": "--latent-dim",
                "channel_base": "--fmap-base (half of it)", "channel_max": "--fmap-max",
                "conv_clamp": "--conv-clamp", "mapping_layers": "--mapping-layers",
                "c_dim": "labels (fastpgan-train is unconditional)"}
"""The training setting behind each StyleGAN2 constructor argument, for messages."""


def initialize_from(path: str | os.PathLike, G: Pretrained, D: Pretrained,
                    G_ema: Pretrained) -> list[str]:
    """Copies the networks of ``path`` (a published ``.pkl``, a ``fastpgan convert``
    folder or a ``save_pretrained`` generator) into a new run's G, D and G_ema, for
    fine-tuning; returns notes on what the file lacked (its G_ema starts G, no D leaves D
    fresh). Raises ValueError naming every constructor argument of the file's networks
    that differs from the run's, with the setting to change."""
    networks = load(path)
    if networks.G is None and networks.G_ema is None:
        raise ValueError(f"--init {path} holds no generator")
    notes = []
    sources = {"G": networks.G or networks.G_ema, "D": networks.D,
               "G_ema": networks.G_ema or networks.G}
    if networks.G is None:
        notes.append(f"{path} has no training generator: G starts from its G_ema")
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
                  f"({RUN_SETTINGS.get(key, 'not a setting')})"
                  for key in sorted(set(ours) | set(theirs))
                  if key not in NOT_ARCHITECTURE and _same(theirs.get(key)) != _same(ours.get(key))]
        if differ:
            raise ValueError(f"--init {path}: its {role} is not the run's network: "
                             f"{'; '.join(differ)}")
        load_checked(target, source.state_dict())
    return notes


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
    g_arguments, d_arguments = network_arguments(config)
    return arch.generator(**g_arguments), arch.discriminator(**d_arguments)


def run_phases(config: Mapping[str, Any], *, lengthened: bool = True) -> list[Phase]:
    """A run's schedule: from 4x4 for a growing architecture, else one stabilization at
    the final resolution; the last phase lengthened to total_kimg unless ``lengthened``
    is False."""
    start = 4 if architecture(config["arch"]).grows else config["resolution"]
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

    @property
    def grown(self) -> bool:
        """True when it was trained up to its full resolution."""
        return self.stage == self.G.full_stage


def load_generator(path: str | os.PathLike) -> nn.Module:
    """The generator in ``path``, in eval mode on the CPU (see :func:`load_trained`; a
    checkpoint's generator is returned whole, whatever stage it had reached)."""
    return load_trained(path).G


def load_trained(path: str | os.PathLike) -> TrainedGenerator:
    """The generator in ``path`` and the stage it was training.

    ``path`` is a folder written by ``save_pretrained`` (e.g. a run's ``generator/``,
    trained to the end), a run folder (its ``generator/``, else its newest checkpoint),
    a training checkpoint file, whose EMA generator is used, a published ``.pkl``
    (NVlabs StyleGAN2-ADA or official ProGAN: its G_ema / Gs) or a folder ``fastpgan
    convert`` wrote. Raises ValueError naming what could not be read.
    """
    path = Path(path)
    if (path.is_file() and path.suffix == ".pkl") or (path / SOURCE_FILE).exists():
        networks = load(path)
        G = networks.generator()
        return TrainedGenerator(G.eval(), networks.stage or G.full_stage, None, path)
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
        if isinstance(model, (ProGANGenerator, *STYLE_BASED)):
            return TrainedGenerator(model.eval(), model.full_stage, None, path)
        raise ValueError(f"{path} holds a {type(model).__name__}, not a generator")
    if not path.exists():
        raise ValueError(f"no such generator or checkpoint: {path}")
    return checkpoint_generator(load_checkpoint(path), path)


def checkpoint_generator(state: dict, source: Path) -> TrainedGenerator:
    """The EMA generator of a checkpoint loaded from ``source``, and its schedule stage."""
    config = state["config"]
    G = architecture(config["arch"]).generator(**network_arguments(config)[0])
    load_checked(G, state["G_ema"])
    phase = phase_at(run_phases(config), state["shown"])
    stage = (G.full_stage if phase is None  # the schedule is done
             else GrowthStage(phase.resolution, phase.alpha(state["shown"])))
    return TrainedGenerator(G.eval(), stage, state["shown"], source)
