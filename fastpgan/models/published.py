"""Published networks onto fastpgan's modules: NVlabs' StyleGAN2-ADA pickles (G, D, G_ema),
the official ProGAN pickles (G, D, Gs) and fastpgan's own safetensors folders, by
:func:`load`; :func:`convert` writes any of them as safetensors folders.

Nothing from a pickle runs (:mod:`fastpgan.models.pickles`): the networks are built from
their recorded constructor arguments and filled parameter by parameter, every name and
shape checked. NVlabs' modules carry the same names as :mod:`fastpgan.models.stylegan2`'s,
less their fixed ``resample_filter`` buffers (checked against the filter they record).
The official ProGAN's TensorFlow variables (``4x4/Dense/weight``, ``8x8/Conv0_up/weight``,
``ToRGB_lod0/bias``, ... as ``networks.py``'s G_paper and D_paper name them) are
transposed to PyTorch's layouts; its ``lod`` gives the stage a snapshot was at.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastpgan.atomic import atomic_write
from fastpgan.models.common import GrowthStage
from fastpgan.models.pickles import (
    PersistentRecord,
    RefusedPickleError,
    TFNetwork,
    as_tensor,
    read_pickle,
)
from fastpgan.models.pretrained import (
    CONFIG_FILE,
    Pretrained,
    load_checked,
    register_file_reader,
)
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from fastpgan.ops.fir import FIR_TAPS, fir_filter

ROLES = ("G", "D", "G_ema")
"""The networks of a snapshot: the trained generator, the discriminator, and the
generator's moving average (the one to sample; the official ProGAN's ``Gs``)."""

FOLDERS = {"G_ema": "generator", "G": "training-generator", "D": "discriminator"}
"""Where :func:`convert` writes each network; ``generator/`` is also where a training run
leaves its final generator, so every command finds it."""

SOURCE_FILE = "source.json"


@dataclass
class Networks:
    """The networks read from one file or folder."""

    G: Pretrained | None = None
    D: Pretrained | None = None
    G_ema: Pretrained | None = None
    kind: str = "fastpgan"  # "nvlabs-stylegan2", "progan-tf" or "fastpgan"
    stage: GrowthStage | None = None  # where a growing snapshot was (None: grown)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. NVlabs' training_set_kwargs

    def generator(self) -> Pretrained:
        """The generator to sample: G_ema, else G; ValueError when there is none."""
        G = self.G_ema or self.G
        if G is None:
            raise ValueError("these networks hold no generator")
        return G


def load(path: str | os.PathLike) -> Networks:
    """The networks in ``path``: an NVlabs StyleGAN2-ADA ``.pkl``, an official ProGAN
    ``.pkl``, a folder :func:`convert` wrote, or one ``save_pretrained`` folder; every
    network in eval mode, on the CPU, in float32.

    Raises ValueError (RefusedPickleError for a pickle naming a global outside the
    allow-list) that names the file and what could not be read.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    data = read_pickle(path)
    if isinstance(data, dict) and any(isinstance(data.get(r), PersistentRecord) for r in ROLES):
        networks = Networks(kind="nvlabs-stylegan2",
                            info={"training_set_kwargs": data.get("training_set_kwargs")})
        for role in ROLES:
            if isinstance(data.get(role), PersistentRecord):
                setattr(networks, role, _nvlabs_network(data[role], f"{path} [{role}]"))
        return networks
    if (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(n, TFNetwork) for n in data)):
        G, D, Gs = (_progan_network(n, f"{path} [{n.name or role}]")
                    for n, role in zip(data, ("G", "D", "Gs"), strict=True))
        return Networks(G[0], D[0], Gs[0], "progan-tf", Gs[1])
    raise ValueError(f"{path} is neither an NVlabs StyleGAN2-ADA pickle (a dict with G, D "
                     "and G_ema) nor an official ProGAN pickle (G, D, Gs), got a "
                     f"{type(data).__name__}")


