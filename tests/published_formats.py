"""Writers of the published networks' pickle formats, for tests: NVlabs' persistent
records (with the attributes NVlabs' layers keep in their state, as their files hold
them) and the official ProGAN's tfutil.Network state, built from fastpgan's own modules
under the globals the real files name; and a payload that runs code when unpickled."""

from __future__ import annotations

import math
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import torch

from fastpgan.models import StyleGAN2Discriminator, StyleGAN2Generator
from fastpgan.models import stylegan2 as sg2
from fastpgan.nn import ConvDownsample2d, EqualizedConv2d, EqualizedLinear, MinibatchStdDev

NVLABS_CLASS = {  # fastpgan's module -> the NVlabs class in training/networks.py
    StyleGAN2Generator: "Generator", sg2.StyleGAN2Mapping: "MappingNetwork",
    sg2.SynthesisNetwork: "SynthesisNetwork", sg2.SynthesisBlock: "SynthesisBlock",
    sg2.SynthesisLayer: "SynthesisLayer", sg2.ToRGBLayer: "ToRGBLayer",
    EqualizedLinear: "FullyConnectedLayer", EqualizedConv2d: "Conv2dLayer",
    ConvDownsample2d: "Conv2dLayer", StyleGAN2Discriminator: "Discriminator",
    sg2.DiscriminatorBlock: "DiscriminatorBlock",
    sg2.DiscriminatorEpilogue: "DiscriminatorEpilogue", MinibatchStdDev: "MinibatchStdLayer"}
WITH_FILTER = {"Conv2dLayer", "SynthesisLayer", "SynthesisBlock", "DiscriminatorBlock"}


def install_nvlabs_modules(monkeypatch):
    """Stand-ins for torch_utils.persistence and dnnlib.util under their real names, so
    pickle writes the globals NVlabs' files name; returns (reconstruct, EasyDict)."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("only for writing")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    easy = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = easy
    for name, module in [("torch_utils", types.ModuleType("torch_utils")),
                         ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, module)
    return _reconstruct_persistent_obj, easy


class Record:
    """Pickles as NVlabs' persistent_class objects do: _reconstruct_persistent_obj(meta)."""

    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


class Calls:
    """Pickles as a call of ``fn(*args)`` at load time, as a malicious file would."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def nvlabs_attributes(name, module, network):
    """What NVlabs' module of this kind keeps in its __dict__ besides tensors and
    submodules, for the module at dotted ``name`` of ``network`` (its config): the
    settings the reader takes from the layers rather than the arguments."""
    config = network.config
    kind = NVLABS_CLASS[type(module)]
    if kind == "FullyConnectedLayer":
        lr = module.lr_mul
        return {"activation": module.epilogue.act, "bias_gain": lr,
                "weight_gain": lr / math.sqrt(module.weight.shape[1])}
    if kind == "Conv2dLayer":
        no_clamp = name.endswith(".skip") or name == "b4.fromrgb"
        return {"activation": module.epilogue.act, "up": 1,
                "down": 2 if isinstance(module, ConvDownsample2d) else 1,
                "conv_clamp": None if no_clamp else config["conv_clamp"]}
    if kind == "SynthesisLayer":
        return {"up": 2 if module.up else 1, "conv_clamp": module.conv_clamp,
                "activation": "lrelu", "resolution": module.resolution}
    if kind == "ToRGBLayer":
        return {"conv_clamp": module.conv_clamp}
    if kind in ("SynthesisBlock", "DiscriminatorBlock", "DiscriminatorEpilogue"):
        architecture = "skip" if kind == "SynthesisBlock" else module.architecture
        return {"architecture": architecture, "use_fp16": False}
    if kind == "MinibatchStdLayer":
        return {"group_size": module.group_size, "num_channels": module.num_channels}
    if kind == "MappingNetwork":
        return {"num_layers": module.num_layers, "w_avg_beta": module.w_avg_beta}
    return {}


def nvlabs_record(module, reconstruct, module_src, init_kwargs=None, *, network=None,
                  name="", taps=(1.0, 3.0, 3.0, 1.0)):
    """The persistent record NVlabs' code would write for the same network."""
    network = network or module
    class_name = NVLABS_CLASS[type(module)]
    buffers = OrderedDict((k, v) for k, v in module._buffers.items())
    if class_name in WITH_FILTER:
        t = torch.tensor(taps)
        buffers["resample_filter"] = torch.outer(t, t) / t.sum() ** 2
    children = OrderedDict(
        (child, nvlabs_record(sub, reconstruct, module_src, network=network,
                              name=f"{name}{'.' if name else ''}{child}", taps=taps))
        for child, sub in module.named_children())
    if isinstance(module, sg2.DiscriminatorEpilogue) and module.mbstd is None:
        children["mbstd"] = None
    state = {"training": False, "_parameters": OrderedDict(module._parameters),
             "_buffers": buffers, "_non_persistent_buffers_set": set(),
             "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(),
             "_forward_pre_hooks": OrderedDict(), "_state_dict_hooks": OrderedDict(),
             "_load_state_dict_pre_hooks": OrderedDict(), "_modules": children,
             "_init_args": (), "_init_kwargs": init_kwargs or {},
             **nvlabs_attributes(name, module, network)}
    return Record(reconstruct, {"type": "class", "version": 6, "module_src": module_src,
                                "class_name": class_name, "state": state})


