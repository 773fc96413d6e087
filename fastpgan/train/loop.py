"""The progressive training loop: phases, D and G steps, EMA, checkpoints, samples, SWD.

One process per GPU under ``torchrun`` (``torch.distributed``): each rank trains on its
share of the minibatch and gradients are averaged with one all-reduce per network and
step. The networks are not wrapped in DistributedDataParallel because the gradient
penalty differentiates D twice inside a step, which DDP's reducer does not support; the
explicit all-reduce (as NVlabs' StyleGAN3 code does) gives the same averaged gradients.
Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from fastpgan.atomic import DiskFullError, writable_folder
from fastpgan.data.cache import ImageCache
from fastpgan.data.demo import open_training_data
from fastpgan.data.loader import RealImages, to_model_range
from fastpgan.metrics.evaluate import evaluate
from fastpgan.metrics.inception import InceptionFeatures
from fastpgan.models import GrowthStage
from fastpgan.models.architectures import architecture
from fastpgan.models.common import one_hot
from fastpgan.models.pretrained import load_checked
from fastpgan.models.sampling import render
from fastpgan.ops import frozen_weights
from fastpgan.runs import initialize_from, run_networks, run_phases
from fastpgan.runs.checkpoint import Checkpoint, RngStates, checkpoint_path, latest_checkpoint
from fastpgan.runs.lock import RunLock
from fastpgan.runs.log import JsonlLog, TensorBoardLog, plot_training
from fastpgan.runs.pictures import save_grid
from fastpgan.runs.schedule import Phase, describe_plan, phase_at
from fastpgan.train.config import NETWORK_KEYS, TrainConfig
from fastpgan.train.ema import EMA
from fastpgan.train.gpu import gpu_figures, progress_figures
from fastpgan.train.graphs import CudaGraphs, StepGraphs, graphs_wanted, obstacle
from fastpgan.train.losses import LossPhase, PhaseInputs
from fastpgan.train.stats import StatisticsWindow, all_finite
from fastpgan.train.stopping import StopSignals, TrainingStoppedError

GRID_SAMPLES = 64


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite."""


class OutOfMemoryError(RuntimeError):
    """The GPU ran out of memory; the message names a minibatch that fits."""


