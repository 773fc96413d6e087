"""Nothing lost: atomic checkpoints, exact resume (also after kill -9 at random moments),
settings that cannot change, a run replaced only when asked, fine-tuning from
published networks, a diverging run stopped with its last good checkpoint."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny, training_weights

from fastpgan.data import build_cache
from fastpgan.models import Pretrained, StyleGAN2Generator, load
from fastpgan.runs.checkpoint import Checkpoint, latest_checkpoint
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer, TrainingDivergedError


def test_checkpoints_are_atomic_and_the_last_k_kept(tmp_path):
    for shown in (10, 20, 30, 40):
        Checkpoint({}, shown, {"w": torch.full((2,), float(shown))}).save(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-000000000030.safetensors", "checkpoint-000000000040.safetensors"], \
        "no temporary files left"
    latest = Checkpoint.read(latest_checkpoint(tmp_path))
    assert latest.shown == 40 and torch.equal(latest.G_ema["w"], torch.full((2,), 40.0))
    latest_checkpoint(tmp_path).write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"cannot read the checkpoint .*040\.safetensors.*"
                                         r"previous one is .*030\.safetensors"):
        Checkpoint.read(latest_checkpoint(tmp_path))


@pytest.mark.parametrize("arch,loss,precision,reg_interval", [
    ("progan", "wgan-gp", "fp32", None), ("stylegan", "logistic-r1", "fp32", None),
    # CPU autocast: the generator's images are half precision, the reals float32, and
    # fp16's gradient scaler skips steps and is checkpointed
    ("progan", "wgan-gp", "bf16", None), ("stylegan", "logistic-r1", "fp16", None),
    # lazy penalties every 3rd minibatch: resumed at the fade-in's 5th step, off the interval
    ("progan", "wgan-gp", "fp32", 3), ("progan", "logistic-r1", "fp32", 3)])
def test_interrupted_and_resumed_run_ends_with_identical_weights(faces, tmp_path, arch, loss,
                                                                  precision, reg_interval):
    settings = dict(arch=arch, loss=loss, precision=precision, reg_interval=reg_interval)
    initial = training_weights(Trainer(tiny(faces, tmp_path / "init", **settings)))
    straight = Trainer(tiny(faces, tmp_path / "a", **settings))
    straight.run()
    first = Trainer(tiny(faces, tmp_path / "b", **settings))
    first.run(stop_at=44)  # mid 8x8 fade-in, between checkpoints
    assert first.shown == 44
    resumed = Trainer(tiny(faces, tmp_path / "b", **settings), resume="latest")
    assert resumed.shown == 40, "continues from the last checkpoint"
    resumed.run()
    a, b = training_weights(straight), training_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not all(torch.equal(initial[k], a[k]) for k in a if k.startswith("G.")), \
        "the generator trained"


def test_stylegan2_trains_at_one_resolution_and_resumes_exactly(faces, tmp_path):
    """--arch stylegan2: one stabilization at the final resolution, lazy R1, style mixing,
    NVlabs' EMA; interrupted and resumed, it ends with the straight run's weights (bf16:
    test_fused_ops_train_channels_last_under_bf16_autocast)."""
    settings = dict(arch="stylegan2", loss="logistic-r1", total_kimg=0.072, ema_kimg=0.01,
                    ema_rampup=0.05, pl_weight=2.0, pl_interval=3)
    straight = Trainer(tiny(faces, tmp_path / "a", **settings))
    assert [(p.resolution, p.fading) for p in straight.phases] == [(8, False)]
    assert straight.G.style_mixing_prob == 0.9
    assert straight.opt_g is None and straight.objective.g_penalty.reg_interval == 3
    straight.run()
    assert straight.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 3 / 4)
    assert float(straight.objective.g_penalty.mean) > 0, "the path length mean moved"
    logged = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert any("pl_penalty" in r and math.isfinite(r["pl_penalty"]) for r in logged)
    first = Trainer(tiny(faces, tmp_path / "b", **settings))
    first.run(stop_at=44)
    resumed = Trainer(tiny(faces, tmp_path / "b", **settings), resume="latest")
    assert resumed.shown == 40
    resumed.run()
    a, b = training_weights(straight), training_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    G = Pretrained.from_pretrained(tmp_path / "a" / "generator")
    assert isinstance(G, StyleGAN2Generator) and G.img_resolution == 8
    assert torch.equal(G.state_dict()["synthesis.b8.conv0.weight"],
                       straight.ema.model.state_dict()["synthesis.b8.conv0.weight"])


NVLABS_16 = Path(__file__).parent / "data" / "nvlabs-sg2-16"


def test_init_fine_tunes_published_networks_and_refuses_another_architecture(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (3, 16, 16)).astype(np.float32) for _ in range(8)]
    data = build_cache(iter(images), tmp_path / "rgb16", 16, 3, source="noise")
    settings = dict(data=str(data), resolution=16, batch=4, arch="stylegan2", loss="logistic-r1",
                    latent_dim=32, fmap_base=128, fmap_max=32, conv_clamp=256.0,
                    mapping_layers=2, init=str(NVLABS_16), stable_kimg=0.008,
                    checkpoint_kimg=1.0, sample_kimg=1.0, swd_images=0, workers=0,
                    progress=False, device="cpu")
    trainer = Trainer(TrainConfig(out=str(tmp_path / "run"), **settings))
    published = load(NVLABS_16)
    for net, source in ((trainer.G, published.G_ema), (trainer.ema.model, published.G_ema),
                        (trainer.D, published.D)):
        theirs = source.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in net.state_dict().items())
    trainer.run()
    assert not torch.equal(trainer.G.state_dict()["synthesis.b16.conv1.weight"],
                           published.G_ema.state_dict()["synthesis.b16.conv1.weight"])
    # issue 31 (10): a run's checkpoint, or its folder (its newest checkpoint), is an --init
    trained = training_weights(trainer)
    for i, source in enumerate((latest_checkpoint(tmp_path / "run" / "checkpoints"),
                                tmp_path / "run")):
        again = Trainer(TrainConfig(out=str(tmp_path / f"again{i}"),
                                    **{**settings, "init": str(source)}))
        assert all(torch.equal(v, trained[k]) for k, v in training_weights(again).items())
    with pytest.raises(ValueError, match=r"mapping_layers 2 there, 8 here \(--mapping-layers\)"):
        Trainer(TrainConfig(out=str(tmp_path / "other"), **{**settings, "mapping_layers": 8}))
    with pytest.raises(ValueError, match="--init is a setting of --arch stylegan2"):
        TrainConfig(out=str(tmp_path / "p"), **{**settings, "arch": "progan",
                                                 "conv_clamp": None}).validate()


def test_non_finite_loss_stops_with_step_and_last_checkpoint(faces, tmp_path, monkeypatch):
    trainer = Trainer(tiny(faces, tmp_path / "run"))
    trainer.run(stop_at=16)
    monkeypatch.setattr(trainer.objective.loss, "g_loss",
                        lambda scores: scores.sum() * float("nan"))
    # read at the next checkpoint (every 8 images), before it is written
    with pytest.raises(TrainingDivergedError,
                       match=r"non-finite loss in the steps from 16 to 24 images "
                             r".*checkpoint-000000000016\.safetensors"):
        trainer.run()


def test_resume_with_other_settings_is_refused(faces, tmp_path):
    Trainer(tiny(faces, tmp_path / "run")).run(stop_at=8)
    with pytest.raises(ValueError, match="latent_dim: checkpoint 8, now 16"):
        Trainer(tiny(faces, tmp_path / "run", latent_dim=16), resume="latest")


def test_a_finished_run_trains_on_with_a_larger_total_as_if_planned(faces, tmp_path):
    """--total-kimg may grow between sessions (it lengthens the last stabilization): the
    finished 72-image run continued to 96 ends as a run planned for 96 from the start; a
    total below what a checkpoint has shown is refused."""
    straight = Trainer(tiny(faces, tmp_path / "a", total_kimg=0.096, swd_images=16))
    straight.run()
    Trainer(tiny(faces, tmp_path / "b", swd_images=16)).run()  # its end measures SWD
    longer = Trainer(tiny(faces, tmp_path / "b", total_kimg=0.096, swd_images=16),
                     resume="latest")
    assert longer.shown == 72
    longer.run()
    a, b = training_weights(straight), training_weights(longer)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"has shown 0\.096 kimg, past this run's end at "
                                         r"0\.072 kimg"):
        Trainer(tiny(faces, tmp_path / "b"), resume="latest")


KILL_TRIALS = int(os.environ.get("FASTPGAN_KILL_TRIALS", "2"))  # one in a write, one anywhere


def _cli_run(args, env, **popen):
    return subprocess.Popen([sys.executable, "-m", "fastpgan.cli.train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **popen)


RUN_ARGS = ["--resolution", "8", "--batch", "4", "--fade-kimg", "0.06", "--stable-kimg", "0.06",
            "--latent-dim", "8", "--fmap-base", "32", "--fmap-max", "8", "--checkpoint-kimg",
            "0.02", "--keep-checkpoints", "100", "--swd-images", "0", "--workers", "0",
            "--no-progress", "--device", "cpu"]
"""A run of 180 images with a checkpoint every 20, for the tests that stop real processes."""


@pytest.fixture(scope="module")
def reference_run(faces, tmp_path_factory):
    """(images shown, final weights) of the uninterrupted run of RUN_ARGS on ``faces``."""
    out = tmp_path_factory.mktemp("reference")
    done = _cli_run(["--data", str(faces), *RUN_ARGS, "--out", str(out)], _cpu_env())
    assert done.wait(timeout=600) == 0, done.stderr.read()[-2000:]
    return _final_weights(out)


def _cpu_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def _wait_for(condition, what: str) -> None:
    """Waits for a state of the run on disk (never for a time; the deadline only ends a
    hung test)."""
    deadline = time.time() + 600
    while not condition():
        assert time.time() < deadline, f"never saw {what}"
        time.sleep(0.05)


def _paused_in_a_write(faces, tmp_path, shown: int) -> tuple[subprocess.Popen, Path]:
    """A run of RUN_ARGS into tmp_path/run, paused (by the atomic writer's test hook)
    inside the write of its checkpoint at ``shown`` images; (the process, its folder)."""
    from fastpgan.atomic import PAUSE_BEFORE_RENAME
    from fastpgan.runs.checkpoint import checkpoint_path

    out, hook = tmp_path / "run", tmp_path / "hook"
    hook.mkdir()
    (hook / "pause").write_text(checkpoint_path(out, shown).name)
    run = _cli_run(["--data", str(faces), *RUN_ARGS, "--out", str(out)],
                   {**_cpu_env(), PAUSE_BEFORE_RENAME: str(hook)})
    _wait_for(lambda: (hook / "paused").exists(), f"the pause in the write at {shown}")
    return run, out


def _final_weights(out):
    checkpoint = Checkpoint.read(latest_checkpoint(out / "checkpoints"))
    return checkpoint.shown, {f"{net}.{k}": v for net in ("G", "D", "G_ema")
                              for k, v in getattr(checkpoint, net).items()}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_checkpoints_the_run_which_resumes_exactly(faces, tmp_path, reference_run,
                                                            signum):
    """SIGTERM (a scheduler's stop) or Ctrl-C: the step ends, a checkpoint is written, one
    line says where, the exit status is EXIT_STOPPED; --resume latest then ends with the
    uninterrupted run's weights, bit for bit."""
    from fastpgan.runs.checkpoint import list_checkpoints
    from fastpgan.train.stopping import EXIT_STOPPED

    out = tmp_path / "run"
    run = _cli_run(["--data", str(faces), *RUN_ARGS, "--out", str(out)], _cpu_env())
    _wait_for(lambda: list_checkpoints(out / "checkpoints"), "the first checkpoint")
    run.send_signal(signum)
    assert run.wait(timeout=600) == EXIT_STOPPED
    lines = run.stderr.read().strip().splitlines()
    newest = Checkpoint.read(latest_checkpoint(out / "checkpoints"))
    assert lines[0].startswith("fastpgan-train: training from the start"), lines  # the plan
    assert lines[-2:] == [
        f"fastpgan-train: {signum.name}: finishing this step and writing a checkpoint (a "
        "second signal stops at once)",
        f"fastpgan-train: stopped by {signum.name} at {newest.shown / 1000:g} kimg; the run is "
        f"saved in {latest_checkpoint(out / 'checkpoints')}: continue it with --resume latest"
    ], lines
    assert newest.shown < reference_run[0], "it stopped before the end"
    resumed = _cli_run(["--data", str(faces), *RUN_ARGS, "--out", str(out), "--resume",
                        "latest"], _cpu_env())
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    end, expected = reference_run
    final, weights = _final_weights(out)
    assert final == end and all(torch.equal(weights[k], expected[k]) for k in expected)


def test_a_second_signal_ends_the_run_at_once(faces, tmp_path):
    """Stopped inside a checkpoint write (the atomic writer's test hook), a second SIGTERM
    ends the process at once, as the signal's default: the write is lost, the checkpoints
    before it load."""
    from fastpgan.runs.checkpoint import list_checkpoints

    run, out = _paused_in_a_write(faces, tmp_path, 40)
    run.send_signal(signal.SIGTERM)
    for line in run.stderr:  # until the first one is heard
        if "finishing this step" in line:
            break
    else:
        raise AssertionError("the run ended without hearing the first signal")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=600) == -signal.SIGTERM
    assert [Checkpoint.read(f).shown for f in list_checkpoints(out / "checkpoints")] == [20]


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(faces, tmp_path):
    """The run folder is locked for the life of a run: a second run into it stops at once,
    naming the first's PID, and writes nothing; once the first is killed (-9), the lock is
    gone with it."""
    first, out = _paused_in_a_write(faces, tmp_path, 20)
    before = sorted(p.name for p in out.rglob("*"))
    for extra in ([], ["--overwrite"], ["--resume", "latest"]):
        second = _cli_run(["--data", str(faces), *RUN_ARGS, "--out", str(out), *extra],
                          _cpu_env())
        assert second.wait(timeout=600) == 2
        assert f"is in use by another run (PID {first.pid})" in second.stderr.read()
        assert sorted(p.name for p in out.rglob("*")) == before, "the second wrote nothing"
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = _cli_run(["--data", str(faces), *RUN_ARGS, "--out", str(out), "--overwrite"],
                     _cpu_env())
    assert again.wait(timeout=600) == 0, again.stderr.read()[-2000:]


def test_kill_9_at_random_moments_loses_nothing_and_resumes_exactly(faces, tmp_path,
                                                                    fresh_seed, reference_run):
    """kill -9 at random moments of a run, every other trial inside a checkpoint write
    (paused there by atomic_write's test hook, not caught by timing luck): the
    checkpoints left all load, a write cut short leaves no checkpoint and the ones
    before it intact, and --resume latest ends with the weights of an uninterrupted
    run, bit for bit."""
    import random

    from fastpgan.atomic import PAUSE_BEFORE_RENAME
    from fastpgan.runs.checkpoint import checkpoint_path, list_checkpoints

    rng = random.Random(fresh_seed)
    args = ["--data", str(faces), *RUN_ARGS]
    env = _cpu_env()
    end, expected = reference_run
    assert end == 180
    for trial in range(KILL_TRIALS):
        out, hook = tmp_path / f"trial{trial}", tmp_path / f"hook{trial}"
        hook.mkdir()
        in_write = trial % 2 == 0
        paused_at = rng.randrange(20, end, 20) if in_write else None
        (hook / "pause").write_text(checkpoint_path(out, paused_at).name if in_write else "")
        run = _cli_run([*args, "--out", str(out)], {**env, PAUSE_BEFORE_RENAME: str(hook)})
        deadline = time.time() + 300
        if in_write:
            while not (hook / "paused").exists() and time.time() < deadline:
                time.sleep(0.05)
            assert (hook / "paused").exists(), "the writer reached the pause"
        else:
            while not list_checkpoints(out / "checkpoints") and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        run.send_signal(signal.SIGKILL)
        run.wait()
        left = list_checkpoints(out / "checkpoints")
        shown = [Checkpoint.read(file).shown for file in left]  # every one loads
        if in_write:
            assert shown == list(range(20, paused_at, 20)), (
                f"trial {trial}: killed writing {paused_at}, left {shown}")
        else:
            assert shown, f"trial {trial}: killed after its first checkpoint, which is gone"
        # killed inside the first checkpoint's write, there is nothing to resume: start over
        again = ["--resume", "latest"] if shown else ["--overwrite"]
        resumed = _cli_run([*args, "--out", str(out), *again], env)
        assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
        assert not list((out / "checkpoints").glob(".*.tmp")), "stale temporary files cleared"
        final, weights = _final_weights(out)
        assert final == end and weights.keys() == expected.keys()
        assert all(torch.equal(weights[k], expected[k]) for k in expected), (
            f"trial {trial} ({'in a write at ' + str(paused_at) if in_write else 'at random'})"
            " ended with other weights")
        assert (out / "generator" / "model.safetensors").exists()


def test_overwrite_starts_over_and_removes_only_the_old_runs_files(faces, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny(faces, out)).run(stop_at=8)
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(tiny(faces, out))
    before = latest_checkpoint(out / "checkpoints")
    with pytest.raises(ValueError, match="no such file or folder"):
        Trainer(tiny(faces, out, data=str(tmp_path / "missing")), overwrite=True)
    assert latest_checkpoint(out / "checkpoints") == before, "a run that cannot start keeps it"
    trainer = Trainer(tiny(faces, out), overwrite=True)
    assert not (out / "checkpoints").exists() and (out / "notes.txt").exists()
    trainer.run(stop_at=8)
    assert Checkpoint.read(latest_checkpoint(out / "checkpoints")).shown == 8


def test_a_full_disk_is_named_and_the_earlier_checkpoints_stay(faces, tmp_path, monkeypatch,
                                                               capsys):
    """The disk fills while a checkpoint is written (safetensors' writer fails as the OS
    says: no space left): one line names the disk, the file, what it needed and what is
    free; the checkpoint before it loads and nothing half-written is left."""
    import errno

    import safetensors.torch

    from fastpgan.cli.train import main as train_main
    from fastpgan.runs.checkpoint import list_checkpoints

    real_save, calls = safetensors.torch.save_file, []

    def filling(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) < 3:
            return real_save(tensors, path, metadata=metadata)
        with open(path, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", filling)
    out = tmp_path / "run"
    assert train_main(["--data", str(faces), *RUN_ARGS, "--out", str(out)]) == 2
    printed = capsys.readouterr().err.strip()
    err = printed.splitlines()[-1]  # after the plan, the error in one line
    assert "Traceback" not in printed and printed.count("error") == 1, printed
    assert re.search(r"error: the disk holding .*checkpoints is full: writing checkpoint-"
                     r"000000000060\.safetensors stopped after 0\.0 MB; it needs about "
                     r"[\d.]+ MB, [\d.]+ MB are free\. Nothing was replaced: the files "
                     r"already there are intact; continue from .*000000000040\.safetensors "
                     r"with --resume latest once there is room", err), err
    assert [Checkpoint.read(f).shown for f in list_checkpoints(out / "checkpoints")] == [20, 40]
    assert not list((out / "checkpoints").glob(".*.tmp"))
