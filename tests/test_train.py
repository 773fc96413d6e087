"""fastpgan-train: schedule, losses, EMA, checkpoints, exact resume, kill -9, torchrun."""

import json
import math
import os
import signal
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import GraphEmulator, assert_close, blob_cache
from torch.utils._python_dispatch import TorchDispatchMode

from fastpgan.cli.train import build_parser, config_from_args
from fastpgan.cli.train import main as train_main
from fastpgan.data import build_cache
from fastpgan.metrics import sliced_wasserstein_distance
from fastpgan.models import Pretrained, StyleGAN2Generator, load
from fastpgan.runs.checkpoint import Checkpoint, latest_checkpoint
from fastpgan.runs.schedule import BATCH_SCHEDULES, build_phases, phase_at
from fastpgan.train.config import TrainConfig
from fastpgan.train.ema import EMA
from fastpgan.train.graphs import CudaGraphs, StepGraphs
from fastpgan.train.loop import OutOfMemoryError, Trainer, TrainingDivergedError
from fastpgan.train.losses import (
    WGANGP,
    LogisticR1,
    LossPhase,
    Objective,
    PathLengthPenalty,
    build_loss,
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A small cache of 40 grayscale 8x8 images of Gaussian blobs at random places."""
    return blob_cache(tmp_path_factory.mktemp("data") / "blobs")


def tiny(faces, out, **changes):
    settings = dict(data=str(faces), out=str(out), resolution=8, batch=4, fade_kimg=0.024,
                    stable_kimg=0.024, latent_dim=8, fmap_base=32, fmap_max=8,
                    checkpoint_kimg=0.008, sample_kimg=1.0, swd_images=0, workers=0,
                    progress=False, device="cpu")
    settings.update(changes)
    return TrainConfig(**settings)


def _weights(trainer):
    return {f"{name}.{k}": v for name, net in (("G", trainer.G), ("D", trainer.D),
                                               ("E", trainer.ema.model))
            for k, v in net.state_dict().items()}


# ---------------------------------------------------------------- schedule, losses, EMA


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


def test_losses_and_their_phases_on_a_linear_critic():
    """D(x) = <w, x>: the input gradient is w everywhere, so every term is known."""
    w = torch.randn(1, 3, 4, 4)

    def critic(x):
        return (x * w).flatten(1).sum(1, keepdim=True)

    real, fake, mix = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), torch.rand(5)
    sp = torch.nn.functional.softplus
    gp, r1 = (w.norm() - 1) ** 2, w.norm() ** 2
    wgan_main = (critic(fake) - critic(real) + 1e-3 * critic(real) ** 2).mean()
    logistic_main = (sp(critic(fake)) + sp(-critic(real))).mean()
    both, main_only = LossPhase("D", True, 1.0), LossPhase("Dmain", True, 0.0)
    cases = [  # (loss, phase, expected loss, statistic, its expected value)
        (WGANGP(), both, wgan_main + 10 * gp, "gp", gp),
        (WGANGP(gp_lambda=3.0, drift=0.0), LossPhase("Dreg", False, 4.0), 4 * 3 * gp, "gp", gp),
        (WGANGP(), main_only, wgan_main, "d_real", critic(real).mean()),
        (LogisticR1(), both, logistic_main + 5 * r1, "r1", r1),
        (LogisticR1(r1_gamma=2.0), LossPhase("Dreg", False, 16.0), 16 * r1, "r1", r1),
        (LogisticR1(), main_only, logistic_main, "d_fake", critic(fake).mean()),
    ]
    for loss, phase, expected, key, value in cases:
        got, stats = loss.d_loss(phase, critic, real, fake, mix)
        assert torch.allclose(got, expected, rtol=1e-5), (loss, phase)
        assert torch.allclose(stats[key], value, rtol=1e-5), (loss, phase, key)
        assert ("gp" in stats or "r1" in stats) == bool(phase.penalty_gain)
    assert torch.allclose(LogisticR1().g_loss(critic(fake)), sp(-critic(fake)).mean())
    assert torch.allclose(WGANGP().g_loss(critic(fake)), -critic(fake).mean())


def test_lazy_regularization_phases_and_adam_follow_stylegan2():
    """Karras et al. 2020, appendix B: the penalty every K-th minibatch, Adam's lr and
    betas scaled by c = K / (K + 1)."""
    assert [p.name for p in WGANGP().d_phases(3)] == ["D"]
    lazy = LogisticR1()
    assert lazy.reg_interval == 16
    assert [[p.name for p in lazy.d_phases(step)] for step in (0, 1, 15, 16)] == [
        ["Dmain", "Dreg"], ["Dmain"], ["Dmain"], ["Dmain", "Dreg"]]
    lr, betas = lazy.adam(0.002, (0.0, 0.99))
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert WGANGP().adam(0.001, (0.0, 0.99)) == (0.001, (0.0, 0.99))
    with pytest.raises(ValueError, match="--r1-gamma is a weight of logistic-r1, not of "
                                         "wgan-gp"):
        build_loss("wgan-gp", r1_gamma=5.0)
    with pytest.raises(ValueError, match="--reg-interval must be >= 1"):
        build_loss("logistic-r1", reg_interval=0)
    assert build_loss("logistic-r1", r1_gamma=2.0, gp_lambda=None) == LogisticR1(r1_gamma=2.0)


class _LinearStyles(torch.nn.Module):
    """A generator whose Jacobian is a known matrix: ws = z M as 3 layers of 2, images =
    A ws."""

    def __init__(self):
        super().__init__()
        self.M = torch.nn.Parameter(torch.randn(2, 2, dtype=torch.float64))
        self.A = torch.nn.Parameter(torch.randn(1 * 2 * 3, 3 * 2, dtype=torch.float64))

    def ws(self, z):
        return z.view(-1, 3, 2) @ self.M

    def synthesis(self, ws):
        return (ws.flatten(1) @ self.A.T).view(-1, 1, 2, 3)


def test_path_length_penalty_is_nvlabs_formula_on_a_known_jacobian():
    """l = sqrt(mean over layers of ||(J^T y)_layer||^2), y ~ N(0, I) / sqrt(H W); with
    images = A w the vector J^T y is A^T y, written out here, not taken from autograd."""
    torch.manual_seed(0)
    G = _LinearStyles()
    z = torch.randn(4, 6, dtype=torch.float64)
    pl = PathLengthPenalty(weight=2.0, reg_interval=4, decay=0.01)
    pl.mean = torch.tensor(0.5)  # float32, as the trainer keeps it
    loss, stats = pl.penalty(LossPhase("Greg", False, 4.0), G, z, torch.Generator().manual_seed(3))
    y = torch.randn((4, 1, 2, 3), generator=torch.Generator().manual_seed(3)) / 6 ** 0.5
    jt_y = (y.double().flatten(1) @ G.A).view(4, 3, 2)
    lengths = jt_y.square().sum(2).mean(1).sqrt()
    mean = 0.5 + 0.01 * (lengths.mean() - 0.5)
    assert torch.allclose(stats["pl_length"].double(), lengths.mean(), rtol=1e-6)
    assert torch.allclose(pl.mean.double(), mean, rtol=1e-6)
    assert torch.allclose(loss.double(), 2.0 * 4.0 * ((lengths - mean) ** 2).mean(), rtol=1e-5)
    loss.backward()  # the penalty trains the generator's weights: second-order through J
    assert G.A.grad is not None and G.A.grad.abs().sum() > 0
    objective = Objective(LogisticR1(), pl)
    assert [[p.name for p in objective.phases(step)[1]] for step in (0, 1, 3, 4)] == [
        ["Gmain", "Greg"], ["Gmain"], ["Gmain"], ["Gmain", "Greg"]]
    lr, betas = objective.adam("G", 0.002, (0.0, 0.99))
    assert lr == pytest.approx(0.002 * 4 / 5) and betas[1] == pytest.approx(0.99 ** 0.8)
    assert pl.batch(8) == 4 and pl.batch(1) == 1
    with pytest.raises(ValueError, match="--pl-interval must be >= 1"):
        PathLengthPenalty(reg_interval=0)


@dataclass
class _ToyPenalty:
    """A regularizer the trainer has never heard of, defined here only: the mean square of
    the generator's images, every other minibatch, with a count of its calls as state."""

    reg_interval: int = 2
    calls: torch.Tensor = field(default_factory=lambda: torch.zeros(()))

    def batch(self, n):
        return n

    def penalty(self, phase, G, z, generator=None):
        images = G.synthesis(G.ws(z))
        self.calls += 1
        loss = 0.1 * phase.penalty_gain * images.float().square().mean()
        return loss, {"toy": loss.detach()}

    def state_dict(self):
        return {"toy_calls": self.calls}

    def load_state_dict(self, state):
        self.calls.copy_(state["toy_calls"])

    def to(self, device):
        self.calls = self.calls.to(device)
        return self


def test_a_new_regularizer_is_a_loss_room_object_only(faces, tmp_path):
    """The trainer runs whatever phases the objective lists: a toy generator regularizer
    trains, logs its statistic, is checkpointed and resumed, and scales G's Adam."""
    trainer = Trainer(tiny(faces, tmp_path / "run", arch="stylegan2", loss="logistic-r1",
                           total_kimg=0.032))
    trainer.objective = Objective(trainer.objective.loss, _ToyPenalty())
    trainer.run(stop_at=16)
    assert float(trainer.objective.g_penalty.calls) == 2, "every other of 4 minibatches"
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 3)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
              .splitlines()]
    assert any("toy" in record for record in logged)
    checkpoint = Checkpoint.read(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert float(checkpoint.objective["toy_calls"]) == 2


def test_ema_warms_up_then_decays_at_the_set_rate():
    live = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(live, decay=0.999)
    with torch.no_grad():
        live.weight.fill_(1.0)
        ema.model.weight.fill_(0.0)
    ema.update(live)  # decay min(0.999, 1/10): 90 % of the way
    assert ema.model.weight.item() == pytest.approx(0.9)
    ema.updates = 10**6
    ema.update(live)
    assert ema.model.weight.item() == pytest.approx(0.9 + 0.1 * 0.001)


def test_ema_half_life_follows_nvlabs_with_its_ramp_up():
    live = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(live, half_life_kimg=10, rampup=0.05)
    with torch.no_grad():
        live.weight.fill_(1.0)
        ema.model.weight.fill_(0.0)
    ema.update(live, batch=32, shown=6400)  # half-life min(10000, 0.05 * 6400) = 320
    assert ema.model.weight.item() == pytest.approx(1 - 0.5 ** (32 / 320))
    assert ema.decay_at(32, 10**7) == pytest.approx(0.5 ** (32 / 10_000))
    assert EMA(live, half_life_kimg=10).decay_at(32, 0) == pytest.approx(0.5 ** (32 / 10_000))
    with pytest.raises(ValueError, match="must be > 0"):
        EMA(live, half_life_kimg=0)


def test_stylegan2_cli_defaults_are_nvlabs():
    def config(*argv):
        return config_from_args(build_parser().parse_args(["--arch", "stylegan2", *argv]))

    c = config("--data", "x")
    assert (c.loss, c.ema_kimg, c.ema_rampup, c.fmap_base) == ("logistic-r1", 10, 0.05, 16384)
    assert (c.pl_weight, c.pl_interval, c.conv_clamp, c.mapping_layers) == (2.0, 4, 256, 8)
    assert config("--conv-clamp", "none").conv_clamp is None
    c = config("--loss", "wgan-gp", "--ema-kimg", "2", "--fmap-base", "512", "--pl-weight", "0")
    assert (c.loss, c.ema_kimg, c.fmap_base, c.pl_weight) == ("wgan-gp", 2, 512, 0.0)
    assert c.build_objective().g_penalty is None
    progan = config_from_args(build_parser().parse_args(["--data", "x"]))
    assert progan.ema_kimg is None and progan.pl_weight == 0
    progan.pl_weight = 2.0
    with pytest.raises(ValueError, match="--pl-weight is a setting of --arch stylegan2, not of "
                                         "--arch progan"):
        progan.validate()


def test_swd_ranks_a_wrong_distribution_far_above_a_second_sample():
    torch.manual_seed(0)
    a, b = torch.rand(64, 1, 16, 16), torch.rand(64, 1, 16, 16)
    blocky = torch.nn.functional.interpolate(torch.rand(64, 1, 4, 4), scale_factor=4)
    same = sliced_wasserstein_distance(a, b)["avg"]
    assert sliced_wasserstein_distance(a, blocky)["avg"] > 3 * same
    with pytest.raises(ValueError, match="one shape"):
        sliced_wasserstein_distance(a, b[:3])


def test_the_paper_schedule_trains_through_its_256_and_512_minibatches(tmp_path):
    """14 images at 256x256 and 6 at 512x512 do not split into minibatch-stddev groups of
    4: the discriminator groups them by 2 and 3 (a default run died at the 256 fade-in)."""
    rng = np.random.default_rng(0)
    data = build_cache(iter([rng.uniform(0, 255, (1, 512, 512)).astype(np.float32)
                             for _ in range(3)]), tmp_path / "data", 512, 1, source="noise")
    trainer = Trainer(TrainConfig(data=str(data), out=str(tmp_path / "run"), resolution=512,
                                  batch="paper", fade_kimg=0.006, stable_kimg=0.006,
                                  latent_dim=8, fmap_base=512, fmap_max=8,
                                  checkpoint_kimg=100, sample_kimg=100, swd_images=0,
                                  workers=0, progress=False, device="cpu"))
    assert [p.batch for p in trainer.phases[-4:]] == [14, 14, 6, 6]
    trainer.fixed_z = trainer.fixed_z[:4]  # sample grids of 4: 64 at 512x512 took half the test
    trainer.run()
    assert trainer.shown >= trainer.phases[-1].end


class _HostReads(TorchDispatchMode):
    """Counts the host's reads of tensor values in the dispatcher (.item(), float(),
    bool(): aten._local_scalar_dense) into ``reads[region[0]]`` while a region is set,
    except ``ignored()`` tensors."""

    def __init__(self, reads: dict, region: list, ignored) -> None:
        super().__init__()
        self.reads, self.region, self.ignored = reads, region, ignored

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (func is torch.ops.aten._local_scalar_dense.default and self.region[0]
                and id(args[0]) not in self.ignored()):
            self.reads[self.region[0]] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss", ["wgan-gp", "logistic-r1"])
def test_a_step_reads_nothing_from_the_device_and_a_log_step_reads_once(
        faces, tmp_path, monkeypatch, loss):
    """Through stable and fade-in phases and lazy penalty steps: every read of a tensor
    value would wait for the GPU. Adam's step counters are excluded: without
    capturable=True they live on the host even for CUDA parameters."""
    trainer = Trainer(tiny(faces, tmp_path / "run", loss=loss, reg_interval=2,
                           fade_kimg=0.032, stable_kimg=0.032, log_every=3,
                           checkpoint_kimg=1.0))
    reads, region, calls = {"step": 0, "log": 0}, [None], {"step": 0, "log": 0}

    def adam_counters():
        return {id(state["step"]) for opt in (trainer.opt_g, trainer.opt_d) if opt
                for state in opt.state.values()}

    def counted(name):  # these do not dispatch for CPU tensors
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if region[0]:
                reads[region[0]] += 1
            return original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, read)

    def within(method, key):
        original = getattr(Trainer, method)

        def run(self, *args, **kwargs):
            if key == "step" or self.window.steps:
                calls[key] += 1
            region[0] = key
            try:
                return original(self, *args, **kwargs)
            finally:
                region[0] = None
        monkeypatch.setattr(Trainer, method, run)

    for name in ("tolist", "numpy", "cpu"):
        counted(name)
    within("_step", "step")
    within("_log_window", "log")
    with _HostReads(reads, region, adam_counters):
        trainer.run()
    # 8 steps a phase (4x4 stable, 8x8 fade-in, 8x8 stable), logged after steps 3, 6, 8
    assert calls == {"step": 24, "log": 9}
    assert reads == {"step": 0, "log": 9}