class Trainer:
    """Trains a ProGAN or StyleGAN generator progressively (a StyleGAN2 one at its final
    resolution), as ``TrainConfig`` says.

    ``Trainer(config).run()`` trains to the end of the schedule, or continues the run in
    ``config.out`` from a checkpoint when ``resume`` is "latest" or a path. A run folder
    that already holds a run is refused unless it is resumed or ``overwrite`` (which
    removes that run's checkpoints, samples, log and exports first). The folder is locked
    (:class:`~fastpgan.runs.lock.RunLock`) from here to the end of :meth:`run`, so a
    second run into it is refused, naming this one's PID.
    """

    def __init__(self, config: TrainConfig, resume: str | None = None,
                 overwrite: bool = False) -> None:
        config.validate()
        if resume and overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces "
                             "it; give one of them")
        self.config = config
        self.out = Path(config.out)
        self.device, self.rank, self.world = _placement(config.device)
        self.is_writer = self.rank == 0
        self.lock = RunLock(self.out)
        self.signals = StopSignals(say=self._say if self.is_writer else None)
        if self.is_writer:
            writable_folder(self.out, "--out")
            self.lock.acquire()  # before looking for a previous run: no two runs race
        try:
            self._set_up(resume, overwrite)
        except BaseException:
            self.lock.release()
            raise

    def _set_up(self, resume: str | None, overwrite: bool) -> None:
        config = self.config
        previous_run = [] if resume or overwrite else _run_files(self.out)
        if previous_run:
            raise ValueError(
                f"--out {config.out} already holds a run ({', '.join(previous_run)}); "
                "continue it with --resume latest, or start over with --overwrite (which "
                "removes that run's checkpoints, samples, log and generator)")
        self.precision = config.precision or (
            "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32")
        channels_last = (config.memory_format == "channels_last"
                         or (config.memory_format == "auto" and self.device.type == "cuda"))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.phases = self._plan()
        self.cache = self._open_data()
        _seed_everything(config.seed)
        self.G, self.D = self._networks()
        self.arch = architecture(config.arch)
        self.ema = EMA(self.G, config.ema_decay, half_life_kimg=config.ema_kimg,
                       rampup=config.ema_rampup)
        if config.init and not resume:  # a resumed run's checkpoint holds what it grew into
            for note in initialize_from(config.init, self.arch, self.G, self.D, self.ema.model):
                if self.is_writer:
                    print(f"fastpgan-train: {note}", file=sys.stderr)
        # the training forward; its weights are self.G's (checkpoints hold self.G's keys)
        self.G_forward: nn.Module = torch.compile(self.G) if config.compile else self.G
        self.data = RealImages(self.cache, config.seed, rank=self.rank, mirror=config.mirror,
                               labelled=config.cond, workers=config.workers,
                               pin_memory=self.device.type == "cuda")
        # its state (a running mean) lives on the device, updated in place
        self.objective = config.build_objective().to(self.device)
        # on the device, so drawing latents and interpolation weights never waits for it
        self.z_generator = torch.Generator(self.device).manual_seed(
            config.seed * 7919 + self.rank + 1)
        self.alpha = torch.zeros((), device=self.device)  # a fade-in's alpha, as data
        # the data's classes, which fakes' labels are drawn from (on the device: no copy)
        self.label_pool = (torch.tensor(self.cache.labels.classes, device=self.device)
                           if config.cond else None)
        self.graphs = self._step_graphs()
        self.window = StatisticsWindow()
        self.bar = self.window_started = None
        self.fixed_z = torch.randn(GRID_SAMPLES, config.latent_dim,
                                   generator=torch.Generator().manual_seed(config.seed))
        # a conditional run's grids: class i % K in sample i
        self.fixed_classes = (torch.arange(GRID_SAMPLES) % config.classes
                              if config.cond else None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.shown, self.phase_step, self.opt_resolution = 0, 0, None
        self.micro_batch: int | None = None  # per-process micro-batch under --batch auto
        self.opt_g = self.opt_d = None
        self.last_checkpoint: Path | None = None
        if resume:
            self._resume(resume)
        self.log: JsonlLog | None = None
        self.board: TensorBoardLog | None = None
        # loaded once, here, so a missing file stops the run before it starts
        self.inception = (InceptionFeatures(config.inception, self.device)
                          if config.fid_images > 0 and self.is_writer else None)
        if overwrite and self.is_writer:  # last: nothing is removed for a run that can't start
            _remove_run(self.out)

    # ------------------------------------------------------------------ set-up

    def _open_data(self) -> ImageCache:
        """The training images' cache, built by rank 0 (the others wait for it); the run's
        channels follow the data."""
        c = self.config
        if self.is_writer:
            writable_folder(self.out, "--out")
            folder = open_training_data(c.data, c.resolution, c.channels)
        if self.world > 1:
            dist.barrier()
            if not self.is_writer:
                folder = open_training_data(c.data, c.resolution, c.channels)
        cache = ImageCache.open(folder)
        if cache.resolution < c.resolution:
            raise ValueError(f"the data cache {folder} goes up to {cache.resolution}px, "
                             f"below --resolution {c.resolution}")
        c.channels = cache.channels
        if c.cond and cache.labels is None:
            raise ValueError(f"--cond trains on class labels and the data in {folder} has "
                             "none: give a dataset.json ({\"labels\": [[file, class], "
                             "...]}) or one subfolder per class, or drop --cond")
        c.classes = cache.labels.count if c.cond else 0
        return cache

    def _plan(self) -> list[Phase]:
        """The schedule's phases, each minibatch checked to split over the processes."""
        c = self.config
        phases = run_phases(c.to_dict())
        scheduled = run_phases(c.to_dict(), lengthened=False)[-1].end
        if c.total_kimg is not None and c.total_kimg * 1000 < scheduled:
            raise ValueError(f"--total-kimg {c.total_kimg:g} is below the schedule's "
                             f"{scheduled / 1000:g} kimg; it can only lengthen the last "
                             "stabilization (leave it out to train the schedule as it is)")
        for phase in phases:
            if phase.batch % self.world:
                raise ValueError(f"the {phase.name} minibatch {phase.batch} does not split over "
                                 f"{self.world} processes")
        return phases

    def _networks(self) -> tuple[nn.Module, nn.Module]:
        G, D = run_networks(self.config.to_dict())
        if self.config.checkpoint_activations:
            G.recompute_blocks(2)
            D.recompute_blocks(2)
        return (G.to(self.device, memory_format=self.memory_format).train(),
                D.to(self.device, memory_format=self.memory_format).train())

    def _step_graphs(self) -> StepGraphs | None:
        """The CUDA graphs the steps replay from, if ``--cuda-graphs`` and the run allow."""
        c = self.config
        reason = obstacle(self.device, self.precision, self.world, c.compile,
                          c.checkpoint_activations)
        if not graphs_wanted(c.cuda_graphs, reason):
            if reason and c.cuda_graphs == "auto" and self.device.type == "cuda" and self.is_writer:
                print(f"fastpgan-train: without CUDA graphs: {reason}", file=sys.stderr)
            return None
        return StepGraphs(CudaGraphs([self.z_generator]), self.device,
                          on_failure=self._free_gradients)

    def _optimizers(self, resolution: int) -> None:
        c = self.config
        if self.opt_g is not None and (self.opt_resolution == resolution or not c.reset_optimizer):
            return
        # capturable: the step counts live on the device, as a replayed graph needs
        capturable = self.graphs is not None
        lr_g, betas_g = self.objective.adam("G", c.network_lr("G"), tuple(c.betas))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr_g, betas=betas_g, eps=c.eps,
                                      capturable=capturable)
        lr_d, betas_d = self.objective.adam("D", c.network_lr("D"), tuple(c.betas))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=betas_d, eps=c.eps,
                                      capturable=capturable)
        self.opt_resolution = resolution

    def _free_gradients(self) -> None:
        for optimizer in (self.opt_d, self.opt_g):
            optimizer.zero_grad(set_to_none=True)

    def _resume(self, resume: str) -> None:
        path = (latest_checkpoint(self.out / "checkpoints") if resume == "latest"
                else Path(resume))
        if path is None:
            raise ValueError(f"--resume latest: no checkpoint in {self.out / 'checkpoints'}")
        checkpoint = Checkpoint.read(path)
        now, saved = self.config.to_dict(), checkpoint.config
        differences = [f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}" for k in NETWORK_KEYS
                       if _comparable(saved.get(k)) != _comparable(now[k])]
        if differences:
            raise ValueError(f"cannot resume from {path}: the run's settings differ "
                             f"({'; '.join(differences)})")
        if checkpoint.shown > self.phases[-1].end:
            raise ValueError(f"cannot resume from {path}: it has shown "
                             f"{checkpoint.shown / 1000:g} kimg, past this run's end at "
                             f"{self.phases[-1].end / 1000:g} kimg (a --total-kimg of at least "
                             f"{checkpoint.shown / 1000:g} trains on from it)")
        for net, state in ((self.G, checkpoint.G), (self.D, checkpoint.D),
                           (self.ema.model, checkpoint.G_ema)):
            try:
                load_checked(net, state)
            except ValueError as exc:
                raise ValueError(f"cannot resume from {path}: {exc}") from None
        self.ema.updates = checkpoint.ema_updates
        self.objective.load_state_dict(checkpoint.objective)
        self.shown, self.phase_step = checkpoint.shown, checkpoint.phase_step
        phase = phase_at(self.phases, self.shown)
        if self.phase_step == 0 and phase is not None and self.shown > phase.start:
            # written where the last phase ended, which a larger --total-kimg lengthened:
            # the steps it took, so the data order and lazy penalties go on as planned
            self.phase_step = -(-(self.shown - phase.start) // phase.batch)
        if checkpoint.opt_resolution is not None:
            self._optimizers(checkpoint.opt_resolution)
            self.opt_g.load_state_dict(checkpoint.opt_g)
            self.opt_d.load_state_dict(checkpoint.opt_d)
        self.scaler.load_state_dict(checkpoint.scaler)
        if checkpoint.rng is None:
            raise ValueError(f"cannot resume from {path}: it holds no RNG states (a "
                             "generator's checkpoint, not a run's)")
        checkpoint.rng.restore(self.z_generator, self.device)
        self.last_checkpoint = path

    # ------------------------------------------------------------------ training

    def run(self, stop_at: int | None = None) -> None:
        """Trains to the end of the schedule (or until ``stop_at`` images, for tests)."""
        if self.is_writer and not self.lock.held:  # a later run() of this trainer
            self.lock.acquire()
        self.log = JsonlLog(self.out / "log.jsonl") if self.is_writer else None
        self.run_started, self.metric_seconds = time.perf_counter(), 0.0
        if self.is_writer:  # with or without progress bars: what a log should begin with
            where = ("from the start" if self.shown == 0 else
                     f"resuming at {self.shown / 1000:g} kimg")
            print(f"fastpgan-train: training {where} in {self.out}; the schedule:\n"
                  f"{describe_plan(self.phases)}", file=sys.stderr, flush=True)
        try:
            with self.signals:
                if self.is_writer and self.config.tensorboard:
                    self.board = TensorBoardLog(self.out / "tensorboard")
                if self.shown == 0:  # the baseline that later metrics are read against
                    self._metrics(self.config.resolution)
                while (phase := phase_at(self.phases, self.shown)) is not None:
                    if stop_at is not None and self.shown >= stop_at:
                        return
                    self._run_phase(phase, stop_at)
                    if self._stop_agreed():  # the phase's end wrote its checkpoint
                        raise self._stopped()
                self._finish()
        finally:
            for sink in (self.log, self.board):
                if sink is not None:
                    sink.close()
            self.log = self.board = None
            self.lock.release()

    def _run_phase(self, phase: Phase, stop_at: int | None) -> None:
        c = self.config
        self._optimizers(phase.resolution)
        if self.graphs is not None:  # a new network or new optimizer tensors: new graphs
            self.graphs.reset()
        if c.compile:  # a new resolution: new graphs, without piling up recompilations
            torch.compiler.reset()
        local = phase.batch // self.world
        if c.batch == "auto":  # the largest micro-batch that fits, measured for this phase
            self.micro_batch = self._largest_fitting(phase, phase.alpha(self.shown), local)
            if not self.micro_batch:
                raise self._out_of_memory(phase, phase.alpha(self.shown))
        self._record(event="phase_start", phase=phase.name, resolution=phase.resolution,
                     micro_batch=self.micro_batch or local)
        if self.device.type == "cuda":  # the logged peak memory is this phase's
            torch.cuda.reset_peak_memory_stats(self.device)
        batches = self.data.batches(phase.resolution, phase.batch // self.world,
                                    start=self.phase_step)
        self.bar = _progress(phase, self.shown, enabled=c.progress and self.is_writer)
        if self.is_writer and not c.progress:  # a line a phase where no bar shows it
            print(f"fastpgan-train: {phase.name} (batch {phase.batch}) from "
                  f"{self.shown / 1000:g} to {phase.end / 1000:g} kimg", file=sys.stderr,
                  flush=True)
        checkpoint_every = max(int(c.checkpoint_kimg * 1000), 1)
        sample_every = max(int(c.sample_kimg * 1000), 1)
        self.window_started = time.perf_counter()
        while self.shown < phase.end and (stop_at is None or self.shown < stop_at):
            alpha, failure = phase.alpha(self.shown), None
            try:
                self._step(next(batches), phase.resolution, alpha)
            except torch.cuda.OutOfMemoryError as exc:
                # a copy without the traceback, whose frames hold the failed step's
                # activations: the probe for a batch that fits runs after they are freed
                failure = torch.cuda.OutOfMemoryError(str(exc))
            if failure is not None:
                raise self._out_of_memory(phase, alpha) from failure
            before, self.shown = self.shown, self.shown + phase.batch
            self.phase_step += 1
            if self.bar is not None:
                self.bar.update(min(self.shown, phase.end) - before)
            if self.phase_step % c.log_every == 0 or self.shown >= phase.end:
                self._log_window(phase.resolution, alpha)
            if self.shown >= phase.end:
                break
            if self._stop_agreed(at_window=self.phase_step % c.log_every == 0):
                self._log_window(phase.resolution, alpha)  # never checkpoint a NaN
                self.save_checkpoint()
                raise self._stopped()
            if self.shown // checkpoint_every > before // checkpoint_every:
                self._log_window(phase.resolution, alpha)  # never checkpoint a NaN
                self.save_checkpoint()
            if self.shown // sample_every > before // sample_every:
                self._samples(phase.resolution, alpha)
        self._log_window(phase.resolution, phase.alpha(self.shown))
        if self.bar is not None:
            self.bar.close()
        if self.shown >= phase.end:
            self.phase_step = 0
            self._samples(phase.resolution, 1.0, tag=phase.name.replace(" ", "-"))
            self._metrics(phase.resolution)
            self.save_checkpoint()

    @staticmethod
    def _say(line: str) -> None:
        print(f"fastpgan-train: {line}", file=sys.stderr, flush=True)

    def _stop_agreed(self, at_window: bool = True) -> bool:
        """Whether a signal asks the run to stop now. One process decides at any step;
        several agree (any one caught it) at log windows and phase ends, which every rank
        reaches at the same step, so all stop after the same step."""
        if self.world == 1:
            return self.signals.signum is not None
        if not at_window:
            return False
        caught = torch.tensor(float(self.signals.signum is not None), device=self.device)
        dist.all_reduce(caught, op=dist.ReduceOp.MAX)
        return bool(caught.item())

    def _stopped(self) -> TrainingStoppedError:
        where = (f"the run is saved in {self.last_checkpoint}" if self.last_checkpoint
                 else "rank 0 saved the run" if not self.is_writer
                 else "no checkpoint was written yet")
        return TrainingStoppedError(
            f"stopped by {self.signals.name or 'a signal on another process'} at "
            f"{self.shown / 1000:g} kimg; {where}: continue it with --resume latest")

    def _step(self, batch: Tensor | Sequence[Tensor], resolution: int, alpha: float,
              dry_run: bool = False) -> None:
        """One minibatch (uint8 images, and their classes in a conditional run): the loss's
        discriminator phases, the generator's phases and the EMA; dry_run computes the
        gradients only.

        The host's part is here: alpha into its device tensor, the EMA's weight, which
        phases this step runs, and counting the step; ``_device_step`` is the rest, which
        ``self.graphs`` replays from a CUDA graph where it can.
        """
        fading = alpha < 1.0
        if fading:
            self.alpha.fill_(alpha)
        phases = self.objective.phases(self.phase_step)
        inputs = (batch,) if isinstance(batch, Tensor) else tuple(batch)  # the loader's list
        images = len(inputs[0]) * self.world

        def step(real_u8: Tensor, classes: Tensor | None = None) -> list[str]:
            return self._device_step(real_u8, classes, resolution, fading, phases, dry_run)

        if dry_run:
            step(*(t.to(self.device) for t in inputs))
            return
        self.ema.advance(images, self.shown)
        if self.graphs is None:
            keys = step(*(t.to(self.device, non_blocking=True) for t in inputs))
        else:
            variant = (resolution, fading, phases, tuple(inputs[0].shape), self.micro_batch)
            keys = self.graphs.run(variant, inputs, step)
        self.objective.end_step(self.phase_step, images)
        self.window.count(keys, self.shown, self.shown + images)

    def _device_step(self, real_u8: Tensor, classes: Tensor | None, resolution: int,
                     fading: bool, phases: tuple[tuple[LossPhase, ...], tuple[LossPhase, ...]],
                     dry_run: bool = False) -> list[str]:
        """The step's device work; returns the names of the statistics it summed.

        Nothing here waits for the device or depends on a host value that changes from
        step to step: latents, fakes' labels and interpolation weights are drawn there,
        the statistics are summed there (``self.window``, read by ``_log_window``), and
        during a fade-in alpha is the 0-d tensor ``self.alpha``, so a changing alpha is
        data, not a new graph. With ``micro_batch`` set (``--batch auto``), each phase's
        gradients are summed over micro-batches, weighted by their share, before its one
        optimizer step.
        """
        c, G, D = self.config, self.G, self.D
        d_phases, g_phases = phases
        real = to_model_range(real_u8, self.device).contiguous(memory_format=self.memory_format)
        fade: float | Tensor = 1.0
        if fading:
            fade = self.alpha
            if resolution > 4:  # fade the reals as the generator fades
                coarse = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
                real = torch.lerp(coarse, real, fade)
        size = self.micro_batch or real.shape[0]
        parts = real.split(size)
        real_labels = (one_hot(classes, c.classes).split(size)
                       if classes is not None else [None] * len(parts))
        shares = [len(part) / len(real) for part in parts]

        def latents(n: int) -> Tensor:
            return torch.randn(n, c.latent_dim, generator=self.z_generator, device=self.device)

        def labels(n: int) -> Tensor | None:
            """n one-hot labels drawn as the data's (None for an unconditional run)."""
            if self.label_pool is None:
                return None
            index = torch.randint(len(self.label_pool), (n,), generator=self.z_generator,
                                  device=self.device)
            return one_hot(self.label_pool[index], c.classes)

        def critic(x: Tensor, labels: Tensor | None) -> Tensor:
            # ProGAN's conditional D classifies (its labels are outputs); StyleGAN2's projects
            return D(x, fade) if self.arch.grows else D(x, labels)

        def fakes_of(n: int) -> tuple[Tensor, Tensor | None]:
            z, fake_labels = latents(n), labels(n)
            if not self.arch.grows:
                return self.G_forward(z, fake_labels), fake_labels
            labelled = {} if fake_labels is None else {"c": fake_labels}
            return self.G_forward(z, resolution, fade, **labelled), fake_labels

        step_stats: dict[str, Tensor] = {}

        def accumulate(loss: Tensor, stats: dict[str, Tensor], share: float) -> None:
            self.scaler.scale(loss * share).backward()
            for key, value in stats.items():
                step_stats[key] = step_stats.get(key, 0) + value.detach().float() * share

        D.requires_grad_(True)
        G.requires_grad_(False)
        inputs = []
        for part, part_labels in zip(parts, real_labels, strict=True):
            with self._autocast():
                fake, fake_labels = fakes_of(len(part))
            mix = torch.rand(len(part), generator=self.z_generator, device=self.device)
            inputs.append(PhaseInputs(part, fake.detach(), mix, critic, fakes_of, latents, G,
                                      self.z_generator, part_labels, fake_labels, labels))
        for phase in d_phases:
            self._run_phase_terms(phase, inputs, shares, accumulate)
            self._apply(D, self.opt_d, dry_run)
        for batch in inputs:  # the detached fakes are the discriminator's only
            batch.fake = batch.mix = batch.fake_labels = None
        D.requires_grad_(False)
        G.requires_grad_(True)
        for phase in g_phases:
            self._run_phase_terms(phase, inputs, shares, accumulate)
            self._apply(G, self.opt_g, dry_run)
        if not dry_run:
            self.ema.follow(G)
            self.window.accumulate(step_stats)
        return list(step_stats)

    def _run_phase_terms(self, phase: LossPhase, inputs: list[PhaseInputs],
                         shares: list[float],
                         accumulate: Callable[[Tensor, dict[str, Tensor], float], None]) -> None:
        """Every term of ``phase`` on every micro-batch, each under autocast, then its
        backward (weighted by the micro-batch's share)."""
        for batch, share in zip(inputs, shares, strict=True):
            for term in self.objective.terms(phase, batch):
                with self._autocast():
                    loss, stats = term()
                accumulate(loss, stats, share)

    def _log_window(self, resolution: int, alpha: float) -> None:
        """Reads the steps' statistics since the last read (one synchronization), stops
        the run if one is not finite, and logs and shows their means."""
        window = self.window
        stats = window.read()
        if not stats:
            return
        if not all_finite(stats):
            where = (f"the last good checkpoint is {self.last_checkpoint}; resume with "
                     f"--resume {self.last_checkpoint}" if self.last_checkpoint else
                     "no checkpoint was written yet")
            raise TrainingDivergedError(
                f"non-finite loss in the steps from {window.first_shown} to "
                f"{window.last_shown} images ({resolution}x{resolution}, alpha "
                f"{alpha:.3f} at the end): {stats}; {where}")
        now = time.perf_counter()
        rate = (window.last_shown - window.first_shown) / max(now - self.window_started, 1e-9)
        self.window_started = now
        gpu = gpu_figures(self.device)
        self._record(resolution=resolution, **stats, alpha=round(alpha, 4),
                     img_per_s=round(rate, 1), **gpu)
        if self.bar is not None:
            self.bar.set_postfix(alpha=f"{alpha:.2f}", d=f"{stats['d_loss']:.3f}",
                                 g=f"{stats['g_loss']:.3f}", img_s=f"{rate:.0f}",
                                 **progress_figures(gpu), refresh=False)

    def _apply(self, net: nn.Module, optimizer: torch.optim.Optimizer, dry_run: bool) -> None:
        """The optimizer step on the summed gradients (averaged over processes)."""
        if not dry_run:
            if self.world > 1:
                _average_gradients(net, self.world)
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def _largest_fitting(self, phase: Phase, alpha: float, start: int) -> int:
        """The largest per-process batch from start, start/2, ... whose dry-run step fits
        in GPU memory (0 if none)."""
        shape = (self.config.channels, phase.resolution, phase.resolution)
        micro, self.micro_batch = self.micro_batch, None
        # the probe leaves the run's state as it was: the objective's, which it moves, too
        objective = {k: v.clone() for k, v in self.objective.state_dict().items()}
        try:
            while start >= 1:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                try:
                    images = torch.zeros(start, *shape, dtype=torch.uint8)
                    batch = ((images, torch.zeros(start, dtype=torch.int64))
                             if self.config.cond else images)
                    self._step(batch, phase.resolution, alpha, dry_run=True)
                    return start
                except torch.cuda.OutOfMemoryError:
                    self._free_gradients()
                    start //= 2
            return 0
        finally:
            self.micro_batch = micro
            self.objective.load_state_dict(objective)

    def _out_of_memory(self, phase: Phase, alpha: float) -> OutOfMemoryError:
        """The error for an out-of-memory step, naming the largest minibatch that fits."""
        local = phase.batch // self.world
        fits = self._largest_fitting(phase, alpha, local // 2)
        where = (f"out of memory at {phase.name} (alpha {alpha:.2f}) with a minibatch of "
                 f"{phase.batch} ({local} per process)")
        advice = (f"a minibatch of {fits * self.world} fits: continue with --resume latest "
                  f"--batch {fits * self.world}, or use --batch auto" if fits else
                  "not even a minibatch of 1 fits; use a smaller network or another GPU")
        return OutOfMemoryError(f"{where}; {advice}")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        # a graph must not keep the casts of one step's weights for the next
        return torch.autocast(self.device.type, dtype=dtype,
                              cache_enabled=self.graphs is None)

    # ------------------------------------------------------------------ outputs

    def save_checkpoint(self) -> Path | None:
        """Writes the run's full state (rank 0 only); returns the file."""
        if not self.is_writer:
            return None
        checkpoint = Checkpoint(
            config=self.config.to_dict(), shown=self.shown, phase_step=self.phase_step,
            opt_resolution=self.opt_resolution, G=self.G.state_dict(), D=self.D.state_dict(),
            G_ema=self.ema.model.state_dict(), ema_updates=self.ema.updates,
            objective=self.objective.state_dict(),
            opt_g=self.opt_g.state_dict() if self.opt_g else None,
            opt_d=self.opt_d.state_dict() if self.opt_d else None,
            scaler=self.scaler.state_dict(),
            rng=RngStates.capture(self.z_generator, self.device))
        try:
            self.last_checkpoint = checkpoint.save(self.out / "checkpoints",
                                                   self.config.keep_checkpoints)
        except DiskFullError as exc:
            where = (f"continue from {self.last_checkpoint} with --resume latest once there is "
                     "room" if self.last_checkpoint else "no checkpoint was written yet")
            raise ValueError(f"{exc}; {where}") from None
        self._record(event="checkpoint", file=str(self.last_checkpoint))
        return self.last_checkpoint

    @torch.no_grad()
    @frozen_weights()
    def generate(self, z: Tensor, resolution: int, alpha: float = 1.0,
                 classes: Tensor | None = None) -> Tensor:
        """Images from the EMA generator, in float32, for latents z (on any device) [of
        ``classes``, (N,) indices, in a conditional run]."""
        images = []
        for start in range(0, len(z), 64):
            chunk = z[start:start + 64].to(self.device)
            labels = None if classes is None else classes[start:start + 64].to(self.device)
            with self._autocast():
                images.append(render(self.ema.model, chunk, GrowthStage(resolution, alpha),
                                     classes=labels).float())
        return torch.cat(images)

    def _samples(self, resolution: int, alpha: float, tag: str | None = None) -> None:
        if not self.is_writer:
            return
        folder = self.out / "samples"
        folder.mkdir(exist_ok=True)
        name = f"{self.shown // 1000:06d}kimg{'-' + tag if tag else ''}.png"
        images = self.generate(self.fixed_z, resolution, alpha, self.fixed_classes)
        save_grid(images, folder / name, columns=8, upscale_to=512)
        if self.board is not None:
            self.board.image("samples", images, self.shown, columns=8)

    def _metrics(self, resolution: int) -> None:
        """Logs SWD (and FID with ``fid_images``) of the EMA generator at ``resolution``.

        Images stream through in batches (at 1024x1024, 1024 images in float64 would take
        25 GB a copy), under their own RNG state, so training is not disturbed.
        """
        c = self.config
        if not self.is_writer:
            return
        common = dict(device=self.device, batch=64, resolution=resolution,
                      progress=c.progress)
        n = min(c.swd_images, self.cache.count)
        if n >= 2:
            started = time.perf_counter()
            swd = evaluate(self.ema.model, self.cache.path, ["swd"], num=n, **common)["swd"]
            self._record(event="swd", resolution=resolution, swd_avg=swd["avg"],
                         seconds=self._metric_time(started),
                         **{f"swd_{k}": v for k, v in swd.items() if k != "avg"})
        if self.inception is not None:
            started = time.perf_counter()
            result = evaluate(self.ema.model, self.cache.path, ["fid"], num=c.fid_images,
                              inception=self.inception, **common)
            self._record(event="fid", resolution=resolution, fid=result["fid"],
                         fid_images=c.fid_images, fid_real=result["num_real"],
                         seconds=self._metric_time(started))

    def _metric_time(self, started: float) -> float:
        """Seconds since ``started``, added to the run's time in metrics."""
        seconds = time.perf_counter() - started
        self.metric_seconds += seconds
        return round(seconds, 3)

    def _finish(self) -> None:
        if not self.is_writer:
            return
        if self.last_checkpoint != checkpoint_path(self.out / "checkpoints", self.shown):
            self.save_checkpoint()
        self.ema.model.save_pretrained(self.out / "generator")
        plot_training(self.out / "log.jsonl", self.out / "training.png")
        session = time.perf_counter() - self.run_started
        self._record(event="done", generator=str(self.out / "generator"),
                     metric_seconds=round(self.metric_seconds, 3))
        if self.metric_seconds:  # SWD at 1024 images was a quarter of a small CPU run
            print(f"fastpgan-train: phase-end metrics took {self.metric_seconds:.0f} s of "
                  f"this session's {session:.0f} s "
                  f"({100 * self.metric_seconds / max(session, 1e-9):.0f}%); --swd-images "
                  f"(now {self.config.swd_images}, 0: off) and --fid-images set their cost",
                  file=sys.stderr, flush=True)

    def _record(self, **record) -> None:
        record = {"kimg": round(self.shown / 1000, 3), "time": time.time(), **record}
        for sink in (self.log, self.board):
            if sink is not None:
                sink.write(record)


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


RUN_FILES = ("checkpoints", "samples", "log.jsonl", "training.png", "generator", "tensorboard")
"""What a run writes into its folder (everything --overwrite removes)."""


def _run_files(out: Path) -> list[str]:
    """The names of a previous run's files in the folder ``out``."""
    return [name for name in RUN_FILES if (out / name).exists()]


def _remove_run(out: Path) -> None:
    """Removes a previous run's files from ``out`` (and nothing else there)."""
    for name in _run_files(out):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink()


def _placement(name: str | None) -> tuple[torch.device, int, int]:
    """(device, rank, world size): the GPU is chosen first, because NCCL's first
    collective runs on the current one."""
    device = _device(name)
    return (device, *_distributed(device))


def _seed_everything(seed: int) -> None:
    """Seeds torch's, Python's (StyleGAN's style-mixing draws) and NumPy's global RNGs."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size), joining the process group when torchrun started us: NCCL bound
    to this process's GPU, or gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _device(name: str | None) -> torch.device:
    """The device named (None: CUDA when available), made current; a CUDA device without
    an index is this process's GPU under torchrun (LOCAL_RANK)."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is visible")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def _average_gradients(net: nn.Module, world: int) -> None:
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))


def _progress(phase: Phase, shown: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=phase.length, initial=min(shown - phase.start, phase.length),
                desc=f"{phase.name} (batch {phase.batch})", unit="img", unit_scale=True,
                leave=True, dynamic_ncols=True)
