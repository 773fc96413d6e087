"""What a run leaves behind: the checkpoint record writes and reads itself, and every
checkpoint format that exists loads through its one migration, as the code that wrote it
read it, and continues the run it came from."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from helpers import assert_close, tiny
from safetensors.torch import load_file

from fastpgan.cli.main import main
from fastpgan.runs import Checkpoint, latest_checkpoint, list_checkpoints, load_trained
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer

FIXTURES = Path(__file__).parent / "data" / "checkpoints"
VERSION_1 = sorted(FIXTURES.glob("v1-*.pt"))


def test_there_is_a_fixture_of_every_version_1_writer():
    assert [p.name for p in VERSION_1] == ["v1-043145c-progan.pt", "v1-24d0177-stylegan2.pt",
                                           "v1-94c9f16-progan.pt", "v1-94c9f16-stylegan2.pt"]


@pytest.mark.parametrize("path", VERSION_1, ids=lambda p: p.stem)
def test_version_1_checkpoints_read_as_their_writer_read_them(path):
    facts = json.loads(path.with_suffix(".json").read_text())
    checkpoint = Checkpoint.read(path)
    assert (checkpoint.shown, checkpoint.phase_step, checkpoint.opt_resolution,
            checkpoint.ema_updates) == (facts["shown"], facts["phase_step"],
                                        facts["opt_resolution"], facts["ema_updates"])
    for net, total in facts["sums"].items():
        assert sum(v.double().sum() for v in getattr(checkpoint, net).values()).item() == total
    assert checkpoint.rng.python[1][-1] == facts["python_rng_pos"]
    assert checkpoint.rng.numpy[2] == facts["numpy_rng_pos"]
    assert checkpoint.rng.numpy[1].dtype == torch.int64 and len(checkpoint.rng.numpy[1]) == 624
    assert ("pl_mean" in checkpoint.objective) == ("24d0177" in path.name or
                                                   "94c9f16-stylegan2" in path.name)
    assert load_trained(path).shown == facts["shown"]


def _run_config(checkpoint: Checkpoint, data: Path, out: Path) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{**{k: v for k, v in checkpoint.config.items() if k in known},
                          "data": str(data), "out": str(out)})


@pytest.mark.parametrize("path", VERSION_1, ids=lambda p: p.stem)
def test_version_1_checkpoints_resume_and_continue_their_run(path, faces, tmp_path):
    """(faces: the blobs the fixtures were trained on, tests/data/checkpoints/README.md.)
    --resume from the old file continues as the code that wrote it continued (the
    94c9f16 ones: that code's training steps are today's, so the EMA generator after 8
    more images matches; the older ones train on under today's steps)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(path, run / "checkpoints" / "checkpoint-000000000008.pt")
    config = _run_config(Checkpoint.read(path), faces, run)
    trainer = Trainer(config, resume="latest")
    assert trainer.shown == 8
    trainer.run(stop_at=16)
    assert trainer.shown == 16
    if "94c9f16" in path.name:
        continued = load_file(str(path.with_suffix(".continued.safetensors")))
        state = trainer.ema.model.state_dict()
        assert continued.keys() == state.keys()
        for key, value in continued.items():
            assert_close(state[key], value, 1e-5, key)
    newest = latest_checkpoint(run / "checkpoints")
    assert newest.suffix == ".safetensors" and Checkpoint.read(newest).shown == 16
    assert [p.suffix for p in list_checkpoints(run / "checkpoints")] == [
        ".pt", *[".safetensors"] * (len(list_checkpoints(run / "checkpoints")) - 1)]


def test_a_checkpoint_round_trips_exactly(faces, tmp_path):
    trainer = Trainer(_run_config(Checkpoint.read(VERSION_1[-1]), faces, tmp_path / "a"))
    trainer.run(stop_at=8)
    written = Checkpoint.read(latest_checkpoint(tmp_path / "a" / "checkpoints"))
    again = written.save(tmp_path / "copy")
    back = Checkpoint.read(again)
    for field in fields(Checkpoint):
        a, b = getattr(written, field.name), getattr(back, field.name)
        assert _equal(a, b), field.name


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if hasattr(a, "__dataclass_fields__"):
        return all(_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b


@pytest.mark.parametrize("damage,said", [
    (lambda v: v.update(shown=-1), "shown is negative"),
    (lambda v: v.update(shown="many"), "shown is a str"),
    (lambda v: v.update(G_ema={"w": 3}), "G_ema is not tensors by name"),
    (lambda v: v.update(surprise=1), "unknown checkpoint fields"),
    (lambda v: v.pop("config"), "not a complete checkpoint"),
])
def test_checkpoints_from_elsewhere_are_checked_field_by_field(tmp_path, damage, said):
    from fastpgan.files import write_tree
    from fastpgan.runs.checkpoint import KIND, VERSION

    value = {"config": {}, "shown": 1, "G_ema": {"w": torch.ones(1)}}
    damage(value)
    write_tree(tmp_path / "c.safetensors", value, kind=KIND, version=VERSION)
    with pytest.raises(ValueError, match=said):
        Checkpoint.read(tmp_path / "c.safetensors")


def test_a_new_setting_needs_a_new_checkpoint_version():
    """Version 3 checkpoints hold exactly today's settings; one added to TrainConfig must
    come with a version 4 whose migration says what a run did before it (runs.checkpoint)."""
    from fastpgan.runs.checkpoint import VERSION_3_SETTINGS

    assert {f.name for f in fields(TrainConfig)} == VERSION_3_SETTINGS


@pytest.mark.parametrize("path", VERSION_1, ids=lambda p: p.stem)
def test_version_1_configs_are_completed_with_what_runs_did_then(path):
    from fastpgan.runs.checkpoint import VERSION_3_SETTINGS

    config = Checkpoint.read(path).config
    assert set(config) == VERSION_3_SETTINGS
    if "043145c" in path.name:  # before lazy regularization: the penalty every minibatch
        assert config["reg_interval"] == 1 and config["mapping_layers"] == 8


def test_version_2_checkpoints_are_completed_with_what_runs_did_then(tmp_path):
    """Version 3 added augmentation, per-network learning rates, mirror and conditional
    training; a version 2 checkpoint resumes as the run it was: no augmentation, both
    networks at lr, mirrored, unconditional."""
    from dataclasses import asdict

    from fastpgan.files import write_tree
    from fastpgan.runs.checkpoint import KIND, SETTINGS_ADDED_IN_VERSION_3, VERSION_3_SETTINGS

    config = {k: v for k, v in asdict(TrainConfig()).items()
              if k not in SETTINGS_ADDED_IN_VERSION_3}
    value = {"config": config, "shown": 8, "G_ema": {"w": torch.ones(1)}}
    write_tree(tmp_path / "c.safetensors", value, kind=KIND, version=2)
    read = Checkpoint.read(tmp_path / "c.safetensors").config
    assert set(read) == VERSION_3_SETTINGS
    assert (read["aug"], read["mirror"], read["g_lr"], read["cond"], read["classes"]) == (
        "none", True, None, False, 0)


def test_raw_renders_the_training_generator_of_a_run_or_checkpoint(faces, tmp_path, capsys):
    """--raw (the quality benchmark's raw-vs-shipped comparison): a run folder's or a
    checkpoint's G instead of the moving average; a saved generator, which holds only the
    average, refused with a clear line. (A ramp-up of 0.5: the default's average of a run
    this short is its raw generator.)"""
    run = tmp_path / "run"
    Trainer(tiny(faces, run, checkpoint_kimg=1.0, ema_rampup=0.5)).run()
    newest = latest_checkpoint(run / "checkpoints")
    checkpoint = Checkpoint.read(newest)
    assert any(not torch.equal(checkpoint.G[k], checkpoint.G_ema[k]) for k in checkpoint.G)
    for source in (run, newest):
        for raw, expected in ((True, checkpoint.G), (False, checkpoint.G_ema)):
            state = load_trained(source, raw).G.state_dict()
            assert all(torch.equal(state[k], expected[k]) for k in expected), (source, raw)
    assert main(["generate", str(run / "generator"), "--raw", "--seeds", "1", "--out",
                 str(tmp_path / "images")]) == 2
    err = capsys.readouterr().err
    assert "saved generator, the moving average alone" in err and "Traceback" not in err
    assert not (tmp_path / "images").exists()
    assert main(["generate", str(run), "--raw", "--seeds", "1", "--device", "cpu", "--out",
                 str(tmp_path / "images")]) == 0
