"""What each ``fastpgan-train --arch`` name means, in one place: its networks, whether they
grow, how a run's settings become their constructor arguments, the settings it starts
from and the ones only it takes. Every other room asks this entry; none branches on an
architecture's name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fastpgan.models.pretrained import Pretrained
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.stylegan import StyleGANGenerator
from fastpgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

Arguments = tuple[dict[str, Any], dict[str, Any]]
"""The generator's and the discriminator's constructor arguments."""


def _frozen(**items: Any) -> Mapping[str, Any]:
    return MappingProxyType(items)


@dataclass(frozen=True)
class Architecture:
    """One architecture.

    Attributes:
        name: as ``--arch`` and checkpoints spell it.
        generator, discriminator: the network classes.
        grows: progressive growing (``G(z, resolution, alpha)``, ``D(images, alpha)``,
            trained from 4x4) or one resolution (``G(z)``, ``D(images)``).
        arguments: a run's settings (``TrainConfig`` as a dict) -> the networks'
            constructor arguments.
        defaults: settings this architecture starts from where the run gives none.
        data_defaults: more of them when training on the user's data (not the demo).
        own_settings: settings only this architecture takes, with the value that means
            "not set" (another architecture given one of them refuses it).
        setting_of: constructor argument -> the run setting that decides it, for messages
            ("" where it is not a setting).
        free_arguments: constructor arguments a fine-tuning run takes as its own (training
            and sampling settings that change no parameter).
        conditional: whether its networks take class labels (``--cond``): ProGAN's label
            input and auxiliary classifier, StyleGAN2's embedding and projection.
    """

    name: str
    generator: type[Pretrained]
    discriminator: type[Pretrained]
    grows: bool
    arguments: Callable[[Mapping[str, Any]], Arguments]
    defaults: Mapping[str, Any] = field(default_factory=_frozen)
    data_defaults: Mapping[str, Any] = field(default_factory=_frozen)
    own_settings: Mapping[str, Any] = field(default_factory=_frozen)
    setting_of: Mapping[str, str] = field(default_factory=_frozen)
    free_arguments: frozenset[str] = frozenset()
    conditional: bool = False

    def start_resolution(self, resolution: int) -> int:
        """The resolution a run's schedule starts at."""
        return 4 if self.grows else resolution


def _growing_arguments(settings: Mapping[str, Any]) -> Arguments:
    shared = dict(resolution=settings["resolution"], latent_dim=settings["latent_dim"],
                  fmap_base=settings["fmap_base"], fmap_max=settings["fmap_max"],
                  img_channels=settings["channels"])
    return shared, dict(shared)


def _progan_arguments(settings: Mapping[str, Any]) -> Arguments:
    """ProGAN's, with the classes of a conditional run (the official code's label input
    to G and auxiliary classifier in D; only when there are classes, so the networks of
    runs from before labels keep their arguments)."""
    g, d = _growing_arguments(settings)
    classes = settings.get("classes", 0)
    labelled = {"label_dim": classes} if classes else {}
    return {**g, **labelled}, {**d, **labelled}


def _stylegan2_arguments(settings: Mapping[str, Any]) -> Arguments:
    """StyleGAN2's channels are NVlabs' channel_base / resolution, so channel_base is
    twice fmap_base (config F: fmap_base 16384); z and w are latent_dim wide, and training
    mixes styles with probability 0.9, as NVlabs' loss does."""
    shared = dict(img_resolution=settings["resolution"], img_channels=settings["channels"],
                  channel_base=2 * settings["fmap_base"], channel_max=settings["fmap_max"],
                  conv_clamp=settings["conv_clamp"], mapping_layers=settings["mapping_layers"])
    classes = settings.get("classes", 0)
    labelled = {"c_dim": classes} if classes else {}
    return (dict(z_dim=settings["latent_dim"], w_dim=settings["latent_dim"],
                 style_mixing_prob=0.9, **shared, **labelled), {**shared, **labelled})


ARCHITECTURES: dict[str, Architecture] = {
    "progan": Architecture("progan", ProGANGenerator, ProGANDiscriminator, True,
                           _progan_arguments, conditional=True),
    # StyleGAN's generator against ProGAN's discriminator (Karras et al. 2019, section 2)
    "stylegan": Architecture("stylegan", StyleGANGenerator, ProGANDiscriminator, True,
                             _growing_arguments),
    # config F at one resolution (Karras et al. 2020): skip G, residual D; NVlabs'
    # stylegan2-ada-pytorch settings
    "stylegan2": Architecture(
        "stylegan2", StyleGAN2Generator, StyleGAN2Discriminator, False, _stylegan2_arguments,
        conditional=True,
        defaults=_frozen(loss="logistic-r1", pl_weight=2.0, conv_clamp=256.0, lr=0.002),
        # NVlabs' channel_base 32768; ADA, as their --aug default
        data_defaults=_frozen(fmap_base=16384, aug="ada"),
        own_settings=_frozen(conv_clamp=None, init=None, mapping_layers=8, pl_weight=0.0),
        setting_of=_frozen(img_resolution="resolution", img_channels="channels",
                           z_dim="latent_dim", w_dim="latent_dim",
                           channel_base="fmap_base", channel_max="fmap_max",
                           conv_clamp="conv_clamp", mapping_layers="mapping_layers",
                           c_dim=""),
        # training and sampling settings; NVlabs' num_fp16_res (recorded, not emulated:
        # fastpgan runs in the autocast dtype); the minibatch deviation's group (a
        # function of the minibatch, as when NVlabs resumes with another batch)
        free_arguments=frozenset({"style_mixing_prob", "noise_mode", "backend",
                                  "num_fp16_res", "mbstd_group_size"})),
}


def architecture(name: str) -> Architecture:
    """The architecture called ``name``; ValueError listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; expected one of "
                         f"{tuple(ARCHITECTURES)}") from None


def foreign_setting(name: str, settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """(setting, the architecture it belongs to) for the first setting in ``settings``
    that is set but belongs to another architecture than ``name``; None if there is none."""
    own = architecture(name).own_settings
    for other in ARCHITECTURES.values():
        for setting, unset in other.own_settings.items():
            if setting not in own and settings.get(setting, unset) != unset:
                return setting, other.name
    return None
