"""Published pickles: fixtures made here in each format's exact structure (NVlabs'
persistent records, the official ProGAN's tfutil.Network state), loaded parameter by
parameter and, for ProGAN, run against a reading of the official TensorFlow network
definition; pickles that name anything outside the allow-list are refused with nothing
run."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close
from published_formats import (
    Calls,
    nvlabs_record,
    nvlabs_snapshot,
    progan_variables,
    write_progan,
)

from fastpgan.cli.main import main
from fastpgan.files import read_pickle
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
from fastpgan.nn import MinibatchStdDev


@pytest.mark.parametrize("c_dim", [0, 5])
def test_nvlabs_snapshot_loads_parameter_by_parameter(tmp_path, nvlabs_modules, c_dim):
    marker = tmp_path / "ran.txt"
    originals = nvlabs_snapshot(tmp_path / "network-snapshot.pkl", nvlabs_modules, marker,
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
    originals = nvlabs_snapshot(tmp_path / "s.pkl", nvlabs_modules, tmp_path / "m")
    G = Pretrained.from_pretrained(tmp_path / "s.pkl")
    D = StyleGAN2Discriminator.from_pretrained(tmp_path / "s.pkl")
    assert torch.equal(G.state_dict()["synthesis.b16.conv0.weight"],
                       originals["G_ema"].state_dict()["synthesis.b16.conv0.weight"])
    assert torch.equal(D.state_dict()["b4.out.weight"],
                       originals["D"].state_dict()["b4.out.weight"])
    with pytest.raises(ValueError, match="holds no ProGANGenerator"):
        ProGANGenerator.from_pretrained(tmp_path / "s.pkl")


def test_convert_then_every_generator_command(tmp_path, nvlabs_modules, capsys):
    nvlabs_snapshot(tmp_path / "s.pkl", nvlabs_modules, tmp_path / "m")
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
        pickle.dump({"G": nvlabs_record(G, reconstruct, "", kwargs)}, f)
    with pytest.raises(ValueError, match="architecture='resnet'"):
        load(tmp_path / "r.pkl")


# ---------------------------------------------------------------- refused pickles

class UnknownThing:
    """A class no allow-list names."""


@pytest.mark.parametrize("payload,named", [
    (lambda m: Calls(os.system, f"touch {m}"), r"(posix|nt|os)\.system"),
    (lambda m: Calls(eval, f"open({str(m)!r}, 'w').write('x')"), r"builtins\.eval"),
    (lambda m: Calls(exec, f"open({str(m)!r}, 'w').write('x')"), r"builtins\.exec"),
    (lambda m: UnknownThing(), r"UnknownThing"),
    (lambda m: {"G": [1, {"deep": Calls(os.system, f"touch {m}")}]}, r"\.system"),
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
    with pytest.raises(ValueError, match=r"junk\.pkl is a text file"):
        load(tmp_path / "junk.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"G": list(range(100))}, protocol=4)[:50])
    with pytest.raises(ValueError, match=r"cannot read the pickle .*cut\.pkl"):
        load(tmp_path / "cut.pkl")
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
    from fastpgan.files import as_tensor

    data = read_pickle(tmp_path / "a.pkl")
    for name, array in arrays.items():
        assert torch.equal(as_tensor(data[name]).to(torch.float64),
                           torch.as_tensor(np.asarray(array, dtype=np.float64))), name
    with open(tmp_path / "o.pkl", "wb") as f:
        pickle.dump(np.array([object()], dtype=object), f)
    with pytest.raises(RefusedPickleError):
        read_pickle(tmp_path / "o.pkl")


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


@pytest.mark.parametrize("fused,protocol", [(True, 3), (False, 3), (True, 5)])
def test_official_progan_pickle_matches_the_official_definition(tmp_path, monkeypatch, fused,
                                                                protocol):
    """Protocol 5 is what the official misc.save_pkl writes under Python >= 3.8: its
    arrays are numpy.core.numeric._frombuffer calls."""
    g_vars, d_vars = write_progan(tmp_path / "karras2018iclr.pkl", monkeypatch, 16, fused,
                                  protocol=protocol)
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
    g, d = progan_variables(16, True, np.random.default_rng(1))
    g[0] = d[0] = ("lod", np.float32(1.25))  # 8x8, 75 % faded in
    write_progan(tmp_path / "snap.pkl", monkeypatch, 16, True, (g, d))
    stage = load(tmp_path / "snap.pkl").stage
    assert (stage.resolution, stage.alpha) == (8, 0.75)
    written = convert(tmp_path / "snap.pkl", tmp_path / "out")
    assert set(written) == {"G", "D", "G_ema"}
    assert load(tmp_path / "out").stage == stage


def test_theano_era_and_missing_variables_are_named(tmp_path, monkeypatch):
    write_progan(tmp_path / "old.pkl", monkeypatch, 8, True, version=1)
    with pytest.raises(RefusedPickleError, match="Theano-era"):
        load(tmp_path / "old.pkl")
    g, d = progan_variables(8, True, np.random.default_rng(2))
    cut = [v for v in g if "Conv1" not in v[0]]
    write_progan(tmp_path / "cut.pkl", monkeypatch, 8, True, (cut, d))
    with pytest.raises(ValueError, match="8x8/Conv1/weight' is missing"):
        load(tmp_path / "cut.pkl")


# ---------------------------------------------------------------- NVlabs' other settings

def _write(tmp_path, modules, networks, kwargs, name="s.pkl", **options):
    from published_formats import write_snapshot

    write_snapshot(tmp_path / name, modules, tmp_path / "ran.txt", networks, kwargs, **options)
    return tmp_path / name


def _randomized(*nets):
    """Nonzero biases and noise strengths, so every term of the networks matters."""
    with torch.no_grad():
        for net in nets:
            for name, p in net.named_parameters():
                if name.endswith(("bias", "noise_strength")):
                    p.normal_(0, 0.5)
    return [net.eval() for net in nets]


def _same_outputs(loaded, original, c_dim=0, batch=6):
    x = torch.randn(batch, 3, original.img_resolution, original.img_resolution)
    c = F.one_hot(torch.arange(batch) % c_dim, c_dim).float() if c_dim else None
    with torch.no_grad():
        if isinstance(original, StyleGAN2Generator):
            z = torch.randn(batch, original.z_dim)
            assert_close(loaded(z, c, noise_mode="const"), original(z, c, noise_mode="const"),
                         1e-6, "G")
        else:
            assert_close(loaded(x, c), original(x, c), 1e-6, "D")


@pytest.mark.parametrize("architecture", ["orig", "skip"])
def test_nvlabs_discriminator_architectures_load(tmp_path, nvlabs_modules, architecture):
    """NVlabs' cfg=cifar trains D with architecture='orig' (and conditional, and
    mbstd_group_size 32); 'skip' feeds the image to every block."""
    easy = nvlabs_modules[1]
    G, D = _randomized(
        StyleGAN2Generator(16, 10, 16, 16, 3, mapping_layers=2, channel_base=128,
                           channel_max=16, conv_clamp=256),
        StyleGAN2Discriminator(10, 16, 3, architecture=architecture, channel_base=128,
                               channel_max=16, conv_clamp=256, mbstd_group_size=32))
    common = dict(c_dim=10, img_resolution=16, img_channels=3)
    g_kwargs = dict(z_dim=16, w_dim=16, mapping_kwargs=easy(num_layers=2),
                    synthesis_kwargs=easy(channel_base=128, channel_max=16, conv_clamp=256),
                    **common)
    d_kwargs = dict(architecture=architecture, channel_base=128, channel_max=16,
                    conv_clamp=256, block_kwargs=easy(), mapping_kwargs=easy(),
                    epilogue_kwargs=easy(mbstd_group_size=32), **common)
    networks = load(_write(tmp_path, nvlabs_modules, {"G": G, "D": D, "G_ema": G},
                           {"G": g_kwargs, "D": d_kwargs, "G_ema": g_kwargs}))
    assert networks.D.config["architecture"] == architecture and not networks.notes
    _same_outputs(networks.D, D, c_dim=10, batch=8)
    _same_outputs(networks.G_ema, G, c_dim=10)


def test_an_unsupported_discriminator_leaves_the_generators_loaded(tmp_path, nvlabs_modules,
                                                                   capsys):
    easy = nvlabs_modules[1]
    G, D = _randomized(StyleGAN2Generator(16, 0, 16, 8, 3, mapping_layers=1, channel_base=64,
                                          channel_max=8),
                       StyleGAN2Discriminator(0, 8, 3, channel_base=64, channel_max=8))
    common = dict(c_dim=0, img_resolution=8, img_channels=3)
    g_kwargs = dict(z_dim=16, w_dim=16, mapping_kwargs=easy(num_layers=1),
                    synthesis_kwargs=easy(channel_base=64, channel_max=8), **common)
    d_kwargs = dict(channel_base=64, channel_max=8, block_kwargs=easy(activation="relu"),
                    **common)
    path = _write(tmp_path, nvlabs_modules, {"G": G, "D": D, "G_ema": G},
                  {"G": g_kwargs, "D": d_kwargs, "G_ema": g_kwargs})
    networks = load(path)
    assert networks.D is None and networks.G is not None and networks.G_ema is not None
    assert networks.notes == [f"D left out: {path} [D]: block_kwargs activation='relu'; "
                              "fastpgan builds activation='lrelu' only (config F)"]
    _same_outputs(networks.G_ema, G)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 0
    assert "note: D left out" in capsys.readouterr().err
    assert not (tmp_path / "out" / "discriminator").exists()


def test_the_label_mapping_keeps_its_learning_rate_multiplier(tmp_path, nvlabs_modules):
    easy = nvlabs_modules[1]
    (D,) = _randomized(StyleGAN2Discriminator(4, 8, 3, channel_base=64, channel_max=8,
                                              mapping_layers=2, mapping_lr_mul=0.1))
    d_kwargs = dict(c_dim=4, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                    mapping_kwargs=easy(num_layers=2, lr_multiplier=0.1))
    networks = load(_write(tmp_path, nvlabs_modules, {"D": D}, {"D": d_kwargs}))
    assert networks.D.config["mapping_lr_mul"] == 0.1
    _same_outputs(networks.D, D, c_dim=4)


def test_stylegan3_repository_pickles_keep_their_recorded_settings(tmp_path, nvlabs_modules):
    """The stylegan3 repository passes channel_base / channel_max to Generator itself and
    leaves conv_clamp (256 there) and num_fp16_res at its classes' defaults, so only the
    layers record them; here a clamp of 0.5 that bites everywhere."""
    easy = nvlabs_modules[1]
    G, D = _randomized(
        StyleGAN2Generator(16, 0, 16, 16, 3, mapping_layers=2, channel_base=64,
                           channel_max=8, conv_clamp=0.5),
        StyleGAN2Discriminator(0, 16, 3, channel_base=64, channel_max=8, conv_clamp=0.5))
    common = dict(c_dim=0, img_resolution=16, img_channels=3)
    g_kwargs = dict(z_dim=16, w_dim=16, mapping_kwargs=easy(num_layers=2), channel_base=64,
                    channel_max=8, fused_modconv_default="inference_only", **common)
    d_kwargs = dict(channel_base=64, channel_max=8, block_kwargs=easy(freeze_layers=0),
                    mapping_kwargs=easy(), epilogue_kwargs=easy(mbstd_group_size=4), **common)
    networks = load(_write(tmp_path, nvlabs_modules, {"G": G, "D": D, "G_ema": G},
                           {"G": g_kwargs, "D": d_kwargs, "G_ema": g_kwargs}))
    assert networks.G_ema.config["conv_clamp"] == networks.D.config["conv_clamp"] == 0.5
    assert networks.G_ema.config["channel_base"] == 64
    _same_outputs(networks.G_ema, G)
    _same_outputs(networks.D, D, batch=8)


def test_stylegan3_generators_are_refused_by_name(tmp_path, nvlabs_modules):
    """stylegan3-t / -r: a synthesis network of another kind (an input layer of Fourier
    features and layers L0..L14), read as records but not built."""
    from published_formats import Record

    reconstruct = nvlabs_modules[0]

    def record(class_name, modules=None, **kwargs):
        state = {"_parameters": {}, "_buffers": {}, "_modules": modules or {},
                 "_init_kwargs": kwargs}
        return Record(reconstruct, {"type": "class", "module_src": "", "class_name":
                                    class_name, "state": state})

    synthesis = record("SynthesisNetwork", {"input": record("SynthesisInput"),
                                            "L0_36_512": record("SynthesisLayer")})
    G = record("Generator", {"synthesis": synthesis}, z_dim=512, c_dim=0, w_dim=512,
               img_resolution=256, img_channels=3, magnitude_ema_beta=0.999)
    (tmp_path / "sg3.pkl").write_bytes(pickle.dumps({"G_ema": G}, protocol=4))
    with pytest.raises(ValueError, match=r"\[G_ema\]: a StyleGAN3 generator \(stylegan3-t or "
                                         r"stylegan3-r\)"):
        load(tmp_path / "sg3.pkl")
    assert main(["generate", str(tmp_path / "sg3.pkl"), "--device", "cpu",
                 "--out", str(tmp_path / "x")]) == 2


def test_a_whole_minibatch_deviation_group_loads_and_runs(tmp_path, nvlabs_modules):
    """mbstd_group_size=None (NVlabs: the entire minibatch; their TF converter writes it)."""
    easy = nvlabs_modules[1]
    (D,) = _randomized(StyleGAN2Discriminator(0, 8, 3, channel_base=64, channel_max=8,
                                              mbstd_group_size=None))
    d_kwargs = dict(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                    epilogue_kwargs=easy(mbstd_group_size=None))
    networks = load(_write(tmp_path, nvlabs_modules, {"D": D}, {"D": d_kwargs}))
    assert networks.D.config["mbstd_group_size"] is None
    _same_outputs(networks.D, D, batch=7)
    x = torch.randn(5, 8, 4, 4)
    y = ((x - x.mean(0)).square().mean(0) + 1e-8).sqrt().mean()  # NVlabs' with G = N
    assert torch.allclose(MinibatchStdDev(None)(x)[:, -1], y.expand(5, 4, 4))


@pytest.mark.parametrize("taps", [(1.0, 2.0, 1.0), (1.0, 1.0)])
def test_other_resampling_filters_load(tmp_path, nvlabs_modules, taps):
    easy = nvlabs_modules[1]
    G, D = _randomized(
        StyleGAN2Generator(16, 0, 16, 16, 3, mapping_layers=1, channel_base=64, channel_max=8,
                           resample_filter=taps),
        StyleGAN2Discriminator(0, 16, 3, channel_base=64, channel_max=8, resample_filter=taps,
                               mbstd_group_size=2))
    common = dict(c_dim=0, img_resolution=16, img_channels=3)
    g_kwargs = dict(z_dim=16, w_dim=16, mapping_kwargs=easy(num_layers=1),
                    synthesis_kwargs=easy(channel_base=64, channel_max=8,
                                          resample_filter=list(taps)), **common)
    d_kwargs = dict(channel_base=64, channel_max=8, block_kwargs=easy(resample_filter=list(taps)),
                    epilogue_kwargs=easy(mbstd_group_size=2), **common)
    networks = load(_write(tmp_path, nvlabs_modules, {"G": G, "D": D, "G_ema": G},
                           {"G": g_kwargs, "D": d_kwargs, "G_ema": g_kwargs}, taps=taps))
    _same_outputs(networks.G_ema, G)
    _same_outputs(networks.D, D)


def test_published_networks_take_nvlabs_seeds(tmp_path, nvlabs_modules):
    """A seed gives a published network the z NVlabs' generate.py draws for it:
    np.random.RandomState(seed).randn(z_dim); --seed-rng torch gives fastpgan's own."""
    from fastpgan.generate import seed_latents
    from fastpgan.runs.pictures import save_grid

    z = seed_latents([3, 5], 16, "numpy")
    expected = np.stack([np.random.RandomState(s).randn(16) for s in (3, 5)])
    assert torch.equal(z, torch.from_numpy(expected).float())
    originals = nvlabs_snapshot(tmp_path / "s.pkl", nvlabs_modules, tmp_path / "m")
    G = originals["G_ema"]
    for rng, option in [("numpy", []), ("torch", ["--seed-rng", "torch"])]:
        assert main(["generate", str(tmp_path / "s.pkl"), "--seeds", "3", "--device", "cpu",
                     "--out", str(tmp_path / rng), *option]) == 0
        with torch.no_grad():
            image = G(seed_latents([3], 16, rng), noise_mode="const")
        save_grid(image, tmp_path / f"{rng}.png", columns=1)
        assert (tmp_path / rng / "seed0003.png").read_bytes() == \
            (tmp_path / f"{rng}.png").read_bytes(), rng