def marker_source(marker):
    """Module source of the kind NVlabs embeds: here, code that leaves a marker if run."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"


def write_snapshot(path, modules, marker, networks, kwargs, *, protocol=4,
                   taps=(1.0, 3.0, 3.0, 1.0)):
    """An NVlabs snapshot pickle of ``networks`` by role, recorded with ``kwargs`` by role
    (the constructor arguments NVlabs' training loop passed)."""
    reconstruct, easy = modules
    src = marker_source(marker)
    snapshot = {role: nvlabs_record(net, reconstruct, src, kwargs[role], taps=taps)
                for role, net in networks.items()}
    snapshot.update(augment_pipe=None, training_set_kwargs=easy(path="data.zip", xflip=False))
    with open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=protocol)


def nvlabs_snapshot(path, modules, marker, c_dim=0):
    """A small conditional-or-not config F snapshot; returns its networks by role."""
    easy = modules[1]
    G = StyleGAN2Generator(16, c_dim, 16, 16, 3, mapping_layers=2, channel_base=128,
                           channel_max=16, conv_clamp=256).eval()
    G_ema = StyleGAN2Generator(**G.config).eval()
    D = StyleGAN2Discriminator(c_dim, 16, 3, channel_base=128, channel_max=16,
                               conv_clamp=256, mapping_layers=2).eval()
    common = dict(c_dim=c_dim, img_resolution=16, img_channels=3)
    g_kwargs = dict(z_dim=16, w_dim=16, mapping_kwargs=easy(num_layers=2),
                    synthesis_kwargs=easy(channel_base=128, channel_max=16, num_fp16_res=2,
                                          conv_clamp=256), **common)
    d_kwargs = dict(block_kwargs=easy(), mapping_kwargs=easy(num_layers=2),
                    epilogue_kwargs=easy(mbstd_group_size=4), channel_base=128,
                    channel_max=16, num_fp16_res=2, conv_clamp=256, **common)
    networks = {"G": G, "D": D, "G_ema": G_ema}
    write_snapshot(path, modules, marker, networks,
                   {"G": g_kwargs, "D": d_kwargs, "G_ema": g_kwargs})
    return networks


# ---------------------------------------------------------------- the official ProGAN

def _nf(stage, fmap_base=64, fmap_max=16):
    return min(int(fmap_base / 2.0 ** stage), fmap_max)