# ---------------------------------------------------------------- checkpoints


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


# ---------------------------------------------------------------- the loop


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
    initial = _weights(Trainer(tiny(faces, tmp_path / "init", **settings)))
    straight = Trainer(tiny(faces, tmp_path / "a", **settings))
    straight.run()
    first = Trainer(tiny(faces, tmp_path / "b", **settings))
    first.run(stop_at=44)  # mid 8x8 fade-in, between checkpoints
    assert first.shown == 44
    resumed = Trainer(tiny(faces, tmp_path / "b", **settings), resume="latest")
    assert resumed.shown == 40, "continues from the last checkpoint"
    resumed.run()
    a, b = _weights(straight), _weights(resumed)
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
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    G = Pretrained.from_pretrained(tmp_path / "a" / "generator")
    assert isinstance(G, StyleGAN2Generator) and G.img_resolution == 8
    assert torch.equal(G.state_dict()["synthesis.b8.conv0.weight"],
                       straight.ema.model.state_dict()["synthesis.b8.conv0.weight"])


NVLABS_16 = Path(__file__).parent / "data" / "nvlabs-sg2-16"
"""NVlabs' networks (random weights, config F at 16x16, converted): generator/, discriminator/."""


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


class _CaptureFails(GraphEmulator):
    def capture(self, step):
        raise RuntimeError("capture refused")


