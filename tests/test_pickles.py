"""Published pickles: fixtures made here in each format's exact structure (NVlabs'
persistent records, the official ProGAN's tfutil.Network state), loaded parameter by
parameter and, for ProGAN, run against a reading of the official TensorFlow network
definition; pickles that name anything outside the allow-list are refused with nothing
run."""

from __future__ import annotations

import math
import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from fastpgan.cli.main import main
from fastpgan.models import (
    Pretrained,
    ProGANDiscriminator,
    ProGANGenerator,
    RefusedPickleError,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    convert,
    load,
)
from fastpgan.models import stylegan2 as sg2
from fastpgan.models.pickles import read_pickle
from fastpgan.nn import ConvDownsample2d, EqualizedConv2d, EqualizedLinear, MinibatchStdDev

# ---------------------------------------------------------------- NVlabs' format

NVLABS_CLASS = {  # fastpgan's module -> the NVlabs class in training/networks.py
    StyleGAN2Generator: "Generator", sg2.StyleGAN2Mapping: "MappingNetwork",
    sg2.SynthesisNetwork: "SynthesisNetwork", sg2.SynthesisBlock: "SynthesisBlock",
    sg2.SynthesisLayer: "SynthesisLayer", sg2.ToRGBLayer: "ToRGBLayer",
    EqualizedLinear: "FullyConnectedLayer", EqualizedConv2d: "Conv2dLayer",
    ConvDownsample2d: "Conv2dLayer", StyleGAN2Discriminator: "Discriminator",
    sg2.DiscriminatorBlock: "DiscriminatorBlock",
    sg2.DiscriminatorEpilogue: "DiscriminatorEpilogue", MinibatchStdDev: "MinibatchStdLayer"}
WITH_FILTER = {"Conv2dLayer", "SynthesisLayer", "SynthesisBlock", "DiscriminatorBlock"}


@pytest.fixture
def nvlabs_modules(monkeypatch):
    """Stand-ins for torch_utils.persistence and dnnlib.util under their real names, so
    pickle writes the globals NVlabs' files name."""
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


class _Record:
    """Pickles as NVlabs' persistent_class objects do: _reconstruct_persistent_obj(meta)."""

    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def _nvlabs_record(module, reconstruct, module_src, init_kwargs=None):
    """The persistent record NVlabs' code would write for the same network."""
    class_name = NVLABS_CLASS[type(module)]
    buffers = OrderedDict((k, v) for k, v in module._buffers.items())
    if class_name in WITH_FILTER:
        t = torch.tensor([1.0, 3.0, 3.0, 1.0])
        buffers["resample_filter"] = torch.outer(t, t) / 64
    state = {"training": False, "_parameters": OrderedDict(module._parameters),
             "_buffers": buffers, "_non_persistent_buffers_set": set(),
             "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(),
             "_forward_pre_hooks": OrderedDict(), "_state_dict_hooks": OrderedDict(),
             "_load_state_dict_pre_hooks": OrderedDict(),
             "_modules": OrderedDict((name, _nvlabs_record(child, reconstruct, module_src))
                                     for name, child in module.named_children()),
             "_init_args": (), "_init_kwargs": init_kwargs or {},
             "weight_gain": np.float64(0.125), "activation": "lrelu"}
    return _Record(reconstruct, {"type": "class", "version": 6, "module_src": module_src,
                                 "class_name": class_name, "state": state})


def _nvlabs_snapshot(path, modules, marker, c_dim=0):
    reconstruct, easy = modules
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
    # the module source NVlabs embeds: here, code that would leave a marker if it ran
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    snapshot = {"G": _nvlabs_record(G, reconstruct, src, g_kwargs),
                "D": _nvlabs_record(D, reconstruct, src, d_kwargs),
                "G_ema": _nvlabs_record(G_ema, reconstruct, src, g_kwargs),
                "augment_pipe": None, "training_set_kwargs": easy(path="data.zip", xflip=False)}
    with open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=4)
    return {"G": G, "D": D, "G_ema": G_ema}


@pytest.mark.parametrize("c_dim", [0, 5])
def test_nvlabs_snapshot_loads_parameter_by_parameter(tmp_path, nvlabs_modules, c_dim):
    marker = tmp_path / "ran.txt"
    originals = _nvlabs_snapshot(tmp_path / "network-snapshot.pkl", nvlabs_modules, marker,
                                 c_dim)
    networks = load(tmp_path / "network-snapshot.pkl")
    assert not marker.exists(), "the embedded module source never runs"
    assert networks.kind == "nvlabs-stylegan2"
    assert networks.info["training_set_kwargs"] == {"path": "data.zip", "xflip": False}
    for role, original in originals.items():
        loaded = getattr(networks, role)
        assert type(loaded) is type(original) and not loaded.training
        expected, got = original.state_dict(), loaded.state_dict()
        assert set(got) == set(expected)
        for name in expected:
            assert torch.equal(got[name], expected[name]), f"{role}.{name}"
    z = torch.randn(2, 16)
    c = F.one_hot(torch.tensor([1, 3]), c_dim).float() if c_dim else None
    assert torch.equal(networks.G_ema(z, c, noise_mode="const"),
                       originals["G_ema"](z, c, noise_mode="const"))


