"""What every example system shares: its command line, the training loop around the
system's own step, checkpoints that resume exactly, sample grids and a loss plot.

A system (pix2pix, CycleGAN, ...) is an :class:`ExampleSystem`: its networks (plain
PyTorch, fused with :func:`fastpgan.nn.fuse` when asked), their optimizers, a training
step that returns its losses, and a picture of its samples. :func:`run` does the rest:

    python -m examples.<system> [--steps N] [--fused] [--device cuda] [--out DIR]

writes ``DIR/samples.png`` (and every ``--sample-every`` steps ``samples-<step>.png``),
``DIR/losses.png``, and every CHECKPOINT_EVERY steps ``DIR/checkpoint.safetensors`` (the
networks, the optimizers, the step, the losses and every RNG state, written atomically
through :func:`fastpgan.files.write_tree`: no pickle) with ``DIR/losses.jsonl``; run
again with the same ``--out`` it resumes from there, exactly.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastpgan.atomic import atomic_write, writable_folder
from fastpgan.files import RefusedFileError, read_tree, write_tree
from fastpgan.nn import fuse
from fastpgan.runs.pictures import save_grid

CHECKPOINT_KIND = "example checkpoint"


@dataclass(frozen=True)
class Settings:
    """An example's command line."""

    out: Path
    steps: int
    until: int
    batch: int
    device: str
    fused: bool
    seed: int
    sample_every: int


class ExampleSystem(Protocol):
    """One GAN system as the harness drives it."""

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def step(self, batch: tuple[Tensor, ...], index: int) -> dict[str, float]:
        """Training step ``index`` (from 0, over resumed runs too) on a batch; the losses
        by name (a system in phases may report other names in each)."""

    def batches(self, size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """Training batches drawn with ``generator``, forever."""

    def samples(self) -> Tensor:
        """Images in [-1, 1] to show, (N, C, H, W), in rows of the grid's columns (a
        system may also have ``columns`` and a ``render(path)`` writing another picture
        beside each grid)."""


def parse(description: str, argv: list[str] | None, *, steps: int, batch: int) -> Settings:
    """The example's settings from its command line (``steps`` and ``batch``: its
    defaults, sized to train in a few minutes on two CPU cores)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps,
                        help="training steps in all (phases are fractions of it)")
    parser.add_argument("--until", type=int, default=None,
                        help="stop (with a checkpoint) after this many of the --steps; run "
                             "again to go on")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--fused", action="store_true",
                        help="run the networks through fastpgan.nn.fuse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-every", type=int, default=0,
                        help="also write samples-<step>.png every this many steps")
    parser.add_argument("--out", default=None, help="the run's folder (resumed if it has a "
                        "checkpoint)")
    args = parser.parse_args(argv)
    if args.steps < 0 or args.batch < 1 or (args.until is not None and args.until < 0):
        parser.error("--steps and --until must be >= 0 and --batch >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA GPU")
    name = description.split(":")[0].strip().lower().replace(" ", "-")
    try:
        out = writable_folder(args.out or f"runs/{name}{'-fused' if args.fused else ''}",
                              "--out")
    except ValueError as exc:
        parser.error(str(exc))
    until = args.steps if args.until is None else min(args.until, args.steps)
    return Settings(out, args.steps, until, args.batch, args.device, args.fused, args.seed,
                    args.sample_every)


def main(system: Callable[[Settings], ExampleSystem], doc: str, argv: list[str] | None, *,
         steps: int, batch: int) -> list[dict[str, float]]:
    """An example's command line: parse it (``doc``'s first line describes the example),
    build the system, train it, report; returns every step's losses."""
    settings = parse(doc.splitlines()[0], argv, steps=steps, batch=batch)
    losses = run(system(settings), settings)
    report(settings, losses)
    return losses