def _with_graphs(trainer: Trainer, backend_type) -> Trainer:
    """The trainer replaying its steps from ``backend_type``'s graphs, as --cuda-graphs
    on does on CUDA."""
    trainer.graphs = StepGraphs(backend_type([trainer.z_generator]), trainer.device,
                                on_failure=trainer._free_gradients)
    return trainer


def _logged_losses(out) -> list[dict]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "img_per_s")} for r in records
            if "d_loss" in r]


@pytest.mark.parametrize("arch, loss", [("progan", "wgan-gp"), ("stylegan", "logistic-r1"),
                                        ("stylegan2", "logistic-r1")])
def test_steps_replayed_from_graphs_train_as_eager_steps_do(faces, tmp_path, monkeypatch,
                                                            arch, loss):
    """The step as a CUDA graph replays it (tests/helpers.py's GraphEmulator: the recorded
    ops run again on the same tensors, the step's Python code does not): through a
    fade-in, its stabilization and lazy penalty steps, with capturable Adam, the weights
    and logged statistics equal those of eager steps bitwise, and an interrupted and
    resumed replayed run ends where the straight one does. A host value baked into the
    graph (a Python alpha, Adam's host step counts) would make them differ."""
    monkeypatch.setattr(sys.modules["torch.optim.adam"], "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cpu"])
    settings = dict(arch=arch, loss=loss, reg_interval=2, log_every=3, fade_kimg=0.032,
                    stable_kimg=0.032, total_kimg=0.064 if arch == "stylegan2" else None)
    if arch == "stylegan2":  # with the path length penalty on R1's steps
        settings.update(pl_weight=2.0, pl_interval=2)
    replayed = _with_graphs(Trainer(tiny(faces, tmp_path / "replayed", **settings)),
                            GraphEmulator)
    replayed.run()
    with pytest.warns(RuntimeWarning, match="capture refused"):
        eager = _with_graphs(Trainer(tiny(faces, tmp_path / "eager", **settings)),
                             _CaptureFails)
        eager.run()
    # ProGAN, StyleGAN: 4x4 stable, 8x8 fade-in and stable, 8 steps each; StyleGAN2: one
    # phase of 16. Per phase two variants, with the penalty and without, each an eager
    # warm-up and a capture first (graphs are reset at every phase start)
    phases, steps = len(replayed.phases), replayed.phases[-1].end // 4
    assert replayed.graphs.captures == 2 * phases
    assert replayed.graphs.replays == steps - 4 * phases
    assert replayed.opt_d.param_groups[0]["capturable"]
    a, b = _weights(replayed), _weights(eager)
    assert all(torch.equal(a[k], b[k]) for k in a), "replayed and eager steps differ"
    logged = _logged_losses(tmp_path / "replayed")
    assert len(logged) >= 6 and logged == _logged_losses(tmp_path / "eager")
    first = _with_graphs(Trainer(tiny(faces, tmp_path / "resumed", **settings)), GraphEmulator)
    first.run(stop_at=44)
    resumed = _with_graphs(Trainer(tiny(faces, tmp_path / "resumed", **settings),
                                   resume="latest"), GraphEmulator)
    resumed.run()
    c = _weights(resumed)
    assert all(torch.equal(a[k], c[k]) for k in a), "resuming a replayed run changed it"


