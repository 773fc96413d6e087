"""Published networks onto fastpgan's modules: NVlabs' StyleGAN2-ADA and StyleGAN3-repository
pickles of the StyleGAN2 architecture (G, D, G_ema), the official ProGAN pickles (G, D,
Gs) and fastpgan's own safetensors folders, by :func:`load`; :func:`convert` writes any of
them as safetensors folders.

Nothing from a pickle runs (:mod:`fastpgan.files`), and a file's kind comes from its
content, whatever it is called. The networks are built from their recorded constructor
arguments, checked first on the meta device against the tensors present
(:func:`fastpgan.models.pretrained.build_checked`), and filled parameter by parameter,
every name and shape checked. NVlabs' modules carry the same names as
:mod:`fastpgan.models.stylegan2`'s, less their fixed ``resample_filter`` buffers (checked
against the filter the arguments name). Where NVlabs' layers recorded a setting in their
own state (a layer's ``conv_clamp``, a block's ``architecture``, a mapping layer's
learning-rate multiplier as its ``bias_gain``, the minibatch deviation's group), that
recorded value is the one used: the two repositories' classes have different defaults
(stylegan3's clamp at 256 and run 4 resolutions in float16 unless told otherwise), which
the arguments alone do not show. The official ProGAN's TensorFlow variables
(``4x4/Dense/weight``, ``8x8/Conv0_up/weight``, ``ToRGB_lod0/bias``, ... as
``networks.py``'s G_paper and D_paper name them) are transposed to PyTorch's layouts; its
``lod`` gives the stage a snapshot was at.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastpgan.atomic import atomic_write, writable_folder
from fastpgan.files import (
    Kind,
    PersistentRecord,
    RefusedFileError,
    RefusedPickleError,
    TFNetwork,
    as_tensor,
    identify,
    read_json,
    read_pickle,
)
from fastpgan.models.common import GrowthStage
from fastpgan.models.pretrained import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Pretrained,
    build_checked,
    register_file_reader,
)
from fastpgan.models.progan import ProGANDiscriminator, ProGANGenerator
from fastpgan.models.stylegan2 import (
    D_ARCHITECTURES,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)
from fastpgan.ops.fir import FIR_TAPS, fir_filter

ROLES = ("G", "D", "G_ema")
"""The networks of a snapshot: the trained generator, the discriminator, and the
generator's moving average (the one to sample; the official ProGAN's ``Gs``)."""

FOLDERS = {"G_ema": "generator", "G": "training-generator", "D": "discriminator"}
"""Where :func:`convert` writes each network; ``generator/`` is also where a training run
leaves its final generator, so every command finds it."""

SOURCE_FILE = "source.json"

WHAT_LOAD_READS = ("fastpgan reads networks from published pickles (NVlabs StyleGAN2-ADA "
                   "or StyleGAN3 of the StyleGAN2 architecture, the official ProGAN) and "
                   "from saved folders (config.json and model.safetensors, or what "
                   "fastpgan convert writes)")


class UnsupportedNetworkError(ValueError):
    """A published network of a kind or setting fastpgan does not build, named."""


@dataclass
class Networks:
    """The networks read from one file or folder, and notes on what was left out."""

    G: Pretrained | None = None
    D: Pretrained | None = None
    G_ema: Pretrained | None = None
    kind: str = "fastpgan"  # "nvlabs-stylegan2", "progan-tf" or "fastpgan"
    stage: GrowthStage | None = None  # where a growing snapshot was (None: grown)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. NVlabs' training_set_kwargs
    notes: list[str] = field(default_factory=list)  # e.g. an unsupported D left out

    def generator(self, raw: bool = False) -> Pretrained:
        """The generator to sample: G_ema, else G (with a note saying so); with ``raw`` the
        training generator G. ValueError when there is none."""
        if raw:
            if self.G is None:
                raise ValueError("these networks hold no training generator G (--raw): "
                                 "leave --raw out to render the moving average")
            return self.G
        G = self.G_ema or self.G
        if G is None:
            why = f": {'; '.join(self.notes)}" if self.notes else ""
            raise ValueError(f"these networks hold no generator fastpgan builds{why}")
        note = "rendering the training generator G: there is no moving average G_ema"
        if self.G_ema is None and note not in self.notes:
            self.notes.append(note)
        return G


def load(path: str | os.PathLike) -> Networks:
    """The networks in ``path``: an NVlabs StyleGAN2-ADA or StyleGAN3 pickle, an official
    ProGAN pickle (under any name), a folder :func:`convert` wrote, or a ``save_pretrained``
    folder (or its model.safetensors); every network in eval mode, on the CPU, in float32.
    A snapshot's discriminator of a kind fastpgan does not build is left out, with a note
    in ``notes``; so are its generators, if its discriminator loads.

    Raises ValueError (RefusedFileError for a file that is not one of these or asks for
    something the reader refuses) that names the file and what could not be read.
    """
    path = Path(path)
    kind = identify(path)
    if kind is Kind.SAFETENSORS and path.name == WEIGHTS_FILE:
        path, kind = path.parent, Kind.FOLDER
    if kind is Kind.FOLDER:
        return _read_folder(path)
    if kind is not Kind.PICKLE:
        raise RefusedFileError(f"{path} is {kind.value}; {WHAT_LOAD_READS}")
    data = read_pickle(path)
    if isinstance(data, dict) and any(isinstance(data.get(r), PersistentRecord) for r in ROLES):
        return _nvlabs_snapshot(data, path)
    if (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(n, TFNetwork) for n in data)):
        G, D, Gs = (_progan_network(n, f"{path} [{n.name or role}]")
                    for n, role in zip(data, ("G", "D", "Gs"), strict=True))
        return Networks(G[0], D[0], Gs[0], "progan-tf", Gs[1])
    raise ValueError(f"{path} is neither an NVlabs StyleGAN2-ADA pickle (a dict with G, D "
                     "and G_ema) nor an official ProGAN pickle (G, D, Gs), got a "
                     f"{type(data).__name__}")


def convert(path: str | os.PathLike, out: str | os.PathLike,
            networks: Networks | None = None) -> dict[str, Path]:
    """Writes the networks of ``path`` (as :func:`load` reads it, unless given) into
    ``out``: a ``save_pretrained`` folder per network (:data:`FOLDERS`) and
    ``source.json`` (the file, its SHA-256, its format, stage and notes). Returns the
    folders by role."""
    out = writable_folder(out, "the output folder")
    networks = networks or load(path)
    (out / SOURCE_FILE).unlink(missing_ok=True)  # a conversion in progress has none
    written = {role: getattr(networks, role).save_pretrained(out / FOLDERS[role])
               for role in ROLES if getattr(networks, role) is not None}
    # written last: its presence marks a complete conversion, and it lists the networks
    source = {"file": Path(path).name, "sha256": _sha256(Path(path)), "kind": networks.kind,
              "stage": None if networks.stage is None else vars(networks.stage),
              "info": networks.info, "notes": networks.notes,
              "networks": {role: FOLDERS[role] for role in written}}
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
    """A ``save_pretrained`` folder, or a conversion: complete (its source.json, written
    last, lists its networks, each of which must be there) or refused."""
    if (path / CONFIG_FILE).exists():
        model = Pretrained.from_pretrained(path).eval()
        role = "D" if isinstance(model, (StyleGAN2Discriminator, ProGANDiscriminator)) else "G_ema"
        return Networks(**{role: model})
    present = {role for role, name in FOLDERS.items() if (path / name / CONFIG_FILE).exists()}
    if not (path / SOURCE_FILE).exists():
        if present:
            raise RefusedFileError(f"{path} holds network folders but no {SOURCE_FILE}, which "
                                   "fastpgan convert writes last: an interrupted conversion; "
                                   "convert the file again")
        raise ValueError(f"{path} holds no saved network ({CONFIG_FILE}) and none of "
                         f"{sorted(FOLDERS.values())}")
    source = read_json(path / SOURCE_FILE, "conversion record")
    if not isinstance(source, dict):
        raise RefusedFileError(f"{path / SOURCE_FILE}: not a conversion record")
    listed = source.get("networks")  # conversions before it was kept: what is there
    expected = set(listed) if isinstance(listed, dict) else present
    missing = sorted(FOLDERS[role] for role in expected - present if role in FOLDERS)
    if missing:
        raise RefusedFileError(f"{path} lacks {', '.join(missing)} (its {SOURCE_FILE} lists "
                               "them): a damaged conversion; convert the file again")
    stage = source.get("stage")
    try:
        stage = None if stage is None else GrowthStage(**stage)
    except TypeError:
        raise RefusedFileError(f"{path / SOURCE_FILE}: its stage is not a resolution and "
                               "an alpha") from None
    return Networks(**{role: Pretrained.from_pretrained(path / FOLDERS[role]).eval()
                       for role in expected if role in FOLDERS},
                    kind=str(source.get("kind", "fastpgan")), stage=stage,
                    info=source.get("info") or {}, notes=list(source.get("notes") or []))


# ---------------------------------------------------------------- NVlabs StyleGAN2

def _nvlabs_snapshot(data: dict[str, Any], path: Path) -> Networks:
    """G, D and G_ema of an NVlabs snapshot; a network of an unsupported kind becomes a
    note, unless none is left."""
    networks = Networks(kind="nvlabs-stylegan2",
                        info={"training_set_kwargs": data.get("training_set_kwargs")})
    for role in ROLES:
        record = data.get(role)
        if not isinstance(record, PersistentRecord):
            continue
        where = f"{path} [{role}]"
        try:
            setattr(networks, role, _nvlabs_network(record, where))
        except UnsupportedNetworkError as exc:
            networks.notes.append(f"{role} left out: {exc}")
    if not any(getattr(networks, role) for role in ROLES):
        raise UnsupportedNetworkError("; ".join(networks.notes))
    return networks


_G_OWN = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
          "synthesis_kwargs"}
_POSITIONAL = {"Generator": ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"),
               "Discriminator": ("c_dim", "img_resolution", "img_channels")}
_G_SYNTHESIS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                "resample_filter", "fp16_channels_last", "use_noise", "kernel_size",
                "activation", "fused_modconv_default"}
_MAPPING = {"num_layers", "lr_multiplier", "w_avg_beta", "embed_features",
            "layer_features", "activation"}
_D_TOP = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base",
          "channel_max", "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs",
          "mapping_kwargs", "epilogue_kwargs"}
_STYLEGAN3 = {"magnitude_ema_beta", "conv_kernel", "use_radial_filters", "channel_base",
              "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
              "last_stopband_rel", "margin_size", "output_scale", "filter_size",
              "lrelu_upsampling", "use_fp16"}
_UNSET = object()


def _nvlabs_network(record: PersistentRecord, where: str) -> Pretrained:
    if record.class_name not in _POSITIONAL:
        raise UnsupportedNetworkError(f"{where}: an NVlabs {record.class_name}, not a "
                                      "Generator or a Discriminator")
    kwargs = _arguments(record, where)
    if record.class_name == "Generator":
        model_class, arguments = StyleGAN2Generator, _generator_arguments(record, kwargs, where)
    else:
        model_class, arguments = StyleGAN2Discriminator, _discriminator_arguments(
            record, kwargs, where)
    tensors = record.named_tensors()
    expected_filter = fir_filter(arguments["resample_filter"])
    for name, layer in record.named_records():
        key = f"{name}{'.' if name else ''}resample_filter"
        found = tensors.pop(key, None)
        if found is None or not _resamples(layer):  # a layer's unused default filter
            continue
        if found.shape != expected_filter.shape or not torch.allclose(found.float(),
                                                                      expected_filter):
            taps = ", ".join(f"{t:g}" for t in arguments["resample_filter"])
            raise ValueError(f"{where}: {key} is not the [{taps}] filter its arguments name")
    return build_checked(model_class, arguments, {k: v.float() for k, v in tensors.items()},
                         where).eval()


def _resamples(layer: PersistentRecord) -> bool:
    """Whether an NVlabs layer filters with its resample_filter: a block, or a layer that
    up- or downsamples (NVlabs' other layers keep the default filter, unused)."""
    return (layer.class_name in ("SynthesisBlock", "DiscriminatorBlock")
            or layer.state.get("up", 1) != 1 or layer.state.get("down", 1) != 1)


def _arguments(record: PersistentRecord, where: str) -> dict[str, Any]:
    """The record's constructor arguments, positional ones named; plain data only."""
    kwargs = record.init_kwargs
    args = record.state.get("_init_args") or ()
    names = _POSITIONAL[record.class_name]
    if not isinstance(args, (list, tuple)) or len(args) > len(names):
        raise RefusedPickleError(f"{where}: positional arguments {type(args).__name__} that "
                                 f"an NVlabs {record.class_name} does not take")
    kwargs.update(zip(names[:len(args)], args, strict=True))
    for name, value in kwargs.items():
        _plain(value, f"{where}: argument {name}")
    return kwargs


def _plain(value: Any, what: str, depth: int = 0) -> None:
    """RefusedPickleError unless ``value`` is what NVlabs records as an argument: numbers,
    short text, None, lists of numbers, or (once nested) dicts of those."""
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str) and len(value) <= 200:
        return
    if isinstance(value, (list, tuple)) and len(value) <= 64 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return
    if isinstance(value, dict) and depth == 0:
        for key, item in value.items():
            _plain(item, f"{what}.{key}", depth + 1)
        return
    raise RefusedPickleError(f"{what} is a {type(value).__name__}, not a setting NVlabs "
                             "records")