def test_a_conversion_is_complete_or_refused_and_commands_say_what_they_render(
        tmp_path, nvlabs_modules, capsys):
    """source.json is written last and lists the networks: a conversion missing it, or one
    of its networks, is refused (not rendered from what is left); a snapshot without
    G_ema renders its G and says so."""
    import shutil

    nvlabs_snapshot(tmp_path / "s.pkl", nvlabs_modules, tmp_path / "m")
    assert main(["convert", str(tmp_path / "s.pkl"), str(tmp_path / "out")]) == 0
    assert load(tmp_path / "out").G_ema is not None
    for damage, said in [(lambda out: shutil.rmtree(out / "generator"), "lacks generator"),
                         (lambda out: (out / "source.json").unlink(),
                          "an interrupted conversion")]:
        shutil.copytree(tmp_path / "out", tmp_path / "damaged")
        damage(tmp_path / "damaged")
        with pytest.raises(ValueError, match=said):
            load(tmp_path / "damaged")
        assert main(["generate", str(tmp_path / "damaged"), "--device", "cpu",
                     "--out", str(tmp_path / "x")]) == 2
        assert said in capsys.readouterr().err
        shutil.rmtree(tmp_path / "damaged")
    from published_formats import write_snapshot

    G = StyleGAN2Generator(16, 0, 16, 16, 3, mapping_layers=2, channel_base=128,
                           channel_max=16).eval()
    kwargs = dict(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3,
                  mapping_kwargs=nvlabs_modules[1](num_layers=2),
                  synthesis_kwargs=nvlabs_modules[1](channel_base=128, channel_max=16))
    write_snapshot(tmp_path / "g.pkl", nvlabs_modules, tmp_path / "m", {"G": G}, {"G": kwargs})
    assert main(["generate", str(tmp_path / "g.pkl"), "--seeds", "0", "--device", "cpu",
                 "--out", str(tmp_path / "g")]) == 0
    assert "note: rendering the training generator G" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "g.pkl"), "--raw", "--seeds", "0", "--device",
                 "cpu", "--out", str(tmp_path / "raw")]) == 0  # G asked for: no note
    assert "note" not in capsys.readouterr().err
    write_snapshot(tmp_path / "ema.pkl", nvlabs_modules, tmp_path / "m2", {"G_ema": G},
                   {"G_ema": kwargs})
    assert main(["generate", str(tmp_path / "ema.pkl"), "--raw", "--seeds", "0", "--device",
                 "cpu", "--out", str(tmp_path / "none")]) == 2
    assert "no training generator G (--raw)" in capsys.readouterr().err