@pytest.mark.parametrize("arch", ["progan", "stylegan", "stylegan2"])
def test_fused_ops_train_channels_last_under_bf16_autocast(faces, tmp_path, device, arch):
    """What a GPU run does by default: the fused ops (Triton's interpreter and the CPU
    extension here, the GPU where there is one: Triton cannot launch on CPU tensors
    outside its interpreter) on channels_last activations under bfloat16 autocast,
    WGAN-GP, fade-in and stable phases."""
    import fastpgan

    before = fastpgan.get_backend()
    fastpgan.set_backend("fused")
    try:
        trainer = Trainer(tiny(faces, tmp_path / "run", arch=arch, precision="bf16",
                               memory_format="channels_last", fade_kimg=0.008,
                               stable_kimg=0.008, device=device))
        initial = {k: v.clone() for k, v in trainer.G.state_dict().items()}
        trainer.run()
    finally:
        fastpgan.set_backend(before)
    assert trainer.shown >= trainer.phases[-1].end
    assert any(not torch.equal(v, trainer.G.state_dict()[k]) for k, v in initial.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch,swd_at", [("progan", [8, 4, 8, 8]), ("stylegan", [8, 4, 8, 8]),
                                         ("stylegan2", [8, 8])])
def test_trains_on_cuda_with_the_defaults(faces, tmp_path, arch, swd_at):
    """A GPU run's defaults: bf16 autocast, channels_last, the Triton kernels and the
    CUDA extension, --batch auto, SWD at phase ends, GPU figures in the log."""
    trainer = Trainer(tiny(faces, tmp_path / "run", arch=arch, device="cuda", precision=None,
                           batch="auto", swd_images=16))
    assert trainer.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert trainer.memory_format == torch.channels_last
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
               .splitlines()]
    steps = [r for r in records if "d_loss" in r]
    assert steps and steps[-1]["gpu_mem_gib"] > 0
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in steps)
    assert [r["resolution"] for r in records if r.get("event") == "swd"] == swd_at


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_replay_the_step_on_cuda_as_eager_steps_run(faces, tmp_path):
    """--cuda-graphs auto on CUDA: each variant is captured and replayed (none failed),
    and the weights stay within 1e-3 of eager steps with the same capturable Adam (fp32:
    only the replay differs; the latents must be the same draws)."""
    settings = dict(device="cuda", precision="fp32", reg_interval=2, loss="logistic-r1",
                    fade_kimg=0.064, stable_kimg=0.064)
    with pytest.warns(RuntimeWarning, match="capture refused"):
        eager = _with_graphs(Trainer(tiny(faces, tmp_path / "eager", **settings)),
                             _CaptureFails)
        eager.run()
    replayed = Trainer(tiny(faces, tmp_path / "replayed", **settings))
    assert isinstance(replayed.graphs.backend, CudaGraphs)
    replayed.run()
    assert replayed.graphs.failure is None and replayed.graphs.replays > 0
    a, b = _weights(replayed), _weights(eager)
    for key in a:
        if a[key].is_floating_point():
            assert_close(a[key], b[key], 1e-3, key)