def convert(path: str | os.PathLike, out: str | os.PathLike) -> dict[str, Path]:
    """Writes the networks of ``path`` (as :func:`load` reads it) into ``out``: a
    ``save_pretrained`` folder per network (:data:`FOLDERS`) and ``source.json`` (the file,
    its SHA-256, its format and stage). Returns the folders by role."""
    networks = load(path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {role: getattr(networks, role).save_pretrained(out / FOLDERS[role])
               for role in ROLES if getattr(networks, role) is not None}
    source = {"file": Path(path).name, "sha256": _sha256(Path(path)), "kind": networks.kind,
              "stage": None if networks.stage is None else vars(networks.stage),
              "info": networks.info}
    atomic_write(out / SOURCE_FILE, lambda f: f.write_text(json.dumps(source, indent=1,
                                                                      default=str)))
    return written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_folder(path: Path) -> Networks:
    if (path / CONFIG_FILE).exists():
        model = Pretrained.from_pretrained(path).eval()
        role = "D" if isinstance(model, (StyleGAN2Discriminator, ProGANDiscriminator)) else "G_ema"
        return Networks(**{role: model})
    folders = {role: path / name for role, name in FOLDERS.items()
               if (path / name / CONFIG_FILE).exists()}
    if not folders:
        raise ValueError(f"{path} holds no saved network ({CONFIG_FILE}) and none of "
                         f"{sorted(FOLDERS.values())}")
    source = {}
    if (path / SOURCE_FILE).exists():
        source = json.loads((path / SOURCE_FILE).read_text(encoding="utf-8"))
    stage = source.get("stage")
    return Networks(**{role: Pretrained.from_pretrained(f).eval() for role, f in folders.items()},
                    kind=source.get("kind", "fastpgan"),
                    stage=None if stage is None else GrowthStage(**stage),
                    info=source.get("info", {}))


# ---------------------------------------------------------------- NVlabs StyleGAN2-ADA

_G_SYNTHESIS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                "resample_filter", "fp16_channels_last", "use_noise", "kernel_size",
                "activation"}
_MAPPING = {"num_layers", "lr_multiplier", "w_avg_beta", "embed_features",
            "layer_features", "activation"}
_D_TOP = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base",
          "channel_max", "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs",
          "mapping_kwargs", "epilogue_kwargs"}


def _nvlabs_network(record: PersistentRecord, where: str) -> Pretrained:
    kwargs = record.init_kwargs
    if record.class_name == "Generator":
        synthesis = dict(kwargs.get("synthesis_kwargs") or {})
        mapping = dict(kwargs.get("mapping_kwargs") or {})
        _supported(where, "synthesis_kwargs", synthesis, _G_SYNTHESIS,
                   architecture="skip", use_noise=True, kernel_size=3, activation="lrelu")
        _supported(where, "mapping_kwargs", mapping, _MAPPING, activation="lrelu")
        _same_width(where, mapping, kwargs.get("w_dim", 512))
        model = StyleGAN2Generator(
            kwargs["z_dim"], kwargs["c_dim"], kwargs["w_dim"], kwargs["img_resolution"],
            kwargs["img_channels"], mapping_layers=mapping.get("num_layers", 8),
            mapping_lr_mul=mapping.get("lr_multiplier", 0.01),
            w_avg_beta=mapping.get("w_avg_beta", 0.995),
            channel_base=synthesis.get("channel_base", 32768),
            channel_max=synthesis.get("channel_max", 512),
            conv_clamp=synthesis.get("conv_clamp"),
            num_fp16_res=synthesis.get("num_fp16_res", 0),
            resample_filter=_taps(synthesis))
    elif record.class_name == "Discriminator":
        _supported(where, "arguments", kwargs, _D_TOP,
                   architecture="resnet")
        block = dict(kwargs.get("block_kwargs") or {})
        mapping = dict(kwargs.get("mapping_kwargs") or {})
        epilogue = dict(kwargs.get("epilogue_kwargs") or {})
        _supported(where, "block_kwargs", block,
                   {"activation", "resample_filter", "fp16_channels_last", "freeze_layers"},
                   activation="lrelu")
        _supported(where, "mapping_kwargs", mapping, _MAPPING, activation="lrelu")
        _supported(where, "epilogue_kwargs", epilogue,
                   {"mbstd_group_size", "mbstd_num_channels", "activation"}, activation="lrelu")
        model = StyleGAN2Discriminator(
            kwargs["c_dim"], kwargs["img_resolution"], kwargs["img_channels"],
            channel_base=kwargs.get("channel_base", 32768),
            channel_max=kwargs.get("channel_max", 512), conv_clamp=kwargs.get("conv_clamp"),
            num_fp16_res=kwargs.get("num_fp16_res", 0), cmap_dim=kwargs.get("cmap_dim"),
            mbstd_group_size=epilogue.get("mbstd_group_size", 4),
            mbstd_num_channels=epilogue.get("mbstd_num_channels", 1),
            mapping_layers=mapping.get("num_layers", 8), resample_filter=_taps(block))
    else:
        raise ValueError(f"{where}: an NVlabs {record.class_name}, not a Generator or a "
                         "Discriminator of training/networks.py")
    tensors = record.named_tensors()
    taps = model.config["resample_filter"]
    expected_filter = fir_filter(taps)
    for name in [n for n in tensors if n.endswith("resample_filter")]:
        if not torch.allclose(tensors.pop(name).float(), expected_filter):
            raise ValueError(f"{where}: {name} is not the [{', '.join(map(str, taps))}] "
                             "filter its arguments name")
    _load(model, tensors, where)
    return model.eval()


