"""Bad input to every command gives one clear line naming the problem, and no traceback.

One case per line: the command, its arguments ({name} is a fixture path below), the exit
status and what its output must contain.
"""

import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fastpgan.cli.dataset import main as dataset_main
from fastpgan.cli.main import main as fastpgan_main
from fastpgan.cli.train import main as train_main
from fastpgan.models import ProGANGenerator
from fastpgan.nn import EqualizedConv2d, EqualizedLinear
from fastpgan.ops import (
    adain,
    bias_act,
    conv2d_downsample,
    fir_conv2d_downsample,
    fir_upsample_conv2d,
    minibatch_stddev,
    modulated_conv2d,
    pixel_norm,
    upsample_conv2d,
)
from fastpgan.runs.checkpoint import Checkpoint

COMMANDS = {"fastpgan-train": train_main, "fastpgan-dataset": dataset_main,
            "fastpgan": fastpgan_main}
SMALL = ["--resolution", "8", "--fade-kimg", "0.01", "--stable-kimg", "0.01", "--no-progress"]

CASES = [  # (command, arguments, exit status, output contains)
    # fastpgan-train
    ("fastpgan-train", ["--data", "{missing}", "--out", "{out}"], 2, "no such file or folder"),
    ("fastpgan-train", ["--resolution", "48", "--out", "{out}"], 2, "power of two"),
    ("fastpgan-train", ["--resolution", "64", "--out", "{out}"], 2, "demo faces are 25x25"),
    ("fastpgan-train", ["--resume", "latest", "--out", "{out}"], 2, "no checkpoint in"),
    ("fastpgan-train", ["--loss", "hinge", "--out", "{out}"], 2, "invalid choice: 'hinge'"),
    ("fastpgan-train", ["--batch", "0", "--out", "{out}"], 2,
     "argument --batch: expected one of paper, official, auto or integer 1.."),
    ("fastpgan-train", ["--out", "{file}/run", *SMALL], 2, "part of the path is a file"),
    ("fastpgan-train", ["--out", "{file}", *SMALL], 2, "a file of that name exists"),
    ("fastpgan-train", ["--out", "/sys/fastpgan-run", *SMALL], 2, "cannot write there"),
    ("fastpgan-train", ["--total-kimg", "-5", "--out", "{out}"], 2,
     "argument --total-kimg: expected a number above 0, got -5"),
    ("fastpgan-train", ["--total-kimg", "0.01", "--out", "{out}", *SMALL], 2,
     "below the schedule's 0.03 kimg"),
    ("fastpgan-train", ["--keep-checkpoints", "0", "--out", "{out}"], 2,
     "argument --keep-checkpoints: expected a whole number from 1"),
    ("fastpgan-train", ["--data", "{images}", "--resolution", "16", "--fmap-base", "4",
                        "--out", "{out}"], 2, "leaves the 16x16 layers and above with no"),
    ("fastpgan-train", ["--out", "{run}", *SMALL], 2, "already holds a run"),
    ("fastpgan-train", ["--loss", "wgan-gp", "--r1-gamma", "5", "--out", "{out}"], 2,
     "--r1-gamma is a weight of logistic-r1, not of wgan-gp"),
    ("fastpgan-train", ["--reg-interval", "0", "--out", "{out}"], 2,
     "argument --reg-interval: expected a whole number from 1"),
    ("fastpgan-train", ["--loss", "wgan-gp", "--gp-lambda", "-1", "--out", "{out}"], 2,
     "argument --gp-lambda: expected a number of at least 0, got -1"),
    ("fastpgan-train", ["--log-every", "0", "--out", "{out}"], 2,
     "argument --log-every: expected a whole number from 1"),
    ("fastpgan-train", ["--data", "{images}", "--resolution", "8", "--fade-kimg", "0.02",
                        "--stable-kimg", "0.02", "--batch", "7", "--no-progress",
                        "--out", "{out}"], 0, ""),  # no group of 4 splits 7 images
    ("fastpgan-train", ["--out", "{run}", "--resume", "latest", "--overwrite"], 2,
     "give one of them"),
    # fastpgan-dataset
    ("fastpgan-dataset", ["{missing}", "{out}", "--resolution", "8"], 2, "does not exist"),
    ("fastpgan-dataset", ["{empty}", "{out}", "--resolution", "8"], 2, "no images"),
    ("fastpgan-dataset", ["{images}", "{out}", "--resolution", "12"], 2, "power of two"),
    ("fastpgan-dataset", ["{images}", "{file}/cache", "--resolution", "8"], 2,
     "a file of that name exists"),
    ("fastpgan-dataset", ["{images}", "{images}", "--resolution", "8"], 2, "exists; pass"),
    ("fastpgan-dataset", ["{corrupt_zip}", "{out}", "--resolution", "8"], 0,
     "skipped img3.png: Bad CRC-32"),
    ("fastpgan-dataset", ["{bomb}", "{out}", "--resolution", "8"], 0,
     "decompression bomb"),
    ("fastpgan-dataset", ["{bomb}", "{out}", "--resolution", "8", "--max-image-pixels",
                          "100000"], 0, "(0 skipped)"),
    ("fastpgan-dataset", ["{encrypted_zip}", "{out}", "--resolution", "8"], 0,
     "skipped img1.png: an encrypted (password-protected) zip member"),
    ("fastpgan-dataset", ["{images}", "{out}", "--resolution", "64"], 2,
     "4 skipped: 4 too small (first: img0.png: too small: 16x16, needs at least 64x64)"),
    ("fastpgan-train", ["--conv-clamp", "nan", "--arch", "stylegan2", "--out", "{out}"], 2,
     "--conv-clamp: expected a finite number, got 'nan'"),
    ("fastpgan-train", ["--fade-kimg", "inf", "--out", "{out}"], 2,
     "--fade-kimg: expected a finite number, got 'inf'"),
    # fastpgan's generator commands
    ("fastpgan", ["generate", "{missing}"], 2, "no such generator or checkpoint"),
    ("fastpgan", ["generate", "{gen}", "--truncation", "0.5"], 2, "needs a StyleGAN"),
    ("fastpgan", ["generate", "{gen}", "--seeds", "3-1"], 2, "bad seed list"),
    ("fastpgan", ["generate", "{gen}", "--resolution", "12"], 2, "power of two"),
    ("fastpgan", ["generate", "{gen}", "--out", "{file}/samples"], 2,
     "part of the path is a file"),
    ("fastpgan", ["interpolate", "{gen}", "--steps", "0"], 2,
     "argument --steps: expected a whole number from 1"),
    ("fastpgan", ["interpolate", "{gen}", "--out", "{file}/walk.gif"], 2,
     "a file of that name exists"),
    ("fastpgan", ["interpolate", "{gen}", "--out", "{file}/walks/walk.gif"], 2,
     "part of the path is a file"),
    ("fastpgan", ["style-mix", "{gen}"], 2, "style mixing needs a StyleGAN"),
    ("fastpgan", ["project", "{gen}", "--target", "{missing}"], 2,
     "cannot read the target image"),
    ("fastpgan", ["project", "{gen}", "--target", "{image}", "--steps", "0"], 2,
     "argument --steps: expected a whole number from 1"),
    ("fastpgan", ["metrics", "{gen}", "--metrics", "swd", "--num", "0"], 2,
     "argument --num: expected a whole number from 1"),
    ("fastpgan", ["metrics", "{gen}", "--metrics", "fld"], 2, "--metrics takes"),
    ("fastpgan", ["metrics", "{gen}", "--data", "{images}", "--metrics", "swd", "--num",
                  "100", "--device", "cpu"], 0,
     "4 generated vs 4 real images at 8px\nwarning: SWD on 4 images rests on few patches"),
    ("fastpgan", ["metrics", "{gen}", "--data", "{one}", "--metrics", "fid,swd", "--device",
                  "cpu", "--inception", "{missing}"], 2,
     "they need at least 2 real and 2 generated images, and the data at"),
    ("fastpgan", ["convert", "{gen}", "{file}"], 2, "a file of that name exists"),
    ("fastpgan-train", ["--arch", "stylegan2", "--init", "{file}", "--out", "{out}"], 2,
     "is a text file, not a network, checkpoint or weights file"),
    *[("fastpgan", [command, "{gen}", "--truncation", value], 2,
       f"--truncation: expected a finite number, got '{value}'")
      for command in ("generate", "style-mix", "interpolate") for value in ("nan", "inf")],
]