def test_run_writes_samples_log_plot_generator_and_swd(faces, tmp_path):
    Trainer(tiny(faces, tmp_path / "run", swd_images=16, sample_kimg=0.016)).run()
    out = tmp_path / "run"
    assert (out / "generator" / "model.safetensors").exists()
    assert (out / "training.png").stat().st_size > 1000
    assert len(list((out / "samples").glob("*.png"))) >= 4
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    swd = [r for r in records if r.get("event") == "swd"]
    assert swd[0]["kimg"] == 0 and swd[-1]["resolution"] == 8
    steps = [r for r in records if "d_loss" in r]
    assert steps and {"g_loss", "img_per_s", "alpha", "resolution"} <= set(steps[-1])
    assert records[-1]["event"] == "done"


def test_progress_bar_and_log_show_gpu_memory_and_utilization(faces, tmp_path, capsys,
                                                              monkeypatch):
    import fastpgan.train.loop as loop

    monkeypatch.setattr(loop, "gpu_figures", lambda device: {"gpu_mem_gib": 1.25,
                                                             "gpu_util": 87})
    Trainer(tiny(faces, tmp_path / "run", progress=True)).run()
    bars = capsys.readouterr().err
    assert "mem=1.2G" in bars and "util=87%" in bars
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
             .splitlines() if "d_loss" in line]
    assert steps[-1]["gpu_mem_gib"] == 1.25 and steps[-1]["gpu_util"] == 87