def update(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """One optimizer step on ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def real_fake_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's binary cross-entropy: real logits toward 1, generated ones toward 0."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def fooling_loss(logits: Tensor) -> Tensor:
    """G's non-saturating loss: D's logits on generated images toward 1."""
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def prepare(networks: dict[str, nn.Module], settings: Settings) -> dict[str, nn.Module]:
    """The networks on the device, fused when asked (in place: the optimizers built
    afterwards see the same parameters)."""
    for net in networks.values():
        net.to(settings.device)
        if settings.fused:
            fuse(net)
    return networks


CHECKPOINT_EVERY = 100
"""Steps between checkpoints (and at the end)."""


def run(system: ExampleSystem, settings: Settings) -> list[dict[str, float]]:
    """Trains ``system`` to ``settings.until`` of its ``steps`` (resuming the checkpoint in
    ``out``); returns every step's losses, from the first step of the first run."""
    checkpoint = settings.out / "checkpoint.safetensors"
    generator = torch.Generator().manual_seed(settings.seed)
    step, losses = load(system, checkpoint, generator)
    batches = system.batches(settings.batch, generator)
    first, start = step, time.perf_counter()
    while step < settings.until:
        losses.append(system.step(tuple(t.to(settings.device) for t in next(batches)), step))
        step += 1
        if settings.sample_every and step % settings.sample_every == 0:
            write_samples(system, settings.out / f"samples-{step:06d}.png")
        if step % CHECKPOINT_EVERY == 0 or step == settings.until:
            save(system, checkpoint, step, losses, generator)
    if step > first:
        print(f"{(step - first) / (time.perf_counter() - start):.2f} steps/s "
              f"({step - first} steps on {settings.device}, checkpoints included)")
    write_samples(system, settings.out / "samples.png")
    plot_losses(losses, settings.out / "losses.png")
    return losses


def report(settings: Settings, losses: list[dict[str, float]]) -> None:
    """One line: the run's steps, its last losses and where its files are."""
    last = ", ".join(f"{k} {v:.3f}" for k, v in losses[-1].items()) if losses else "none"
    print(f"{len(losses)} steps{' (fused)' if settings.fused else ''}, last losses {last}; "
          f"samples, losses and checkpoint in {settings.out}")


def write_samples(system: ExampleSystem, path: Path) -> None:
    """The system's samples as a grid, its networks in evaluation mode meanwhile."""
    modes = {name: net.training for name, net in system.networks.items()}
    for net in system.networks.values():
        net.eval()
    with torch.no_grad():
        images = system.samples()
        render = getattr(system, "render", None)  # a picture beyond the grid (3-D shapes)
        if render is not None:
            render(path.with_name(path.stem.replace("samples", "render") + ".png"))
    for name, net in system.networks.items():
        net.train(modes[name])
    save_grid(images.float().cpu(), path, columns=getattr(system, "columns", None))


def save(system: ExampleSystem, path: Path, step: int, losses: list[dict[str, float]],
         generator: torch.Generator) -> None:
    """Everything a resumed run needs, atomically, as safetensors + JSON; and the losses
    so far as ``losses.jsonl`` beside it."""
    atomic_write(path.with_name("losses.jsonl"), lambda tmp: tmp.write_text(
        "".join(json.dumps({"step": i + 1, **entry}) + "\n" for i, entry in enumerate(losses)),
        encoding="utf-8"))
    write_tree(path, {
        "system": type(system).__name__, "step": step, "losses": losses,
        "networks": {n: net.state_dict() for n, net in system.networks.items()},
        "optimizers": {n: opt.state_dict() for n, opt in system.optimizers.items()},
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }, kind=CHECKPOINT_KIND, version=1)


def load(system: ExampleSystem, path: Path,
         generator: torch.Generator) -> tuple[int, list[dict[str, float]]]:
    """(step, losses) of the checkpoint at ``path``, its state loaded into ``system`` and
    the RNGs; (0, []) when there is none."""
    if not path.exists():
        return 0, []
    try:
        _, value = read_tree(path, CHECKPOINT_KIND)
    except RefusedFileError as exc:
        raise SystemExit(f"error: {exc}; remove it, or choose another --out") from None
    name = type(system).__name__
    if value.get("system") != name:
        raise SystemExit(f"error: {path} is another system's checkpoint "
                         f"({value.get('system')}, not {name}); choose another --out")
    try:
        for net_name, net in system.networks.items():
            net.load_state_dict(value["networks"][net_name])
    except (KeyError, RuntimeError) as exc:
        raise SystemExit(f"error: {path} does not fit this {name} ({str(exc)[:200]}); "
                         "choose another --out") from None
    for name, opt in system.optimizers.items():
        opt.load_state_dict(value["optimizers"][name])
    torch.set_rng_state(value["rng"]["torch"])
    generator.set_state(value["rng"]["data"])
    if value["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(value["rng"]["cuda"])
    return value["step"], list(value["losses"])


def plot_losses(losses: list[dict[str, float]], path: Path) -> None:
    """Each loss over the steps it was reported at, one line each, in a PNG."""
    if not losses:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name in dict.fromkeys(name for entry in losses for name in entry):  # phases differ
        steps = [i for i, entry in enumerate(losses) if name in entry]
        ax.plot(steps, [losses[i][name] for i in steps], label=name, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
