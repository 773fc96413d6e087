"""fastpgan-train's settings: the paper's schedule and presets, the architectures'
defaults, bad input refused before anything runs, the plan printed."""

import pytest
from helpers import tiny

from fastpgan.cli.train import build_parser, config_from_args
from fastpgan.cli.train import main as train_main
from fastpgan.runs.schedule import BATCH_SCHEDULES, build_phases, phase_at
from fastpgan.train.loop import Trainer


def test_phases_follow_the_paper():
    phases = build_phases(16, fade_kimg=1, stable_kimg=2, batch="paper")
    assert [(p.name, p.start, p.length, p.batch) for p in phases] == [
        ("4x4 stable", 0, 2000, 16), ("8x8 fade-in", 2000, 1000, 16),
        ("8x8 stable", 3000, 2000, 16), ("16x16 fade-in", 5000, 1000, 16),
        ("16x16 stable", 6000, 2000, 16)]
    fade = phases[1]
    assert [fade.alpha(s) for s in (2000, 2250, 3000)] == [0.0, 0.25, 1.0]
    assert phase_at(phases, 2999) is fade and phase_at(phases, 8000) is None
    assert BATCH_SCHEDULES["paper"][1024] == 3 and BATCH_SCHEDULES["paper"][256] == 14


def test_official_preset_totals_12000_kimg_at_1024():
    phases = build_phases(1024, 600, 600, "official", total_kimg=12000)
    assert phases[-1].end == 12_000_000 and phases[-1].resolution == 1024
    assert [p.batch for p in phases[::2]] == [128, 128, 128, 64, 32, 16, 8, 4, 4]
    args = build_parser().parse_args(["--data", "x", "--batch", "official"])
    assert config_from_args(args).total_kimg == 12000


@pytest.mark.parametrize("arch", ["progan", "stylegan", "stylegan2"])
def test_every_architecture_ships_an_ema_with_a_half_life_and_a_rampup(arch):
    """The progressive paths had the paper's 0.999 a minibatch (an 11 kimg half-life at
    minibatch 16): longer than a short run's last phase, so the shipped generator still
    averaged the previous resolution's fade-in. --ema-decay keeps the paper's reachable."""
    def config(*argv):
        return config_from_args(build_parser().parse_args(["--arch", arch, *argv]))

    assert (config().ema_kimg, config().ema_rampup) == (10, 0.002)
    assert (config("--ema-kimg", "2", "--ema-rampup", "none").ema_kimg,
            config("--ema-rampup", "none").ema_rampup) == (2, None)
    paper = config("--ema-decay", "0.999")
    assert (paper.ema_decay, paper.ema_kimg, paper.ema_rampup) == (0.999, None, None)
    with pytest.raises(ValueError, match="give one or the other"):
        config("--ema-decay", "0.999", "--ema-kimg", "10")
    with pytest.raises(ValueError, match=r"--ema-decay must be in \[0, 1\), got 1"):
        config("--ema-decay", "1").validate()


def test_stylegan2_cli_defaults_are_nvlabs():
    def config(*argv):
        return config_from_args(build_parser().parse_args(["--arch", "stylegan2", *argv]))

    c = config("--data", "x")
    assert (c.loss, c.ema_kimg, c.ema_rampup, c.fmap_base) == ("logistic-r1", 10, 0.002, 16384)
    assert (c.pl_weight, c.pl_interval, c.conv_clamp, c.mapping_layers) == (2.0, 4, 256, 8)
    assert config("--conv-clamp", "none").conv_clamp is None
    c = config("--loss", "wgan-gp", "--ema-kimg", "2", "--fmap-base", "512", "--pl-weight", "0")
    assert (c.loss, c.ema_kimg, c.fmap_base, c.pl_weight) == ("wgan-gp", 2, 512, 0.0)
    assert c.build_objective().g_penalty is None
    progan = config_from_args(build_parser().parse_args(["--data", "x"]))
    assert progan.pl_weight == 0
    progan.pl_weight = 2.0
    with pytest.raises(ValueError, match="--pl-weight is a setting of --arch stylegan2, not of "
                                         "--arch progan"):
        progan.validate()


@pytest.mark.parametrize("args,message", [
    (["--data", "/no/such/folder"], "no such file or folder"),
    (["--resolution", "48"], "power of two"),
    (["--resolution", "64"], "demo faces are 25x25"),
    (["--resume", "latest"], "no checkpoint in"),
    (["--cuda-graphs", "on", "--device", "cpu"],
     "--cuda-graphs on: CUDA graphs need a CUDA device and this run is on cpu"),
])
def test_bad_input_gives_a_clear_error(tmp_path, capsys, args, message):
    assert train_main([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_a_preset_total_belongs_to_its_own_schedule():
    """The demo's 18 kimg made a user's --resolution 8 run six times longer than sized."""
    def total(*argv):
        return config_from_args(build_parser().parse_args(list(argv))).total_kimg

    assert total() == 18  # the demo as it is
    assert total("--resolution", "8", "--fade-kimg", "1", "--stable-kimg", "1") is None
    assert total("--resolution", "8", "--total-kimg", "5") == 5  # given: kept
    assert total("--data", "x", "--batch", "official") == 12000
    assert total("--data", "x", "--batch", "official", "--resolution", "1024") == 12000
    assert total("--data", "x", "--batch", "official", "--fade-kimg", "300") is None


@pytest.mark.parametrize("progress", [True, False], ids=["bars", "no-progress"])
def test_the_planned_phases_are_printed_at_start(faces, tmp_path, capsys, progress):
    """The plan with or without progress bars (--no-progress printed nothing until the
    end), and without bars a line as each phase starts."""
    Trainer(tiny(faces, tmp_path / "run", progress=progress)).run(stop_at=28)
    err = capsys.readouterr().err
    assert "the schedule:\n4x4 stable: 0.024 kimg at batch 4\n8x8 fade-in: 0.024 kimg" in err
    assert "0.072 kimg in all" in err
    phase_lines = [line for line in err.splitlines() if " kimg" in line and " from " in line]
    assert phase_lines == ([] if progress else [
        "fastpgan-train: 4x4 stable (batch 4) from 0 to 0.024 kimg",
        "fastpgan-train: 8x8 fade-in (batch 4) from 0.024 to 0.048 kimg"])
