"""What a run does and leaves: samples, log, plot, generator, SWD/FID at phase ends,
progress and GPU figures, TensorBoard, the paper's large minibatches, and a step that
reads nothing back from the device."""

import json
import sys

import numpy as np
import pytest
import torch
from helpers import tiny, training_weights
from torch.utils._python_dispatch import TorchDispatchMode

from fastpgan.data import build_cache
from fastpgan.metrics import sliced_wasserstein_distance
from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer


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


def test_run_writes_samples_log_plot_generator_and_swd(faces, tmp_path, capsys):
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
    # the time metrics took, each and in all, logged and said (SWD was a quarter of a run)
    assert all(r["seconds"] > 0 for r in swd)
    assert records[-1]["metric_seconds"] == pytest.approx(sum(r["seconds"] for r in swd),
                                                          abs=1e-2)
    assert "phase-end metrics took" in capsys.readouterr().err


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


@pytest.mark.parametrize("arch", ["progan", "stylegan"])  # StyleGAN's noise: global RNG
def test_swd_and_fid_at_phase_ends_are_logged_and_leave_training_untouched(
        faces, tmp_path, stub_inception, arch):
    plain = Trainer(tiny(faces, tmp_path / "a", arch=arch))
    plain.run()
    measured = Trainer(tiny(faces, tmp_path / "b", arch=arch, swd_images=16, fid_images=12,
                            inception=str(stub_inception)))
    measured.run()
    a, b = training_weights(plain), training_weights(measured)
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
