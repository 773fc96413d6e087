"""The trainer's fast paths, each training as the plain one does: CUDA-graph replay,
bf16 channels_last with the fused ops, the GPU defaults, --batch auto and out of memory,
activation checkpointing, --compile, several processes under torchrun, and the
training and step-overhead benchmarks."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch
from helpers import GraphEmulator, assert_close, labelled_blobs, tiny, training_weights

from fastpgan.runs.checkpoint import Checkpoint, latest_checkpoint
from fastpgan.train.graphs import CudaGraphs, StepGraphs
from fastpgan.train.loop import OutOfMemoryError, Trainer


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


@pytest.mark.parametrize("arch, loss, aug", [
    ("progan", "wgan-gp", "none"), ("stylegan", "logistic-r1", "none"),
    ("stylegan2", "logistic-r1", "none"),
    # ADA: draws from the device generator, p read on the device and adapted between steps
    ("progan", "logistic-r1", "ada"),
    # conditional: labels a second static input, the fakes' labels drawn on the device
    ("stylegan2", "logistic-r1", "cond")])
def test_steps_replayed_from_graphs_train_as_eager_steps_do(faces, tmp_path, monkeypatch,
                                                            arch, loss, aug):
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
    if aug == "ada":
        settings.update(aug=aug, aug_p=0.3, aug_target=0.0)
    data = faces
    if aug == "cond":
        data = labelled_blobs(tmp_path / "labelled")
        settings.update(cond=True)
    replayed = _with_graphs(Trainer(tiny(data, tmp_path / "replayed", **settings)),
                            GraphEmulator)
    replayed.run()
    with pytest.warns(RuntimeWarning, match="capture refused"):
        eager = _with_graphs(Trainer(tiny(data, tmp_path / "eager", **settings)),
                             _CaptureFails)
        eager.run()
    # ProGAN, StyleGAN: 4x4 stable, 8x8 fade-in and stable, 8 steps each; StyleGAN2: one
    # phase of 16. Per phase two variants, with the penalty and without, each an eager
    # warm-up and a capture first (graphs are reset at every phase start)
    phases, steps = len(replayed.phases), replayed.phases[-1].end // 4
    assert replayed.graphs.captures == 2 * phases
    assert replayed.graphs.replays == steps - 4 * phases
    assert replayed.opt_d.param_groups[0]["capturable"]
    a, b = training_weights(replayed), training_weights(eager)
    assert all(torch.equal(a[k], b[k]) for k in a), "replayed and eager steps differ"
    logged = _logged_losses(tmp_path / "replayed")
    assert len(logged) >= 6 and logged == _logged_losses(tmp_path / "eager")
    first = _with_graphs(Trainer(tiny(data, tmp_path / "resumed", **settings)), GraphEmulator)
    first.run(stop_at=44)
    resumed = _with_graphs(Trainer(tiny(data, tmp_path / "resumed", **settings),
                                   resume="latest"), GraphEmulator)
    resumed.run()
    c = training_weights(resumed)
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
    a, b = training_weights(replayed), training_weights(eager)
    for key in a:
        if a[key].is_floating_point():
            assert_close(a[key], b[key], 1e-3, key)


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


def _process_tree(pid: int) -> list[int]:
    """pid's descendants, from /proc."""
    found, stack = [], [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            for child in (task / "children").read_text().split():
                found.append(int(child))
                stack.append(int(child))
    return found


def _rank_of(pid: int) -> int | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def test_under_torchrun_a_signal_to_one_rank_stops_every_rank_at_the_same_step(faces,
                                                                              tmp_path):
    """SIGTERM to rank 1 alone: the ranks agree at the next log window, rank 0 writes the
    checkpoint of that step, and both end with EXIT_STOPPED."""
    from fastpgan.runs.checkpoint import list_checkpoints

    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "-m", "fastpgan.cli.train", "--data", str(faces), "--out", str(out), "--resolution",
         "8", "--batch", "4", "--fade-kimg", "0.1", "--stable-kimg", "0.1", "--latent-dim",
         "8", "--fmap-base", "32", "--fmap-max", "8", "--checkpoint-kimg", "0.02",
         "--log-every", "3", "--swd-images", "0", "--workers", "0", "--no-progress",
         "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    deadline = time.time() + 600
    while not list_checkpoints(out / "checkpoints"):  # the state to wait for, not a time
        assert time.time() < deadline and launcher.poll() is None, "no first checkpoint"
        time.sleep(0.05)
    rank1 = next(p for p in _process_tree(launcher.pid) if _rank_of(p) == 1)
    os.kill(rank1, signal.SIGTERM)
    launcher.wait(timeout=600)
    err = launcher.stderr.read()
    stops = re.findall(r"stopped by (SIGTERM|a signal on another process) at ([\d.]+) kimg", err)
    assert sorted(stops) == sorted([("SIGTERM", stops[0][1]),
                                    ("a signal on another process", stops[0][1])]), err[-3000:]
    newest = Checkpoint.read(latest_checkpoint(out / "checkpoints"))
    assert f"{newest.shown / 1000:g}" == stops[0][1], "rank 0 saved the step they stopped at"


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
    a, b = training_weights(plain), training_weights(recomputed)
    assert all(torch.equal(a[k], b[k]) for k in a), "recomputation is exact on the CPU"


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
