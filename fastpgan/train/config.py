"""Everything a training run is configured by, with the official ProGAN's defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fastpgan.models import ARCHITECTURES
from fastpgan.models.architectures import architecture, foreign_setting
from fastpgan.models.common import check_channels
from fastpgan.runs.schedule import BATCH_SCHEDULES
from fastpgan.sizes import check_resolution
from fastpgan.train.augment import AUGMENTATIONS, build_augmentation
from fastpgan.train.graphs import GRAPH_MODES
from fastpgan.train.losses import LOSSES, Objective, PathLengthPenalty, build_loss

ARCHS = tuple(ARCHITECTURES)
PRECISIONS = ("bf16", "fp16", "fp32")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
BATCH_NAMES = (*BATCH_SCHEDULES, "auto")
"""Named minibatch schedules; "auto" is the paper's in micro-batches that fit the GPU."""
# Settings that must match to resume a run. The rest may change between sessions, the
# minibatch included (e.g. a smaller one after running out of GPU memory), and the total
# (it only lengthens the last stabilization, so a finished run can be trained on).
NETWORK_KEYS = ("arch", "resolution", "latent_dim", "fmap_base", "fmap_max", "channels", "loss",
                "fade_kimg", "stable_kimg", "seed", "conv_clamp", "mapping_layers", "cond",
                "classes")