def test_from_pretrained_takes_the_pickle(tmp_path, nvlabs_modules):
    originals = _nvlabs_snapshot(tmp_path / "s.pkl", nvlabs_modules, tmp_path / "m")
    G = Pretrained.from_pretrained(tmp_path / "s.pkl")
    D = StyleGAN2Discriminator.from_pretrained(tmp_path / "s.pkl")
    assert torch.equal(G.state_dict()["synthesis.b16.conv0.weight"],
                       originals["G_ema"].state_dict()["synthesis.b16.conv0.weight"])
    assert torch.equal(D.state_dict()["b4.out.weight"],
                       originals["D"].state_dict()["b4.out.weight"])
    with pytest.raises(ValueError, match="holds no ProGANGenerator"):
        ProGANGenerator.from_pretrained(tmp_path / "s.pkl")


def test_convert_then_every_generator_command(tmp_path, nvlabs_modules, capsys):
    _nvlabs_snapshot(tmp_path / "s.pkl", nvlabs_modules, tmp_path / "m")
    assert main(["convert", str(tmp_path / "s.pkl"), str(tmp_path / "out")]) == 0
    for folder in ("generator", "training-generator", "discriminator"):
        assert (tmp_path / "out" / folder / "model.safetensors").exists()
    for source in (tmp_path / "s.pkl", tmp_path / "out"):
        assert main(["generate", str(source), "--seeds", "0-3", "--device", "cpu",
                     "--out", str(tmp_path / "gen")]) == 0
        assert (tmp_path / "gen" / "grid.png").exists()
    assert main(["style-mix", str(tmp_path / "out"), "--rows", "1,2", "--cols", "3",
                 "--layers", "0-2", "--device", "cpu", "--out", str(tmp_path / "mix.png")]) == 0
    assert main(["interpolate", str(tmp_path / "out"), "--seeds", "0,1", "--steps", "2",
                 "--space", "w", "--device", "cpu", "--out", str(tmp_path / "w.gif")]) == 0
    assert main(["generate", str(tmp_path / "out" / "discriminator"), "--device", "cpu",
                 "--out", str(tmp_path / "x")]) == 2
    assert "not a generator" in capsys.readouterr().err


def test_unsupported_nvlabs_architecture_is_named(tmp_path, nvlabs_modules):
    reconstruct, easy = nvlabs_modules
    G = StyleGAN2Generator(16, 0, 16, 8, 3, mapping_layers=1, channel_base=64, channel_max=8)
    kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=8, img_channels=3,
                  synthesis_kwargs=easy(architecture="resnet"))
    with open(tmp_path / "r.pkl", "wb") as f:
        pickle.dump({"G": _nvlabs_record(G, reconstruct, "", kwargs)}, f)
    with pytest.raises(ValueError, match="architecture='resnet'"):
        load(tmp_path / "r.pkl")


# ---------------------------------------------------------------- refused pickles

