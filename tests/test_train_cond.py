"""Class-conditional training (--cond) and the generator commands' --class: conditional
ProGAN (the official code's label input and auxiliary classifier) and StyleGAN2 (NVlabs'
embedding and projection) train and resume exactly, batches keep their labels, the
metrics measure over the label distribution or one class, and every misuse is one line
with nothing written."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny, training_weights
from PIL import Image

from fastpgan.cli.main import main as fastpgan_main
from fastpgan.cli.train import main as train_main
from fastpgan.data.cache import ImageCache, prepare_dataset
from fastpgan.data.loader import RealImages
from fastpgan.models import ProGANDiscriminator, ProGANGenerator
from fastpgan.train.loop import Trainer

CLASSES = 3


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """36 grey 8x8 images in 3 class subfolders; class k is a bright band at columns
    2k..2k+2, so a batch's labels can be read off its images."""
    src = tmp_path_factory.mktemp("labelled") / "src"
    rng = np.random.default_rng(0)
    for k in range(CLASSES):
        (src / f"class{k}").mkdir(parents=True)
        for i in range(12):
            pixels = np.zeros((8, 8), np.uint8)
            pixels[:, 2 * k:2 * k + 3] = 200 + rng.integers(0, 50)
            Image.fromarray(pixels).save(src / f"class{k}" / f"{i}.png")
    return src


@pytest.fixture(scope="module")
def labelled_cache(labelled, tmp_path_factory) -> Path:
    return prepare_dataset(labelled, tmp_path_factory.mktemp("cache") / "c", 8,
                           channels=1, progress=False)


def test_batches_keep_their_images_labels(labelled_cache):
    data = RealImages(ImageCache.open(labelled_cache), seed=3, labelled=True, mirror=False)
    images, classes = next(data.batches(8, 16))
    bright = images[:, 0, 4].float().argmax(dim=1)  # the band's first column in row 4
    assert torch.equal(bright // 2, classes)


def test_conditional_progan_networks():
    G = ProGANGenerator(8, 6, 64, 16, 1, label_dim=CLASSES)
    D = ProGANDiscriminator(8, 6, 64, 16, 1, label_dim=CLASSES)
    z, c = torch.randn(4, 6), torch.eye(CLASSES)[[0, 1, 2, 0]]
    images = G(z, 8, 1.0, c=c)
    assert images.shape == (4, 1, 8, 8) and D(images).shape == (4, 1 + CLASSES)
    assert not torch.allclose(G(z, 8, 1.0, c=c), G(z, 8, 1.0, c=c.roll(1, 0))), \
        "the label changes the image"
    with pytest.raises(ValueError, match=r"needs one-hot labels c of shape \(4, 3\), got None"):
        G(z, 8)
    with pytest.raises(ValueError, match="an unconditional network takes no labels"):
        ProGANGenerator(8, 6, 64, 16, 1)(z, 8, c=c)


@pytest.mark.parametrize("arch,settings", [
    ("progan", dict(loss="wgan-gp")),
    ("stylegan2", dict(loss="logistic-r1", total_kimg=0.048, pl_weight=2.0, pl_interval=3,
                       aug="ada", aug_p=0.2)),
])
def test_conditional_runs_train_and_resume_exactly(labelled_cache, tmp_path, arch, settings):
    settings = dict(arch=arch, cond=True, **settings)
    straight = Trainer(tiny(labelled_cache, tmp_path / "a", **settings))
    assert straight.config.classes == CLASSES
    straight.run()
    first = Trainer(tiny(labelled_cache, tmp_path / "b", **settings))
    first.run(stop_at=36)
    resumed = Trainer(tiny(labelled_cache, tmp_path / "b", **settings), resume="latest")
    resumed.run()
    a, b = training_weights(straight), training_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").open()
             if "d_loss" in line]
    # ProGAN's auxiliary classifier adds its label loss; StyleGAN2's projection has none
    assert all(("label_loss" in r) == (arch == "progan") for r in steps)
    assert (tmp_path / "a" / "generator").exists()


def test_cond_needs_labels_and_an_architecture_that_takes_them(faces, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--data", str(faces), "--cond", "--resolution", "8", "--out",
                       str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--cond trains on class labels and the data in" in err and "has none" in err
    assert len(err.strip().splitlines()) == 1
    assert not any((out / name).exists() for name in ("checkpoints", "log.jsonl", "samples"))
    assert train_main(["--data", str(faces), "--cond", "--arch", "stylegan", "--out",
                       str(out), "--no-progress"]) == 2
    assert "--cond trains progan or stylegan2; the stylegan networks take no labels" in \
        capsys.readouterr().err


@pytest.fixture(scope="module")
def conditional_run(labelled_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cond-run") / "run"
    Trainer(tiny(labelled_cache, out, arch="stylegan2", loss="logistic-r1", cond=True,
                 total_kimg=0.024)).run()
    return out


def test_generator_commands_take_a_class(conditional_run, tmp_path, capsys):
    assert fastpgan_main(["generate", str(conditional_run), "--class", "2", "--seeds", "0-3",
                          "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0
    assert (tmp_path / "g" / "grid.png").exists()
    for args, message in (
            ([], "this generator is conditional (3 classes): give --class 0..2"),
            (["--class", "3"], "--class 3 is out of range: this generator has 3 classes")):
        out = tmp_path / "refused"
        assert fastpgan_main(["generate", str(conditional_run), *args, "--out", str(out),
                              "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert fastpgan_main(["style-mix", str(conditional_run), "--class", "1", "--out",
                          str(tmp_path / "mix.png"), "--device", "cpu"]) == 0


def test_an_unconditional_generator_refuses_a_class(tmp_path, capsys):
    G = ProGANGenerator(8, 6, 64, 16, 1)
    G.save_pretrained(tmp_path / "G")
    out = tmp_path / "out"
    assert fastpgan_main(["generate", str(tmp_path / "G"), "--class", "0", "--out", str(out),
                          "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--class is for conditional generators; this one is unconditional" in err
    assert not out.exists()


def test_metrics_over_the_label_distribution_or_one_class(conditional_run, labelled_cache,
                                                          tmp_path):
    def metrics(*extra):
        out = tmp_path / f"m{len(extra)}.json"
        assert fastpgan_main(["metrics", str(conditional_run), "--data", str(labelled_cache),
                              "--metrics", "swd", "--num", "30", "--device", "cpu",
                              "--out", str(out), *extra]) == 0
        return json.loads(out.read_text())

    everything, one = metrics(), metrics("--class", "1")
    assert everything["num_real"] == 30 and "class" not in everything
    assert one["num_real"] == 12 and one["class"] == 1, "class 1's reals only"