def _taps(kwargs: dict[str, Any]) -> tuple[float, ...]:
    return tuple(float(t) for t in kwargs.get("resample_filter", FIR_TAPS))


def _supported(where: str, what: str, kwargs: dict[str, Any], known: set[str],
               **required: Any) -> None:
    """ValueError naming an argument fastpgan's network does not have, or a setting of it
    (``required``) other than the one it builds."""
    unknown = sorted(set(kwargs) - known - {"z_dim", "c_dim", "w_dim", "img_resolution",
                                            "img_channels", "mapping_kwargs",
                                            "synthesis_kwargs"})
    if unknown:
        raise ValueError(f"{where}: NVlabs {what} {unknown} are not in fastpgan's StyleGAN2 "
                         "networks (config F)")
    for name, value in required.items():
        if kwargs.get(name, value) != value:
            raise ValueError(f"{where}: {what} {name}={kwargs[name]!r}; fastpgan builds "
                             f"{name}={value!r} only (config F)")


def _same_width(where: str, mapping: dict[str, Any], w_dim: int) -> None:
    for name in ("embed_features", "layer_features"):
        if mapping.get(name) not in (None, w_dim):
            raise ValueError(f"{where}: mapping {name}={mapping[name]} differs from w_dim "
                             f"{w_dim}, which fastpgan's mapping network does not build")


def _load(model: Pretrained, tensors: dict[str, Tensor], where: str) -> None:
    try:
        load_checked(model, {k: v.float() for k, v in tensors.items()})
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


# ---------------------------------------------------------------- the official ProGAN

_UNSUPPORTED_PROGAN = {"label_size": 0, "fmap_decay": 1.0, "normalize_latents": True,
                       "use_wscale": True, "use_pixelnorm": True, "use_leakyrelu": True,
                       "pixelnorm_epsilon": 1e-8}


def _progan_network(net: TFNetwork, where: str) -> tuple[Pretrained, GrowthStage | None]:
    kw = net.static_kwargs
    for name, value in _UNSUPPORTED_PROGAN.items():
        if kw.get(name, value) != value:
            raise ValueError(f"{where}: {name}={kw[name]!r}; fastpgan's ProGAN builds "
                             f"{name}={value!r}")
    resolution, channels = kw.get("resolution", 32), kw.get("num_channels", 1)
    fmap_base, fmap_max = kw.get("fmap_base", 8192), kw.get("fmap_max", 512)
    log2 = int(math.log2(resolution))
    variables = {name: as_tensor(value).float() for name, value in net.variables.items()}
    lod = float(variables.pop("lod", torch.tensor(0.0)))
    if net.build_func_name == "G_paper":
        latent = kw.get("latent_size") or min(fmap_base, fmap_max)
        model = ProGANGenerator(resolution, latent, fmap_base, fmap_max, channels)
        state = _progan_generator_state(variables, log2, kw.get("fused_scale", True), where)
    elif net.build_func_name == "D_paper":
        model = ProGANDiscriminator(resolution, 512, fmap_base, fmap_max, channels,
                                    mbstd_group_size=kw.get("mbstd_group_size", 4),
                                    fused_scale=kw.get("fused_scale", True))
        state = _progan_discriminator_state(variables, log2, kw.get("fused_scale", True), where)
    else:
        raise ValueError(f"{where}: a tfutil.Network built by {net.build_func_name!r}, not "
                         "the official ProGAN's G_paper or D_paper")
    _load(model, state, where)
    # TensorFlow's lod: 0 at the full resolution; lod 1.4 shows 2^(log2 - 1) px, 60 % faded in
    stage = None if lod == 0 else GrowthStage(2 ** (log2 - math.floor(lod)),
                                              1.0 - (lod - math.floor(lod)))
    return model.eval(), stage


def _taker(variables: dict[str, Tensor], where: str) -> Callable[[str], Tensor]:
    def take(name: str) -> Tensor:
        try:
            return variables.pop(name)
        except KeyError:
            raise ValueError(f"{where}: the official network's variable {name!r} is "
                             "missing") from None
    return take