class _Calls:
    """Pickles as a call of ``fn(*args)`` at load time, as a malicious file would."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class UnknownThing:
    """A class no allow-list names."""


@pytest.mark.parametrize("payload,named", [
    (lambda m: _Calls(os.system, f"touch {m}"), r"(posix|nt|os)\.system"),
    (lambda m: _Calls(eval, f"open({str(m)!r}, 'w').write('x')"), r"builtins\.eval"),
    (lambda m: _Calls(exec, f"open({str(m)!r}, 'w').write('x')"), r"builtins\.exec"),
    (lambda m: UnknownThing(), r"UnknownThing"),
    (lambda m: {"G": [1, {"deep": _Calls(os.system, f"touch {m}")}]}, r"\.system"),
])
def test_pickles_naming_other_globals_are_refused_and_nothing_runs(tmp_path, payload, named):
    marker = tmp_path / "ran.txt"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(payload(marker), f)
    with pytest.raises(RefusedPickleError, match=named):
        load(tmp_path / "evil.pkl")
    with pytest.raises(RefusedPickleError, match="nothing in it ran"):
        read_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_torch_save_files_and_garbage_are_named(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ckpt.pkl")
    with pytest.raises(ValueError, match=r"ckpt\.pkl"):
        load(tmp_path / "ckpt.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"cannot read the pickle .*junk\.pkl"):
        load(tmp_path / "junk.pkl")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError, match="neither an NVlabs"):
        load(tmp_path / "list.pkl")


def test_numpy_arrays_are_decoded_without_numpy(tmp_path):
    arrays = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3),
              "f64_fortran": np.asfortranarray(np.random.rand(3, 4)),
              "i64": np.array([[-1, 2], [3, 4]], dtype=np.int64), "scalar": np.float32(2.5),
              "empty": np.zeros((0, 3), dtype=np.float32)}
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump(arrays, f)
    from fastpgan.models.pickles import as_tensor

    data = read_pickle(tmp_path / "a.pkl")
    for name, array in arrays.items():
        assert torch.equal(as_tensor(data[name]).to(torch.float64),
                           torch.as_tensor(np.asarray(array, dtype=np.float64))), name
    with open(tmp_path / "o.pkl", "wb") as f:
        pickle.dump(np.array([object()], dtype=object), f)
    with pytest.raises(RefusedPickleError):
        read_pickle(tmp_path / "o.pkl")


# ---------------------------------------------------------------- the official ProGAN

def _nf(stage, fmap_base=64, fmap_max=16):
    return min(int(fmap_base / 2.0 ** stage), fmap_max)


def _progan_variables(resolution, fused, rng, channels=3):
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


def _write_progan(path, monkeypatch, resolution, fused, variables=None, version=2):
    tfutil = types.ModuleType("tfutil")

    class Network:
        def __init__(self, state):
            self.state = state

        def __getstate__(self):
            return self.state

    Network.__module__, Network.__qualname__ = "tfutil", "Network"
    tfutil.Network = Network
    monkeypatch.setitem(sys.modules, "tfutil", tfutil)
    g, d = variables or _progan_variables(resolution, fused, np.random.default_rng(0))
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
    data = pickle.dumps(nets, protocol=3)  # Python 3.6's default, as in 2018
    # numpy 1.x, which wrote the published files, named its module numpy.core
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    return dict(g), dict(d)


SQRT2 = math.sqrt(2)


def _tf_weight(w, gain=SQRT2, fan_in=None):
    """networks.py's get_weight with use_wscale: N(0, 1) times He's constant."""
    w = torch.as_tensor(w, dtype=torch.float64)
    fan_in = fan_in or math.prod(w.shape[:-1])
    return w * (gain / math.sqrt(fan_in))


def _lrelu(x):
    return torch.maximum(x * 0.2, x)


def _pn(x):
    return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


def _tf_conv(x, w, b, gain=SQRT2):  # tf.nn.conv2d, NCHW, SAME, w [k, k, in, out]
    w = _tf_weight(w, gain)
    return F.conv2d(x, w.permute(3, 2, 0, 1), padding=w.shape[0] // 2) + _bias(b)


def _bias(b):
    return torch.as_tensor(b, dtype=torch.float64).view(1, -1, 1, 1)


def _shift_sum(w):
    w = F.pad(w.permute(2, 3, 0, 1), [1, 1, 1, 1]).permute(2, 3, 0, 1)  # pad the k axes
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def _tf_upscale_conv(x, w, b):  # upscale2d_conv2d: conv2d_transpose, w [k, k, out, in]
    k, _, _, fan = w.shape
    w = _shift_sum(_tf_weight(w, fan_in=k * k * fan))
    # tf.nn.conv2d_transpose is the adjoint of conv2d; 'SAME' with a 4x4 kernel pads 1
    return F.conv_transpose2d(x, w.permute(3, 2, 0, 1), stride=2, padding=1) + _bias(b)


def _tf_conv_down(x, w, b):  # conv2d_downscale2d
    w = _shift_sum(_tf_weight(w)) * 0.25
    return F.conv2d(x, w.permute(3, 2, 0, 1), stride=2, padding=1) + _bias(b)


def _tf_dense(x, w, b, gain=SQRT2):
    return x.flatten(1) @ _tf_weight(w, gain) + torch.as_tensor(b, dtype=torch.float64)


def _g_paper(v, z, log2, fused):
    """G_paper at lod 0, read from networks.py."""
    x = _pn(z)
    x = _tf_dense(x, v["4x4/Dense/weight"], 0, gain=math.sqrt(2) / 4)
    x = _pn(_lrelu(x.view(z.shape[0], -1, 4, 4) + _bias(v["4x4/Dense/bias"])))
    x = _pn(_lrelu(_tf_conv(x, v["4x4/Conv/weight"], v["4x4/Conv/bias"])))
    for res in range(3, log2 + 1):
        s = f"{2 ** res}x{2 ** res}"
        if fused:
            x = _pn(_lrelu(_tf_upscale_conv(x, v[f"{s}/Conv0_up/weight"], v[f"{s}/Conv0_up/bias"])))
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # upscale2d: tiling
            x = _pn(_lrelu(_tf_conv(x, v[f"{s}/Conv0/weight"], v[f"{s}/Conv0/bias"])))
        x = _pn(_lrelu(_tf_conv(x, v[f"{s}/Conv1/weight"], v[f"{s}/Conv1/bias"])))
    return _tf_conv(x, v["ToRGB_lod0/weight"], v["ToRGB_lod0/bias"], gain=1)


def _d_paper(v, img, log2, fused, group=4):
    """D_paper at lod 0, read from networks.py."""
    x = _lrelu(_tf_conv(img, v["FromRGB_lod0/weight"], v["FromRGB_lod0/bias"]))
    for res in range(log2, 2, -1):
        s = f"{2 ** res}x{2 ** res}"
        x = _lrelu(_tf_conv(x, v[f"{s}/Conv0/weight"], v[f"{s}/Conv0/bias"]))
        if fused:
            x = _lrelu(_tf_conv_down(x, v[f"{s}/Conv1_down/weight"], v[f"{s}/Conv1_down/bias"]))
        else:
            x = F.avg_pool2d(_lrelu(_tf_conv(x, v[f"{s}/Conv1/weight"], v[f"{s}/Conv1/bias"])), 2)
    g = min(group, x.shape[0])  # minibatch_stddev_layer
    y = x.reshape(g, -1, *x.shape[1:])
    y = ((y - y.mean(0, keepdim=True)).square().mean(0) + 1e-8).sqrt().mean((1, 2, 3))
    x = torch.cat([x, y.view(-1, 1, 1, 1).repeat(g, 1, *x.shape[2:])], 1)
    x = _lrelu(_tf_conv(x, v["4x4/Conv/weight"], v["4x4/Conv/bias"]))
    x = _lrelu(_tf_dense(x, v["4x4/Dense0/weight"], v["4x4/Dense0/bias"]))
    return _tf_dense(x, v["4x4/Dense1/weight"], v["4x4/Dense1/bias"], gain=1)


@pytest.mark.parametrize("fused", [True, False])
def test_official_progan_pickle_matches_the_official_definition(tmp_path, monkeypatch, fused):
    g_vars, d_vars = _write_progan(tmp_path / "karras2018iclr.pkl", monkeypatch, 16, fused)
    networks = load(tmp_path / "karras2018iclr.pkl")
    assert not (tmp_path / "karras2018iclr.ran").exists(), "the build module never runs"
    assert networks.kind == "progan-tf" and networks.stage is None
    assert isinstance(networks.G_ema, ProGANGenerator)
    assert isinstance(networks.D, ProGANDiscriminator)
    z = torch.randn(8, 16, dtype=torch.float64)
    expected = _g_paper(g_vars, z, 4, fused)
    images = networks.G_ema(z.float())
    assert_close(images, expected, 1e-5, "Gs")
    assert_close(networks.D(images), _d_paper(d_vars, images.double(), 4, fused), 1e-5, "D")


def test_official_progan_snapshot_stage_comes_from_lod(tmp_path, monkeypatch):
    g, d = _progan_variables(16, True, np.random.default_rng(1))
    g[0] = d[0] = ("lod", np.float32(1.25))  # 8x8, 75 % faded in
    _write_progan(tmp_path / "snap.pkl", monkeypatch, 16, True, (g, d))
    stage = load(tmp_path / "snap.pkl").stage
    assert (stage.resolution, stage.alpha) == (8, 0.75)
    written = convert(tmp_path / "snap.pkl", tmp_path / "out")
    assert set(written) == {"G", "D", "G_ema"}
    assert load(tmp_path / "out").stage == stage


def test_theano_era_and_missing_variables_are_named(tmp_path, monkeypatch):
    _write_progan(tmp_path / "old.pkl", monkeypatch, 8, True, version=1)
    with pytest.raises(RefusedPickleError, match="Theano-era"):
        load(tmp_path / "old.pkl")
    g, d = _progan_variables(8, True, np.random.default_rng(2))
    cut = [v for v in g if "Conv1" not in v[0]]
    _write_progan(tmp_path / "cut.pkl", monkeypatch, 8, True, (cut, d))
    with pytest.raises(ValueError, match="8x8/Conv1/weight' is missing"):
        load(tmp_path / "cut.pkl")