def test_gpu_utilization_is_read_from_the_nvml_device_with_the_cuda_device_uuid(monkeypatch):
    """NVML numbers GPUs without CUDA_VISIBLE_DEVICES: cuda:0 may be NVML's GPU 3."""
    import types

    from fastpgan.train import gpu as report

    class Properties:
        uuid = "3a9c0e55-7f1b-4c1e-9d2a-0123456789ab"

    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByUUID=lambda uuid: {"GPU-" + Properties.uuid: "third"}[uuid],
        nvmlDeviceGetUtilizationRates=lambda handle: types.SimpleNamespace(
            gpu={"third": 42}[handle]))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties())
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda index: 3 * 2**29)
    report._nvml_handle.cache_clear()
    try:
        figures = report.gpu_figures(torch.device("cuda", 0))
    finally:
        report._nvml_handle.cache_clear()
    assert figures == {"gpu_mem_gib": 1.5, "gpu_util": 42}
    assert report.progress_figures(figures) == {"mem": "1.5G", "util": "42%"}


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


KILL_TRIALS = int(os.environ.get("FASTPGAN_KILL_TRIALS", "2"))  # one in a write, one anywhere
"""Trials of the kill -9 test; CI runs a few, FASTPGAN_KILL_TRIALS=20 the full set."""


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