def progan_variables(resolution, fused, rng, channels=3):
    """Random variables with the names and shapes networks.py's G_paper / D_paper give."""
    log2 = int(math.log2(resolution))

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    g = [("lod", np.float32(0.0)), ("4x4/Dense/weight", w(_nf(0), _nf(1) * 16)),
         ("4x4/Dense/bias", w(_nf(1))), ("4x4/Conv/weight", w(3, 3, _nf(1), _nf(1))),
         ("4x4/Conv/bias", w(_nf(1)))]
    d = [("lod", np.float32(0.0))]
    for res in range(3, log2 + 1):
        scope = f"{2 ** res}x{2 ** res}"
        conv0 = (f"{scope}/Conv0_up", w(3, 3, _nf(res - 1), _nf(res - 2))) if fused else \
            (f"{scope}/Conv0", w(3, 3, _nf(res - 2), _nf(res - 1)))
        g += [(conv0[0] + "/weight", conv0[1]), (conv0[0] + "/bias", w(_nf(res - 1))),
              (f"{scope}/Conv1/weight", w(3, 3, _nf(res - 1), _nf(res - 1))),
              (f"{scope}/Conv1/bias", w(_nf(res - 1)))]
        down = f"{scope}/Conv1_down" if fused else f"{scope}/Conv1"
        d += [(f"{scope}/Conv0/weight", w(3, 3, _nf(res - 1), _nf(res - 1))),
              (f"{scope}/Conv0/bias", w(_nf(res - 1))),
              (f"{down}/weight", w(3, 3, _nf(res - 1), _nf(res - 2))),
              (f"{down}/bias", w(_nf(res - 2)))]
    for res in range(2, log2 + 1):
        lod = log2 - res
        g += [(f"ToRGB_lod{lod}/weight", w(1, 1, _nf(res - 1), channels)),
              (f"ToRGB_lod{lod}/bias", w(channels))]
        d += [(f"FromRGB_lod{lod}/weight", w(1, 1, channels, _nf(res - 1))),
              (f"FromRGB_lod{lod}/bias", w(_nf(res - 1)))]
    d += [("4x4/Conv/weight", w(3, 3, _nf(1) + 1, _nf(1))), ("4x4/Conv/bias", w(_nf(1))),
          ("4x4/Dense0/weight", w(_nf(1) * 16, _nf(0))), ("4x4/Dense0/bias", w(_nf(0))),
          ("4x4/Dense1/weight", w(_nf(0), 1)), ("4x4/Dense1/bias", w(1))]
    return g, d


def write_progan(path, monkeypatch, resolution, fused, variables=None, version=2, protocol=3):
    tfutil = types.ModuleType("tfutil")

    class Network:
        def __init__(self, state):
            self.state = state

        def __getstate__(self):
            return self.state

    Network.__module__, Network.__qualname__ = "tfutil", "Network"
    tfutil.Network = Network
    monkeypatch.setitem(sys.modules, "tfutil", tfutil)
    g, d = variables or progan_variables(resolution, fused, np.random.default_rng(0))
    kwargs = dict(num_channels=3, resolution=resolution, label_size=0, fmap_base=64,
                  fmap_max=16, fused_scale=fused)
    # the build module's source: code that would leave a marker if it ran
    src = f"open({str(path.with_suffix('.ran'))!r}, 'w').write('ran')"

    def net(name, func, variables, extra=None):
        state = {"version": version, "name": name, "static_kwargs": {**kwargs, **(extra or {})},
                 "build_module_src": src, "build_func_name": func, "variables": variables}
        return Network(state)

    nets = (net("G", "G_paper", g), net("D", "D_paper", d, {"mbstd_group_size": 4}),
            net("Gs", "G_paper", g))
    data = pickle.dumps(nets, protocol=protocol)  # 3: Python 3.6's default, as in 2018
    # numpy 1.x, which wrote the published files, named its module numpy.core
    if protocol < 4:  # names as newline-ended text, which a replacement keeps valid
        data = data.replace(b"numpy._core.", b"numpy.core.")
    path.write_bytes(data)
    return dict(g), dict(d)