def _conv(weight: Tensor) -> Tensor:
    """TensorFlow's [k, k, in, out] correlation kernel as PyTorch's (out, in, k, k)."""
    return weight.permute(3, 2, 0, 1)


def _progan_generator_state(variables: dict[str, Tensor], log2: int, fused: bool,
                            where: str) -> dict[str, Tensor]:
    take = _taker(variables, where)
    state = {"dense.weight": take("4x4/Dense/weight").t(),
             "dense_act.bias": take("4x4/Dense/bias"),
             "conv4.weight": _conv(take("4x4/Conv/weight")), "conv4.bias": take("4x4/Conv/bias")}
    for i, res in enumerate(2 ** k for k in range(3, log2 + 1)):
        scope = f"{res}x{res}"
        if fused:
            # [k, k, out, in] for conv2d_transpose, whose padded sum of shifts equals
            # nearest upsampling and then correlating with the spatially flipped kernel
            state[f"blocks.{i}.0.weight"] = take(f"{scope}/Conv0_up/weight").permute(
                2, 3, 0, 1).flip(2, 3)
            state[f"blocks.{i}.0.bias"] = take(f"{scope}/Conv0_up/bias")
        else:
            state[f"blocks.{i}.0.weight"] = _conv(take(f"{scope}/Conv0/weight"))
            state[f"blocks.{i}.0.bias"] = take(f"{scope}/Conv0/bias")
        state[f"blocks.{i}.1.weight"] = _conv(take(f"{scope}/Conv1/weight"))
        state[f"blocks.{i}.1.bias"] = take(f"{scope}/Conv1/bias")
    for stage in range(log2 - 1):
        lod = log2 - 2 - stage
        state[f"to_rgb.{stage}.weight"] = _conv(take(f"ToRGB_lod{lod}/weight"))
        state[f"to_rgb.{stage}.bias"] = take(f"ToRGB_lod{lod}/bias")
    _nothing_left(variables, where)
    return state


def _progan_discriminator_state(variables: dict[str, Tensor], log2: int, fused: bool,
                                where: str) -> dict[str, Tensor]:
    take = _taker(variables, where)
    state = {}
    for stage in range(log2 - 1):
        lod = log2 - 2 - stage
        state[f"from_rgb.{stage}.weight"] = _conv(take(f"FromRGB_lod{lod}/weight"))
        state[f"from_rgb.{stage}.bias"] = take(f"FromRGB_lod{lod}/bias")
    down = "Conv1_down" if fused else "Conv1"  # the separate one: act, then avg pooling
    for i, res in enumerate(2 ** k for k in range(3, log2 + 1)):
        scope = f"{res}x{res}"
        state[f"blocks.{i}.0.weight"] = _conv(take(f"{scope}/Conv0/weight"))
        state[f"blocks.{i}.0.bias"] = take(f"{scope}/Conv0/bias")
        state[f"blocks.{i}.1.weight"] = _conv(take(f"{scope}/{down}/weight"))
        state[f"blocks.{i}.1.bias"] = take(f"{scope}/{down}/bias")
    state.update({"conv4.weight": _conv(take("4x4/Conv/weight")),
                  "conv4.bias": take("4x4/Conv/bias"),
                  "dense.weight": take("4x4/Dense0/weight").t(),
                  "dense.bias": take("4x4/Dense0/bias"),
                  "out.weight": take("4x4/Dense1/weight").t(),
                  "out.bias": take("4x4/Dense1/bias")})
    _nothing_left(variables, where)
    return state


def _nothing_left(variables: dict[str, Tensor], where: str) -> None:
    if variables:
        raise ValueError(f"{where}: variables fastpgan's ProGAN has no place for: "
                         f"{sorted(variables)}")


def _pretrained_from_pickle(cls: type[Pretrained], path: Path) -> Pretrained:
    """What ``cls.from_pretrained(pickle)`` returns: the snapshot's D for a discriminator
    class, its G_ema otherwise."""
    networks = load(path)
    discriminator = issubclass(cls, (StyleGAN2Discriminator, ProGANDiscriminator))
    model = networks.D if discriminator else networks.generator()
    if model is None or not isinstance(model, cls):
        raise ValueError(f"{path} holds no {cls.__name__}")
    return model


register_file_reader(_pretrained_from_pickle)

__all__ = ["FOLDERS", "ROLES", "Networks", "RefusedPickleError", "convert", "load"]