def _sub(kwargs: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(kwargs.get(name) or {})


def _generator_arguments(record: PersistentRecord, kwargs: dict[str, Any],
                         where: str) -> dict[str, Any]:
    if record.child("synthesis.input") is not None or any(
            name.startswith("synthesis.L") for name, _ in record.named_records()):
        raise UnsupportedNetworkError(
            f"{where}: a StyleGAN3 generator (stylegan3-t or stylegan3-r), whose alias-free "
            "synthesis network fastpgan does not build; it reads the stylegan3 "
            "repository's pickles of the StyleGAN2 architecture (--cfg=stylegan2)")
    # the stylegan3 repository passes the synthesis arguments to Generator itself
    synthesis = {k: v for k, v in kwargs.items() if k not in _G_OWN}
    synthesis.update(_sub(kwargs, "synthesis_kwargs"))
    mapping = _sub(kwargs, "mapping_kwargs")
    _supported(where, "synthesis arguments", synthesis, _G_SYNTHESIS, use_noise=True,
               kernel_size=3, activation="lrelu")
    _supported(where, "mapping_kwargs", mapping, _MAPPING, activation="lrelu")
    w_dim = kwargs.get("w_dim", 512)
    _same_width(where, mapping, w_dim)
    architecture = _recorded(record, r"synthesis\.b\d+", "architecture",
                             synthesis.get("architecture", _UNSET), where, "skip")
    if architecture != "skip":
        raise UnsupportedNetworkError(f"{where}: synthesis architecture={architecture!r}; "
                                      "fastpgan builds architecture='skip' only (config F)")
    return dict(
        z_dim=kwargs.get("z_dim"), c_dim=kwargs.get("c_dim"), w_dim=w_dim,
        img_resolution=kwargs.get("img_resolution"), img_channels=kwargs.get("img_channels"),
        **_mapping_arguments(record, mapping, where),
        w_avg_beta=_recorded(record, r"mapping", "w_avg_beta",
                             mapping.get("w_avg_beta", _UNSET), where, 0.995),
        channel_base=synthesis.get("channel_base", 32768),
        channel_max=synthesis.get("channel_max", 512),
        conv_clamp=_recorded(record, r"synthesis\.b\d+\.(conv0|conv1|torgb)", "conv_clamp",
                             synthesis.get("conv_clamp", _UNSET), where, None),
        num_fp16_res=synthesis.get("num_fp16_res", _fp16_blocks(record, "synthesis.b")),
        resample_filter=_taps(synthesis))


def _discriminator_arguments(record: PersistentRecord, kwargs: dict[str, Any],
                             where: str) -> dict[str, Any]:
    _supported(where, "arguments", kwargs, _D_TOP)
    block, mapping, epilogue = (_sub(kwargs, name) for name in
                                ("block_kwargs", "mapping_kwargs", "epilogue_kwargs"))
    _supported(where, "block_kwargs", block,
               {"activation", "resample_filter", "fp16_channels_last", "freeze_layers"},
               activation="lrelu")
    _supported(where, "mapping_kwargs", mapping, _MAPPING, activation="lrelu")
    _supported(where, "epilogue_kwargs", epilogue,
               {"mbstd_group_size", "mbstd_num_channels", "activation"}, activation="lrelu")
    architecture = _recorded(record, r"b\d+", "architecture",
                             kwargs.get("architecture", _UNSET), where, "resnet")
    if architecture not in D_ARCHITECTURES:
        raise UnsupportedNetworkError(f"{where}: architecture={architecture!r}, not one of "
                                      f"NVlabs' {D_ARCHITECTURES}")
    group = _recorded(record, r"b4\.mbstd", "group_size",
                      epilogue.get("mbstd_group_size", _UNSET), where, 4)
    epilogue_modules = (record.child("b4") or record).state.get("_modules") or {}
    if epilogue_modules.get("mbstd", _UNSET) is None:
        channels = 0  # NVlabs sets self.mbstd = None for mbstd_num_channels=0
    else:
        channels = _recorded(record, r"b4\.mbstd", "num_channels",
                             epilogue.get("mbstd_num_channels", _UNSET), where, 1)
    mapped = _mapping_arguments(record, mapping, where) if kwargs.get("c_dim") else {}
    return dict(
        c_dim=kwargs.get("c_dim"), img_resolution=kwargs.get("img_resolution"),
        img_channels=kwargs.get("img_channels"), architecture=architecture,
        channel_base=kwargs.get("channel_base", 32768),
        channel_max=kwargs.get("channel_max", 512),
        conv_clamp=_recorded(record, r"b\d+\.(conv0|conv1|conv)", "conv_clamp",
                             kwargs.get("conv_clamp", _UNSET), where, None),
        num_fp16_res=kwargs.get("num_fp16_res", _fp16_blocks(record, "b")),
        cmap_dim=kwargs.get("cmap_dim"), mbstd_group_size=group,
        mbstd_num_channels=channels, resample_filter=_taps(block), **mapped)


def _mapping_arguments(record: PersistentRecord, mapping: dict[str, Any],
                       where: str) -> dict[str, Any]:
    """The mapping network's depth and learning-rate multiplier (its layers record it as
    their ``bias_gain``)."""
    layers = sum(1 for name, _ in record.named_records() if re.fullmatch(r"mapping\.fc\d+", name))
    if layers and mapping.get("num_layers", layers) != layers:
        raise ValueError(f"{where}: its arguments say {mapping['num_layers']} mapping layers, "
                         f"it holds {layers}")
    return dict(mapping_layers=mapping.get("num_layers", layers or 8),
                mapping_lr_mul=_recorded(record, r"mapping\.fc\d+", "bias_gain",
                                         mapping.get("lr_multiplier", _UNSET), where, 0.01))


def _recorded(record: PersistentRecord, names: str, attribute: str, given: Any, where: str,
              default: Any) -> Any:
    """The setting ``attribute`` as the submodules whose dotted names match ``names``
    recorded it (they must agree, and agree with ``given``, the argument, when both are
    there), else ``given``, else ``default``."""
    found = {_hashable(r.state[attribute]) for name, r in record.named_records()
             if re.fullmatch(names, name) and attribute in r.state}
    if len(found) > 1:
        raise UnsupportedNetworkError(f"{where}: its layers record different {attribute} "
                                      f"({sorted(map(repr, found))}); fastpgan builds one "
                                      "per network")
    if not found:
        return default if given is _UNSET else given
    (value,) = found
    if given is not _UNSET and _hashable(given) != value:
        raise ValueError(f"{where}: its arguments say {attribute}={given!r}, its layers "
                         f"recorded {value!r}")
    return value


def _hashable(value: Any) -> Any:
    _plain(value, "a recorded setting", depth=1)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return value  # 256.0 == 256 hash alike
    return tuple(value) if isinstance(value, list) else value


def _fp16_blocks(record: PersistentRecord, prefix: str) -> int:
    """NVlabs' num_fp16_res as its blocks recorded it (``use_fp16``)."""
    pattern = re.escape(prefix) + r"\d+"
    return sum(1 for name, r in record.named_records()
               if re.fullmatch(pattern, name) and r.state.get("use_fp16") is True)


def _taps(kwargs: dict[str, Any]) -> tuple[float, ...]:
    return tuple(float(t) for t in kwargs.get("resample_filter", FIR_TAPS))


def _supported(where: str, what: str, kwargs: dict[str, Any], known: set[str],
               **required: Any) -> None:
    """UnsupportedNetworkError naming an argument fastpgan's network does not have, or a
    setting of it (``required``) other than the one it builds."""
    unknown = sorted(set(kwargs) - known - _G_OWN)
    if unknown and set(unknown) <= _STYLEGAN3:
        raise UnsupportedNetworkError(f"{where}: StyleGAN3 arguments {unknown}: a StyleGAN3 "
                                      "network, which fastpgan does not build")
    if unknown:
        raise UnsupportedNetworkError(f"{where}: NVlabs {what} {unknown} are not in "
                                      "fastpgan's StyleGAN2 networks (config F)")
    for name, value in required.items():
        if kwargs.get(name, value) != value:
            raise UnsupportedNetworkError(f"{where}: {what} {name}={kwargs[name]!r}; "
                                          f"fastpgan builds {name}={value!r} only (config F)")


def _same_width(where: str, mapping: dict[str, Any], w_dim: int) -> None:
    for name in ("embed_features", "layer_features"):
        if mapping.get(name) not in (None, w_dim):
            raise UnsupportedNetworkError(f"{where}: mapping {name}={mapping[name]} differs "
                                          f"from w_dim {w_dim}, which fastpgan's mapping "
                                          "network does not build")


# ---------------------------------------------------------------- the official ProGAN

_UNSUPPORTED_PROGAN = {"label_size": 0, "fmap_decay": 1.0, "normalize_latents": True,
                       "use_wscale": True, "use_pixelnorm": True, "use_leakyrelu": True,
                       "pixelnorm_epsilon": 1e-8}


def _progan_network(net: TFNetwork, where: str) -> tuple[Pretrained, GrowthStage | None]:
    kw = net.static_kwargs
    for name, value in kw.items():
        _plain(value, f"{where}: argument {name}")
    for name, value in _UNSUPPORTED_PROGAN.items():
        if kw.get(name, value) != value:
            raise UnsupportedNetworkError(f"{where}: {name}={kw[name]!r}; fastpgan's ProGAN "
                                          f"builds {name}={value!r}")
    resolution, channels = kw.get("resolution", 32), kw.get("num_channels", 1)
    fmap_base, fmap_max = kw.get("fmap_base", 8192), kw.get("fmap_max", 512)
    fused = kw.get("fused_scale", True)
    if not isinstance(resolution, int) or not 4 <= resolution <= 2 ** 16:
        raise RefusedPickleError(f"{where}: resolution {resolution!r} is not an image size")
    log2 = int(math.log2(resolution))
    variables = {name: as_tensor(value).float() for name, value in net.variables.items()}
    lod = float(variables.pop("lod", torch.tensor(0.0)))
    if net.build_func_name == "G_paper":
        latent = kw.get("latent_size") or min(fmap_base, fmap_max)
        model_class: type[Pretrained] = ProGANGenerator
        arguments = dict(resolution=resolution, latent_dim=latent, fmap_base=fmap_base,
                         fmap_max=fmap_max, img_channels=channels)
        state = _progan_generator_state(variables, log2, fused, where)
    elif net.build_func_name == "D_paper":
        model_class = ProGANDiscriminator
        arguments = dict(resolution=resolution, latent_dim=512, fmap_base=fmap_base,
                         fmap_max=fmap_max, img_channels=channels,
                         mbstd_group_size=kw.get("mbstd_group_size", 4), fused_scale=fused)
        state = _progan_discriminator_state(variables, log2, fused, where)
    else:
        raise UnsupportedNetworkError(f"{where}: a tfutil.Network built by "
                                      f"{net.build_func_name!r}, not the official ProGAN's "
                                      "G_paper or D_paper")
    model = build_checked(model_class, arguments, state, where)
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

__all__ = ["FOLDERS", "ROLES", "Networks", "RefusedPickleError", "UnsupportedNetworkError",
           "convert", "load"]