TORCHRUN_SCRIPT = """
import sys, torch
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer
config = TrainConfig(data=sys.argv[1], out=sys.argv[2], resolution=8, batch=4, fade_kimg=0.008,
                     stable_kimg=0.008, latent_dim=8, fmap_base=32, fmap_max=8, swd_images=0,
                     workers=0, progress=False, device="cpu")
trainer = Trainer(config)
trainer.run()
torch.save({k: v for k, v in trainer.G.state_dict().items()},
           f"{sys.argv[2]}/rank{trainer.rank}.pt")
"""


def test_torchrun_two_cpu_processes_keep_identical_weights(faces, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--standalone", str(script), str(faces), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert latest_checkpoint(tmp_path / "checkpoints") is not None


def test_training_benchmark_runs_and_projects_the_schedule(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "train.json"
    done = subprocess.run([sys.executable, "bench/train_bench.py", "--resolution", "8",
                           "--steps", "1", "--warmup", "0", "--impls", "fused,reference",
                           "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {(r["impl"], r["resolution"]) for r in report["rows"]} >= {("fused", 8),
                                                                        ("reference", 8)}
    assert set(report["projected_hours"]) == {"fused", "reference"}


def test_step_overhead_benchmark_counts_kernels_and_no_host_reads(tmp_path):
    out = tmp_path / "overhead.json"
    done = subprocess.run([sys.executable, "bench/step_overhead.py", "--resolution", "16",
                           "--repeats", "1", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["resolution"] for r in rows] == [4, 8, 16]
    assert [r["batch"] for r in rows] == [128, 128, 128]
    for row in rows:
        assert row["reads"] == 0, "a step waits for the device"
        # the weight's fill and three foreach kernels, whatever the network's size
        assert row["ema"] == 4, "the EMA launches a kernel a tensor"
        assert row["fastpgan"] > 0 and row["aten"] > row["optimizer"] > 0
    assert rows[0]["aten"] < rows[1]["aten"] < rows[2]["aten"], "one more block a level"


def _fits_only(trainer, monkeypatch, largest):
    """Makes the generator raise CUDA's out-of-memory error above ``largest`` samples,
    after its forward; returns weak references to the images of each failed call."""
    forward, failed = trainer.G.forward, []

    def limited(z, *args, **kwargs):
        images = forward(z, *args, **kwargs)
        if z.shape[0] > largest:
            failed.append(weakref.ref(images))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return images

    monkeypatch.setattr(trainer.G, "forward", limited)
    return failed


def test_out_of_memory_names_the_minibatch_that_fits(faces, tmp_path, monkeypatch):
    trainer = Trainer(tiny(faces, tmp_path / "run", batch=16))
    failed = _fits_only(trainer, monkeypatch, 4)
    probe, alive_at_probe = trainer._largest_fitting, []

    def recorded_probe(*args, **kwargs):
        alive_at_probe.append(sum(ref() is not None for ref in failed))
        return probe(*args, **kwargs)

    monkeypatch.setattr(trainer, "_largest_fitting", recorded_probe)
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    with pytest.raises(OutOfMemoryError, match=r"out of memory at 4x4 stable .* minibatch of "
                                               r"16 .* a minibatch of 4 fits: continue with "
                                               r"--resume latest --batch 4") as raised:
        trainer.run()
    assert alive_at_probe == [0], "the failed step's tensors must be freed before the probe"
    assert "Tried to allocate 2 GiB" in str(raised.value.__cause__)
    assert all(torch.equal(v, trainer.G.state_dict()[k]) for k, v in before.items()), \
        "the probe does not train"


def test_batch_auto_accumulates_micro_batches_that_fit(faces, tmp_path, monkeypatch):
    trainer = Trainer(tiny(faces, tmp_path / "run", batch="auto", stable_kimg=0.064,
                           fade_kimg=0.0))
    _fits_only(trainer, monkeypatch, 4)
    trainer.run()
    assert trainer.micro_batch == 4 and trainer.shown >= 128
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
               .splitlines()]
    starts = [r for r in records if r.get("event") == "phase_start"]
    assert [r["micro_batch"] for r in starts] == [4, 4]


def test_activation_checkpointing_trains_to_the_same_weights(faces, tmp_path):
    plain = Trainer(tiny(faces, tmp_path / "a"))
    plain.run()
    recomputed = Trainer(tiny(faces, tmp_path / "b", checkpoint_activations=True))
    recomputed.run()
    a, b = _weights(plain), _weights(recomputed)
    assert all(torch.equal(a[k], b[k]) for k in a), "recomputation is exact on the CPU"


def test_tensorboard_gets_the_logged_scalars_and_sample_grids(faces, tmp_path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    Trainer(tiny(faces, tmp_path / "run", tensorboard=True, swd_images=16,
                 sample_kimg=0.016)).run()
    events = accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/d_loss", "train/g_loss", "train/alpha", "swd/swd_avg"} <= set(scalars)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
              .splitlines() if "d_loss" in line]
    board = events.Scalars("train/d_loss")
    assert [e.step for e in board] == [round(r["kimg"] * 1000) for r in logged]
    assert [e.value for e in board] == pytest.approx([r["d_loss"] for r in logged], rel=1e-6)
    assert events.Tags()["images"] == ["samples"]


def test_compiled_generator_forward_trains_like_the_eager_one(faces, tmp_path):
    """The losses logged at each phase end agree (compiled float arithmetic may round
    differently, so not bitwise)."""
    eager = Trainer(tiny(faces, tmp_path / "a", fade_kimg=0, stable_kimg=0.012))
    compiled = Trainer(tiny(faces, tmp_path / "b", fade_kimg=0, stable_kimg=0.012,
                            compile=True))
    assert compiled.G_forward is not compiled.G
    for trainer in (eager, compiled):
        trainer.run()
    records = [[json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text()
                .splitlines() if "g_loss" in line] for name in ("a", "b")]
    # windows ending at the checkpoints (every 8 images) and at the 4x4 and 8x8 phase ends
    assert len(records[0]) == len(records[1]) == 4
    for a, b in zip(*records, strict=True):
        assert b["g_loss"] == pytest.approx(a["g_loss"], rel=1e-4, abs=1e-5)
        assert b["d_loss"] == pytest.approx(a["d_loss"], rel=1e-4, abs=1e-5)
    assert set(compiled.G.state_dict()) == set(eager.G.state_dict())


@pytest.mark.parametrize("arch", ["progan", "stylegan"])  # StyleGAN's noise: global RNG
def test_swd_and_fid_at_phase_ends_are_logged_and_leave_training_untouched(
        faces, tmp_path, stub_inception, arch):
    plain = Trainer(tiny(faces, tmp_path / "a", arch=arch))
    plain.run()
    measured = Trainer(tiny(faces, tmp_path / "b", arch=arch, swd_images=16, fid_images=12,
                            inception=str(stub_inception)))
    measured.run()
    a, b = _weights(plain), _weights(measured)
    assert all(torch.equal(a[k], b[k]) for k in a), "metrics must not draw from training's RNG"
    records = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text()
               .splitlines()]
    for event in ("swd", "fid"):
        stages = [(r["kimg"], r["resolution"]) for r in records if r.get("event") == event]
        assert stages == [(0.0, 8), (0.024, 4), (0.048, 8), (0.072, 8)], event  # start, ends
    assert all(r["fid"] > 0 and r["fid_real"] == 12 for r in records if "fid" in r)
    assert all(r["swd_avg"] > 0 for r in records if r.get("event") == "swd")
    with pytest.raises(ValueError, match="no Inception file"):
        Trainer(tiny(faces, tmp_path / "c", fid_images=4, inception=str(tmp_path / "no.pt")))


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


def test_the_planned_phases_are_printed_at_start(faces, tmp_path, capsys):
    Trainer(tiny(faces, tmp_path / "run", progress=True)).run(stop_at=4)
    err = capsys.readouterr().err
    assert "the schedule:\n4x4 stable: 0.024 kimg at batch 4\n8x8 fade-in: 0.024 kimg" in err
    assert "0.072 kimg in all" in err


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
