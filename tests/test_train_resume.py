"""Nothing lost: atomic checkpoints, exact resume (also after kill -9 at random moments),
settings that cannot change, a run replaced only when asked, fine-tuning from
published networks, a diverging run stopped with its last good checkpoint."""

import json
import math
import os
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


KILL_TRIALS = int(os.environ.get("FASTPGAN_KILL_TRIALS", "2"))  # one in a write, one anywhere


def _cli_run(args, env, **popen):
    return subprocess.Popen([sys.executable, "-m", "fastpgan.cli.train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **popen)


def _final_weights(out):
    checkpoint = Checkpoint.read(latest_checkpoint(out / "checkpoints"))
    return checkpoint.shown, {f"{net}.{k}": v for net in ("G", "D", "G_ema")
                              for k, v in getattr(checkpoint, net).items()}


def test_kill_9_at_random_moments_loses_nothing_and_resumes_exactly(faces, tmp_path,
                                                                    fresh_seed):
    """kill -9 at random moments of a run, every other trial inside a checkpoint write
    (paused there by atomic_write's test hook, not caught by timing luck): the
    checkpoints left all load, a write cut short leaves no checkpoint and the ones
    before it intact, and --resume latest ends with the weights of an uninterrupted
    run, bit for bit."""
    import random

    from fastpgan.atomic import PAUSE_BEFORE_RENAME
    from fastpgan.runs.checkpoint import checkpoint_path, list_checkpoints

    rng = random.Random(fresh_seed)
    args = ["--data", str(faces), "--resolution", "8", "--batch", "4", "--fade-kimg", "0.06",
            "--stable-kimg", "0.06", "--latent-dim", "8", "--fmap-base", "32",
            "--fmap-max", "8", "--checkpoint-kimg", "0.02", "--keep-checkpoints", "100",
            "--swd-images", "0", "--workers", "0", "--no-progress", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    reference = _cli_run([*args, "--out", str(tmp_path / "reference")], env)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]
    end, expected = _final_weights(tmp_path / "reference")
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
