"""Augmentation in training and the flags users expect: every discriminator input
augmented (reals, fakes, interpolates, R1's reals, the generator's fakes), ADA's p
logged, plotted and resumed exactly, --aug refusals in one line, per-network lr and
betas, --no-mirror, and a grey image folder trained as one channel."""

import json

import numpy as np
import pytest
import torch
from helpers import tiny, training_weights
from PIL import Image

from fastpgan.cli.train import build_parser, config_from_args
from fastpgan.cli.train import main as train_main
from fastpgan.data.cache import ImageCache
from fastpgan.train.augment import AdaptiveAugment
from fastpgan.train.loop import Trainer
from fastpgan.train.losses import WGANGP, LogisticR1, LossPhase, Objective, PhaseInputs


class Marking:
    """An augmentation that adds 1000 to what it sees, so a critic can tell."""

    def __call__(self, images, generator=None):
        return images + 1000.0

    def observe(self, real_sign):
        self.observed = real_sign

    def adjust(self, step, images):
        pass

    def stats(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def to(self, device):
        return self


@pytest.mark.parametrize("loss,calls", [
    (WGANGP(), 4),  # reals, fakes, the penalty's interpolates, the generator's fakes
    (LogisticR1(reg_interval=1), 3),  # R1 differentiates the reals' one call
])
def test_every_image_the_discriminator_sees_is_augmented(loss, calls):
    seen, weight = [], torch.nn.Parameter(torch.ones(()))

    def critic(x, labels):
        seen.append(x.detach())
        return weight * (x - 1000).flatten(1).sum(1, keepdim=True)

    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    inputs = PhaseInputs(real, fake, torch.rand(3), critic,
                         lambda n: (torch.randn(n, 1, 4, 4), None),
                         lambda n: torch.randn(n, 2), G=None)
    objective, logged = Objective(loss, augment=Marking()), {}
    for phase in (LossPhase("D", True, 1.0), LossPhase("G", True, 0.0)):
        for term in objective.terms(phase, inputs):
            loss_value, stats = term()
            loss_value.backward()
            logged[phase.net] = stats
    assert len(seen) == calls
    assert all(x.min() > 900 for x in seen), "every input went through the augmentation"
    assert torch.equal(objective.augment.observed, logged["D"]["real_sign"]), \
        "r_t reaches the augmentation"


@pytest.mark.parametrize("settings", [
    dict(arch="progan", loss="logistic-r1", aug="ada", aug_p=0.3, aug_target=0.0),
    dict(arch="stylegan2", loss="logistic-r1", total_kimg=0.048, aug="diffaug"),
], ids=["ada-progan", "diffaug-stylegan2"])
def test_augmented_runs_log_p_and_resume_exactly(faces, tmp_path, settings):
    straight = Trainer(tiny(faces, tmp_path / "a", **settings))
    straight.run()
    first = Trainer(tiny(faces, tmp_path / "b", **settings))
    first.run(stop_at=36)
    resumed = Trainer(tiny(faces, tmp_path / "b", **settings), resume="latest")
    assert resumed.shown < 36
    resumed.run()
    a, b = training_weights(straight), training_weights(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.objective.state_dict().keys() == resumed.objective.state_dict().keys()
    for key, value in straight.objective.state_dict().items():
        assert torch.equal(value, resumed.objective.state_dict()[key]), key
    records = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").open()]
    steps = [r for r in records if "d_loss" in r]
    assert all(-1 <= r["real_sign"] <= 1 for r in steps)
    if settings["aug"] == "ada":
        assert isinstance(straight.objective.augment, AdaptiveAugment)
        assert float(straight.objective.augment.p) != 0.3, "p adapted"
        assert {r["aug_p"] for r in steps} != {0.3}
        assert (tmp_path / "a" / "training.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--aug", "fixed"], "--aug fixed needs --aug-p"),
    (["--aug", "none", "--aug-target", "0.5"], "--aug-target is a setting of --aug ada or"),
    (["--aug", "diffaug", "--aug-p", "0.2"], "--aug-p is a setting of --aug ada or fixed"),
    (["--aug-p", "1.5"], "--aug-p: expected a number in [0, 1], got 1.5"),
    (["--aug", "bgcx"], "--aug: invalid choice: 'bgcx'"),
    (["--betas", "0.9", "1"], "--betas: expected a number in [0, 1), got 1"),
])
def test_bad_augmentation_and_optimizer_flags_are_one_line_and_write_nothing(
        tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert train_main([*args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_learning_rates_betas_and_mirror_reach_the_optimizers_and_the_data(faces, tmp_path):
    trainer = Trainer(tiny(faces, tmp_path / "run", lr=0.004, d_lr=0.001, betas=(0.5, 0.9),
                           mirror=False))
    trainer.run(stop_at=4)
    assert trainer.opt_g.param_groups[0]["lr"] == 0.004
    assert trainer.opt_d.param_groups[0]["lr"] == 0.001
    assert trainer.opt_g.param_groups[0]["betas"] == (0.5, 0.9)
    assert trainer.data.mirror is False


def test_cli_defaults_for_augmentation_and_learning_rate():
    def config(*argv):
        return config_from_args(build_parser().parse_args(list(argv)))

    assert (config().aug, config().lr, config().mirror) == ("none", 0.001, True)
    stylegan2 = config("--arch", "stylegan2", "--data", "x")
    assert (stylegan2.aug, stylegan2.lr) == ("ada", 0.002)  # NVlabs' defaults
    assert config("--arch", "stylegan2").aug == "none"  # the demo stays plain
    given = config("--arch", "stylegan2", "--data", "x", "--aug", "diffaug", "--lr", "0.01",
                   "--g-lr", "0.02", "--betas", "0.5", "0.999", "--no-mirror")
    assert (given.aug, given.lr, given.g_lr, given.betas, given.mirror) == (
        "diffaug", 0.01, 0.02, [0.5, 0.999], False)
    assert given.network_lr("G") == 0.02 and given.network_lr("D") == 0.01


def _grey_folder(folder, count=6, mode="L"):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / f"{i}.png")
    return folder


def test_a_grey_image_folder_trains_as_one_channel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    grey = _grey_folder(tmp_path / "grey")
    trainer = Trainer(tiny(grey, tmp_path / "run", channels=None))
    assert trainer.config.channels == 1 and ImageCache.open(trainer.cache.path).channels == 1
    assert "every image in" in capsys.readouterr().err
    rgb = Trainer(tiny(grey, tmp_path / "rgb", channels=3))  # --channels overrides
    assert rgb.config.channels == 3
    colour = _grey_folder(tmp_path / "colour", mode="RGB")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(colour / "red.png")
    assert Trainer(tiny(colour, tmp_path / "c", channels=None)).config.channels == 3