@dataclass
class TrainConfig:
    """A training run's settings.

    Attributes:
        data: image cache folder (or image folder / zip, cached on first use); None for
            the bundled demo faces.
        out: run folder: checkpoints, samples, log, plot.
        arch: "progan", "stylegan" (StyleGAN's generator, ProGAN's discriminator), both
            growing, or "stylegan2" (config F, trained at ``resolution`` only: one
            stabilization of ``stable_kimg``, lengthened to ``total_kimg``).
        resolution: final resolution (power of two).
        loss: "wgan-gp" (ProGAN) or "logistic-r1" (StyleGAN).
        gp_lambda, drift, r1_gamma: the loss's weights (WGAN-GP's penalty and drift, R1's
            gamma); None: the loss's default (10, 0.001; 10).
        reg_interval: the penalty every this many minibatches, weighted by it (lazy
            regularization); None: the loss's default (1 for WGAN-GP, 16 for R1).
        pl_weight, pl_interval: StyleGAN2's path length regularization of the generator,
            its weight (0: none) and its lazy interval; stylegan2 only (config F: 2, 4).
        log_every: read the step statistics from the device, check them and log them
            every this many steps (and at phase ends and checkpoints).
        precision: "bf16", "fp16" (with a gradient scaler) or "fp32"; None picks bf16 on
            GPUs that support it, else fp32.
        memory_format: "channels_last" (NHWC activations and weights, what cuDNN's tensor
            core convolutions prefer), "contiguous" (NCHW), or "auto": channels_last on
            CUDA, NCHW elsewhere.
        batch: "paper", "official", "auto" (the paper's minibatch in micro-batches that fit
            the GPU, measured at each phase start, with gradient accumulation; the
            minibatch standard deviation then groups within each micro-batch, as it does
            within each GPU's share in multi-GPU training) or a number.
        fade_kimg, stable_kimg: thousands of real images per fade-in and stabilization.
        total_kimg: lengthen the last stabilization to this many kimg in all (None: no).
        seed: the run's seed (networks, latents, data order).
        device: "cuda", "cpu", ...; None picks cuda when available.
        latent_dim, fmap_base, fmap_max: network size (channels, see models.channels_at).
        conv_clamp, mapping_layers: StyleGAN2's clamp of every convolution's output (None:
            none; config F: 256) and its mapping network's depth (8); stylegan2 only.
        init: start a stylegan2 run from these networks (a published ``.pkl``, a
            ``fastpgan convert`` folder or a saved generator), for fine-tuning; their
            architecture must be the run's.
        channels: image channels (3 RGB, 1 grayscale); None: as the data (a folder whose
            images are all grey trains as one channel).
        lr, betas, eps: Adam's (Karras et al. 2017, A.1: 0.001, (0, 0.99), 1e-8).
        g_lr, d_lr: the generator's and the discriminator's own lr (None: ``lr``).
        mirror: x-flip each real image with probability 1/2 (NVlabs' --mirror=1 doubles
            the data set with flipped copies: the same distribution).
        aug: augmentation of every image the discriminator sees: "none", "ada" (ADA's
            bgc pipeline, p adapted), "fixed" (bgc at ``aug_p``), "diffaug" (DiffAugment).
        aug_p: bgc's probability (ada: its start, 0 if None; fixed: required).
        aug_target: ada's target for r_t = E[sign(D(real))] (None: 0.6).
        aug_kimg: ada's speed: p can go from 0 to 1 in this many thousand images (None:
            NVlabs' 500; a short run needs less for p to move at all).
        cond: train on the data set's class labels (progan: the official code's label
            input to G and auxiliary classifier in D; stylegan2: NVlabs' label embedding
            in the mapping network and projection in D).
        classes: the number of classes of a conditional run, set from the data (0:
            unconditional).
        reset_optimizer: fresh optimizer state at each new resolution (official code).
        checkpoint_activations: recompute the two highest resolutions' blocks of G and D
            in the backward pass instead of storing their activations.
        compile: run the generator's training forward through torch.compile (compiled
            again at each phase start). The discriminator stays eager: its gradient
            penalty needs a double backward, which compiled graphs do not support.
        cuda_graphs: "auto" replays each training step from a CUDA graph where nothing
            stands in the way (a CUDA device, bf16 or fp32, one process, no --compile or
            --checkpoint-activations), "on" insists (an error names what stands in the
            way), "off" launches every kernel from Python.
        tensorboard: also write the log and sample grids to ``out/tensorboard``.
        ema_kimg, ema_rampup: the shipped generator's moving average (NVlabs'): a half-life
            of ema_kimg thousand images, at most ema_rampup times the images shown (None:
            no ramp-up). The ramp-up is 0.002, not NVlabs' 0.05: measured over 18-kimg
            runs (bench/ema_study.py, three seeds, ProGAN and StyleGAN2), every longer one
            shipped a generator worse than the raw one, and 0.002 one as good. A run
            reaches the full half-life at 5,000 kimg. A growing network's new layers are
            untouched until their fade-in, so their average starts from their current
            weights.
        ema_decay: with ema_kimg None, the ProGAN paper's fixed decay a minibatch instead
            (0.999, after a warm-up).
        checkpoint_kimg, keep_checkpoints: checkpoint interval (and at phase ends), how
            many to keep.
        sample_kimg: sample grid interval (and at phase ends).
        swd_images: real and generated images for SWD at phase ends (0: off).
        fid_images: generated images (and at most as many real ones) for FID at phase ends
            (0: off); needs the Inception-v3 file (see ``fastpgan metrics``).
        inception: that file, or None to look for it.
        workers: DataLoader worker processes.
        progress: show progress bars.
    """

    data: str | None = None
    out: str = "runs/fastpgan"
    arch: str = "progan"
    resolution: int = 1024
    loss: str = "wgan-gp"
    gp_lambda: float | None = None
    drift: float | None = None
    r1_gamma: float | None = None
    reg_interval: int | None = None
    pl_weight: float = 0.0
    pl_interval: int = 4
    log_every: int = 10
    precision: str | None = None
    memory_format: str = "auto"
    batch: str | int = "paper"
    fade_kimg: float = 600.0
    stable_kimg: float = 600.0
    total_kimg: float | None = None
    seed: int = 0
    device: str | None = None
    latent_dim: int = 512
    fmap_base: int = 8192
    fmap_max: int = 512
    channels: int | None = None
    conv_clamp: float | None = None
    mapping_layers: int = 8
    init: str | None = None
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    g_lr: float | None = None
    d_lr: float | None = None
    mirror: bool = True
    aug: str = "none"
    aug_p: float | None = None
    aug_target: float | None = None
    aug_kimg: float | None = None
    cond: bool = False
    classes: int = 0
    reset_optimizer: bool = True
    checkpoint_activations: bool = False
    compile: bool = False
    cuda_graphs: str = "auto"
    tensorboard: bool = False
    ema_decay: float = 0.999
    ema_kimg: float | None = 10.0
    ema_rampup: float | None = 0.002
    checkpoint_kimg: float = 100.0
    keep_checkpoints: int = 3
    sample_kimg: float = 100.0
    swd_images: int = 1024
    fid_images: int = 0
    inception: str | None = None
    workers: int = 2
    progress: bool = True

    def validate(self) -> None:
        """Raises ValueError naming the first setting out of its domain."""
        check_resolution("--resolution", self.resolution)
        for name, value, allowed in (("arch", self.arch, ARCHS), ("loss", self.loss, LOSSES),
                                     ("precision", self.precision, (*PRECISIONS, None)),
                                     ("memory-format", self.memory_format, MEMORY_FORMATS),
                                     ("cuda-graphs", self.cuda_graphs, GRAPH_MODES),
                                     ("aug", self.aug, AUGMENTATIONS),
                                     ("channels", self.channels, (1, 3, None))):
            if value not in allowed:
                raise ValueError(f"--{name} must be one of {allowed}, got {value!r}")
        if isinstance(self.batch, str) and self.batch not in BATCH_NAMES:
            raise ValueError(f"--batch must be one of {BATCH_NAMES} or a number, got "
                             f"{self.batch!r}")
        if isinstance(self.batch, int) and self.batch < 1:
            raise ValueError(f"--batch must be positive, got {self.batch}")
        if self.fade_kimg < 0 or self.stable_kimg <= 0:
            raise ValueError("--fade-kimg must be >= 0 and --stable-kimg > 0")
        if self.total_kimg is not None and self.total_kimg <= 0:
            raise ValueError(f"--total-kimg must be positive, got {self.total_kimg:g}")
        for name, value, low in (("latent-dim", self.latent_dim, 1),
                                 ("checkpoint-kimg", self.checkpoint_kimg, 1e-9),
                                 ("sample-kimg", self.sample_kimg, 1e-9),
                                 ("keep-checkpoints", self.keep_checkpoints, 1),
                                 ("swd-images", self.swd_images, 0),
                                 ("fid-images", self.fid_images, 0),
                                 ("workers", self.workers, 0), ("lr", self.lr, 1e-30),
                                 ("g-lr", self.g_lr or 1, 1e-30),
                                 ("d-lr", self.d_lr or 1, 1e-30),
                                 ("log-every", self.log_every, 1)):
            if value < low:
                raise ValueError(f"--{name} must be {'positive' if low else '>= 0'}, got "
                                 f"{value:g}")
        if not 0 <= self.seed <= 2 ** 32 - 1:  # NumPy's global RNG takes no more
            raise ValueError(f"--seed must be from 0 to {2 ** 32 - 1}, got {self.seed}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay:g}")
        check_channels("--fmap-base", self.resolution, self.fmap_base, self.fmap_max)
        foreign = foreign_setting(self.arch, self.to_dict())
        if foreign is not None:
            raise ValueError(f"--{foreign[0].replace('_', '-')} is a setting of --arch "
                             f"{foreign[1]}, not of --arch {self.arch}: drop it")
        if self.conv_clamp is not None and not 0 < self.conv_clamp < math.inf:
            raise ValueError(f"--conv-clamp must be positive and finite (or none), got "
                             f"{self.conv_clamp:g}")
        if self.mapping_layers < 1:
            raise ValueError(f"--mapping-layers must be >= 1, got {self.mapping_layers}")
        if self.cond and not architecture(self.arch).conditional:
            conditional = [a.name for a in ARCHITECTURES.values() if a.conditional]
            raise ValueError(f"--cond trains {' or '.join(conditional)}; the {self.arch} "
                             "networks take no labels here")
        if self.checkpoint_activations and not architecture(self.arch).grows:
            raise ValueError("--checkpoint-activations recomputes growing networks' blocks; "
                             f"the {self.arch} networks do not have them: drop it")
        for name, value in (("ema-kimg", self.ema_kimg), ("ema-rampup", self.ema_rampup)):
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value:g}")
        if self.pl_weight < 0:
            raise ValueError(f"--pl-weight must be >= 0, got {self.pl_weight:g}")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"--betas must be two numbers in [0, 1), got {tuple(self.betas)}")
        self.build_objective()

    def build_objective(self) -> Objective:
        """The run's objective: the loss with this run's weights, with pl_weight
        StyleGAN2's path length penalty, and the augmentation --aug names."""
        loss = build_loss(self.loss, gp_lambda=self.gp_lambda, drift=self.drift,
                          r1_gamma=self.r1_gamma, reg_interval=self.reg_interval)
        penalty = (PathLengthPenalty(weight=self.pl_weight, reg_interval=self.pl_interval)
                   if self.pl_weight else None)
        return Objective(loss, penalty, build_augmentation(self.aug, self.aug_p,
                                                           self.aug_target, self.aug_kimg))

    def network_lr(self, net: str) -> float:
        """Adam's lr for ``net`` ("G" or "D") before lazy regularization's scaling."""
        own = self.g_lr if net == "G" else self.d_lr
        return self.lr if own is None else own

    def to_dict(self) -> dict:
        """The settings as JSON-ready values."""
        return dataclasses.asdict(self)


def default(name: str):
    """TrainConfig's default value of the setting ``name``."""
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