def _images(folder, count=4, size=16):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """The files the cases name."""
    root = tmp_path_factory.mktemp("bad-inputs")
    images = _images(root / "images")
    (root / "empty").mkdir()
    (root / "file").write_text("a regular file")
    corrupt = root / "corrupt.zip"
    with zipfile.ZipFile(corrupt, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(images.iterdir()):
            archive.write(file, file.name)
    member = zipfile.ZipFile(corrupt).getinfo("img3.png")
    data = bytearray(corrupt.read_bytes())
    data[member.header_offset + 30 + len(member.filename) + 40] ^= 0xFF  # flip a pixel byte
    corrupt.write_bytes(bytes(data))
    encrypted = root / "encrypted.zip"
    with zipfile.ZipFile(encrypted, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(images.iterdir()):
            archive.write(file, file.name)
    member = zipfile.ZipFile(encrypted).getinfo("img1.png")
    data = bytearray(encrypted.read_bytes())  # its flag bit 0, "encrypted", in both headers
    data[member.header_offset + 6] |= 0x1
    directory = zipfile.ZipFile(encrypted).start_dir
    at = data.index(b"PK\x01\x02", directory)
    while data[at + 46:at + 46 + len(member.filename)] != member.filename.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 8] |= 0x1
    encrypted.write_bytes(bytes(data))
    one = _images(root / "one", count=1)
    bomb = _images(root / "bomb", count=2)
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(bomb / "huge.png")
    ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8).save_pretrained(
        root / "gen")
    config = dict(arch="progan", resolution=8, latent_dim=8, fmap_base=32, fmap_max=8,
                  channels=3, fade_kimg=1, stable_kimg=1, batch=4, total_kimg=None)
    G = ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8)
    Checkpoint(config, 1, G.state_dict()).save(root / "run" / "checkpoints")
    return {"missing": root / "no-such-thing", "images": images, "empty": root / "empty",
            "file": root / "file", "corrupt_zip": corrupt, "encrypted_zip": encrypted,
            "bomb": bomb, "one": one, "gen": root / "gen",
            "run": root / "run", "image": images / "img0.png"}


@pytest.mark.parametrize("command,arguments,status,message", CASES,
                         ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_input_gives_one_clear_line(paths, tmp_path, capsys, monkeypatch, command,
                                        arguments, status, message):
    # a decompression-bomb limit that the 128x128 image is over and the others are not
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    names = {**{k: str(v) for k, v in paths.items()}, "out": str(tmp_path / "out")}
    argv = [a.format(**names) for a in arguments]
    try:
        code = COMMANDS[command](argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == status, err
    assert message in err + out, err + out
    assert "Traceback" not in err


def test_ops_and_layers_agree_on_edge_cases_or_name_the_problem():
    """Issue 31's cases: a batch of 0 gives the same empty output on both backends,
    half-precision activations take float32 weights in every convolution op, and the
    equalized layers name a wrong feature count or an empty layer."""
    x, w, s = torch.randn(0, 3, 4, 4), torch.randn(2, 3, 3, 3), torch.randn(0, 3)
    backends = ["reference"] + (["fused"] if os.environ.get("TRITON_INTERPRET") else [])
    for up in (False, True):
        shapes = {b: modulated_conv2d(x, w, s, up=up, backend=b).shape for b in backends}
        assert set(shapes.values()) == {(0, 2, 8 if up else 4, 8 if up else 4)}, shapes
    half = torch.randn(1, 3, 4, 4).half()
    for op in (upsample_conv2d, conv2d_downsample, fir_upsample_conv2d, fir_conv2d_downsample):
        for bias in (None, torch.randn(2)):
            assert op(half, w, bias, backend="reference").dtype == torch.float16, op.__name__
    with pytest.raises(ValueError, match=r"EqualizedLinear: x must be \(\.\.\., 4\)"):
        EqualizedLinear(4, 2)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="at least one input and one output"):
        EqualizedConv2d(0, 4, 3)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("call,message", [
    (lambda x: bias_act(x, act="lrelu", clamp=NAN), "bias_act: clamp must be > 0 and finite"),
    (lambda x: bias_act(x, act="lrelu", gain=INF), "bias_act: gain must be > 0 and finite"),
    (lambda x: bias_act(x, act="lrelu", negative_slope=NAN),
     "bias_act: negative_slope must be >= 0 and finite"),
    (lambda x: pixel_norm(x, eps=NAN), "pixel_norm: eps must be >= 0 and finite"),
    (lambda x: minibatch_stddev(x, eps=NAN), "minibatch_stddev: eps must be >= 0 and finite"),
    (lambda x: adain(x, x[:, :, 0, 0], x[:, :, 0, 0], eps=INF),
     "adain: eps must be >= 0 and finite"),
    (lambda x: modulated_conv2d(x, x[:2, :, :3, :3], x[:, :, 0, 0], eps=NAN),
     "modulated_conv2d: eps must be >= 0 and finite"),
    (lambda x: upsample_conv2d(x, x[:2, :, :3, :3], weight_gain=NAN),
     "upsample_conv2d: weight_gain must be > 0 and finite"),
], ids=["bias_act clamp", "bias_act gain", "bias_act slope", "pixel_norm eps",
        "minibatch_stddev eps", "adain eps", "modulated_conv2d eps", "upsample_conv2d gain"])
def test_op_parameters_refuse_nan_and_infinity(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(4, 4, 4, 4))
