"""What the explorer page shows, without the web: a loaded generator and the pictures each
control asks for, made by the functions the CLI commands call, so that a picture equals
the file the command printed beside it writes, byte for byte."""

from __future__ import annotations

import copy
import io
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from fastpgan.generate import commands, parse_seeds
from fastpgan.generate.latents import SEED_MAX
from fastpgan.generate.project import (
    PROJECTION_PICTURES,
    Projection,
    load_target,
    project,
    projection_space,
)
from fastpgan.models import GrowthStage
from fastpgan.models.sampling import (
    check_truncation,
    class_labels,
    is_style_based,
    num_classes,
    style_count,
)
from fastpgan.runs import load_trained
from fastpgan.runs.pictures import save_grid

MAX_GRID_SEEDS = 256
"""The most seeds one grid shows (generate's grid.png shows as many)."""
MAX_WALK_STEPS = 240
"""The most frames between the two ends of an interpolation."""
MAX_PROJECTION_STEPS = 5000
MAX_UPLOAD_PIXELS = 50_000_000
"""The largest photo projected (a 50-megapixel camera's): Pillow decodes the whole of it."""
CACHED = 8
"""Rendered grids and walks kept, so a click or a slider shows them without rendering."""


@dataclass(frozen=True)
class Look:
    """What every picture's controls share: truncation psi and its cutoff (StyleGAN), the
    noise (StyleGAN: the saved maps, fresh, or none) and the class of a conditional G."""

    truncation: float = 1.0
    cutoff: int | None = None
    noise_mode: str = "const"
    class_index: int | None = None

    def options(self, style_based: bool) -> list[str]:
        """The CLI options that set this look."""
        options = []
        if self.truncation != 1.0:
            options += ["--truncation", repr(self.truncation)]
        if self.cutoff is not None:
            options += ["--truncation-cutoff", str(self.cutoff)]
        if style_based and self.noise_mode != "const":
            options += ["--noise-mode", self.noise_mode]
        if self.class_index is not None:
            options += ["--class", str(self.class_index)]
        return options


@dataclass
class Picture:
    """An encoded picture, its file name, and the command line that writes it."""

    data: bytes
    media_type: str
    filename: str
    command: str


@dataclass
class ProjectionJob:
    """A projection running in the background: its progress as the page polls it."""

    steps: int
    space: str
    options: list[str]  # the project command's options that make it
    look: Look
    step: int = 0
    losses: list[float] = field(default_factory=list)
    frame: bytes | None = None  # the best start's latest image, a PNG
    result: Projection | None = None
    error: str | None = None
    cancelled: bool = False
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        """True once it finished, failed or was cancelled."""
        return self.result is not None or self.error is not None


class Superseded(Exception):  # noqa: N818 (not an error: a newer request took its place)
    """A rendering given up because a newer request of its kind arrived."""


class ProjectionCancelledError(Exception):
    """Raised inside a projection whose job was cancelled (a newer upload replaced it)."""


def _png(images: Tensor, columns: int | None = None, upscale_to: int = 0) -> bytes:
    buffer = io.BytesIO()
    save_grid(images, buffer, columns=columns, upscale_to=upscale_to)
    return buffer.getvalue()


def seed_range(seeds: list[int]) -> str:
    """A seed list in the CLI's syntax: "0-15" or "3,7,11"."""
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 1:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


class Explorer:
    """A generator loaded for exploring: renders under one lock, on the device given, at
    the stage the model was training (a growing checkpoint's resolution and fade-in)."""

    def __init__(self, model: str | Path, *, device: str = "cpu", raw: bool = False,
                 resolution: int | None = None, seed_rng: str = "auto") -> None:
        self.model, self.raw, self.device = str(model), raw, device
        self.trained = load_trained(model, raw)
        self.G = self.trained.G.to(device).eval()
        self.stage: GrowthStage = self.trained.render_stage(resolution, "explore")
        self.resolution_option = resolution
        self.seed_rng = seed_rng if seed_rng != "auto" else (
            "numpy" if self.trained.kind == "nvlabs-stylegan2" else "torch")
        self.style_based = is_style_based(self.G)
        self.lock = threading.Lock()  # one rendering at a time: the model is shared
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()
        self.projections: dict[str, ProjectionJob] = {}
        self._projector = None  # G's copy for projections, so the page renders meanwhile

    def info(self) -> dict:
        """What the page shows about the model and offers as controls."""
        G = self.G
        return {
            "model": self.model, "kind": self.trained.kind, "raw": self.raw,
            "architecture": type(G).__name__, "style_based": self.style_based,
            "stage": self.stage.describe(), "resolution": self.stage.resolution,
            "full_resolution": G.full_stage.resolution, "grown": self.trained.grown,
            "shown_kimg": None if self.trained.shown is None else self.trained.shown / 1000,
            "style_inputs": style_count(G, self.stage) if self.style_based else 0,
            "classes": num_classes(G), "notes": self.trained.notes,
            "device": self.device, "seed_max": SEED_MAX,
            "spaces": ["w", "w+"] if self.style_based else ["z"],
        }

    def _command(self, name: str, look: Look, *options: str) -> str:
        base = ["fastpgan", name, self.model, *options, *look.options(self.style_based)]
        if self.raw:
            base.append("--raw")
        if self.resolution_option is not None:
            base += ["--resolution", str(self.resolution_option)]
        return shlex.join(base)

    def _rendering(self, look: Look) -> dict:
        check_truncation(self.G, look.truncation, look.cutoff)
        class_labels(self.G, look.class_index, 1, "cpu")  # refuses a bad class in words
        if self.style_based:
            self.G.noise_mode = look.noise_mode
        return dict(truncation=look.truncation, cutoff=look.cutoff, device=self.device,
                    stage=self.stage, seed_rng=self.seed_rng, classes=look.class_index)

    def _cached(self, key: tuple, make: Callable[[], Tensor]) -> Tensor:
        if key not in self._cache:
            self._cache[key] = make()
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def _grid_images(self, seeds: list[int], look: Look, wanted: Callable[[], bool]) -> Tensor:
        if len(seeds) > MAX_GRID_SEEDS:
            raise ValueError(f"a grid shows at most {MAX_GRID_SEEDS} seeds, got {len(seeds)}: "
                             f"ask for fewer")
        rendering = self._rendering(look)

        def make() -> Tensor:
            chunks = []
            for _, images in commands.image_chunks(self.G, seeds, **rendering):
                if not wanted():  # a newer grid was asked for: give up between batches
                    raise Superseded
                chunks.append(images)
            return torch.cat(chunks)

        return self._cached(("grid", tuple(seeds), look), make)

    def grid(self, seeds: str, look: Look, wanted: Callable[[], bool] = lambda: True
             ) -> Picture:
        """The seeds' grid, as ``fastpgan generate`` writes grid.png; rendering stops
        between batches (:class:`Superseded`) once ``wanted()`` is false."""
        parsed = parse_seeds(seeds)
        images = self._grid_images(parsed, look, wanted)
        return Picture(_png(images, upscale_to=commands.GRID_WIDTH), "image/png", "grid.png",
                       self._command("generate", look, "--seeds", seed_range(parsed)))

    def sample(self, seeds: str, index: int, look: Look,
               wanted: Callable[[], bool] = lambda: True) -> Picture:
        """The grid's image ``index`` alone, as ``fastpgan generate`` writes seedN.png for
        the same seeds (rendered in the same batches, so equal to the last bit)."""
        parsed = parse_seeds(seeds)
        if not 0 <= index < len(parsed):
            raise ValueError(f"the grid has {len(parsed)} images, not an image {index}")
        image = self._grid_images(parsed, look, wanted)[index:index + 1]
        name = f"seed{parsed[index]:04d}.png"
        return Picture(_png(image, columns=1), "image/png", name,
                       self._command("generate", look, "--seeds", seed_range(parsed)))

    def _walk(self, ends: tuple[str, str], steps: int, space: str, mode: str,
              look: Look) -> tuple[Tensor, str | None]:
        """The looping walk a -> b -> a (``fastpgan interpolate --seeds a,b``'s frames)
        and its command (None when an end is a projection: no command takes one)."""
        if not 1 <= steps <= MAX_WALK_STEPS:
            raise ValueError(f"steps must be 1..{MAX_WALK_STEPS}, got {steps}")
        rendering = self._rendering(look)
        seed_rng = rendering.pop("seed_rng")
        projected = [self._projected(end) for end in ends if end.startswith("projection")]
        if projected:
            space = "z" if projected[0].space == "z" else "w"

        def make() -> Tensor:
            seeds = [0 if end.startswith("projection") else self._seed(end) for end in ends]
            points = commands.walk_points(self.G, seeds, space, seed_rng=seed_rng,
                                          **rendering).clone()
            for i, end in enumerate(ends):
                if end.startswith("projection"):  # a w is every input's style
                    points[i] = self._projected(end).latent
            options = dict(rendering)
            if space == "w":
                options.update(truncation=1.0, cutoff=None)  # the styles carry it
            return commands.walk_frames(self.G, points, steps=steps, mode=mode, **options)

        frames = self._cached(("walk", ends, steps, space, mode, look), make)
        command = None if projected else self._command(
            "interpolate", look, "--seeds", ",".join(ends), "--steps", str(steps),
            "--space", space, "--mode", mode, "--out", "walk.gif")
        return frames, command

    def walk_frame(self, ends: tuple[str, str], steps: int, space: str, mode: str,
                   look: Look, frame: int) -> Picture:
        """Frame ``frame`` (0: a, ``steps``: b) of the walk from a to b."""
        if not 0 <= frame <= steps:
            raise ValueError(f"the frame must be 0..{steps}, got {frame}")
        frames, command = self._walk(ends, steps, space, mode, look)
        return Picture(_png(frames[frame:frame + 1]), "image/png", f"walk-{frame:03d}.png",
                       command or "(an end is a projection: no command renders it)")

    def walk_gif(self, ends: tuple[str, str], steps: int, space: str, mode: str,
                 look: Look) -> Picture:
        """The looping walk as the GIF ``fastpgan interpolate`` writes."""
        frames, command = self._walk(ends, steps, space, mode, look)
        buffer = io.BytesIO()
        commands.save_walk(frames, buffer)
        return Picture(buffer.getvalue(), "image/gif", "walk.gif",
                       command or "(an end is a projection: no command renders it)")

    def style_mix(self, row: int, col: int, layers: str, look: Look) -> Picture:
        """Row seed's image with ``layers``' styles from the column seed, in the grid
        ``fastpgan style-mix --rows row --cols col`` writes."""
        rendering = self._rendering(look)
        buffer = io.BytesIO()
        commands.style_mix(self.G, [self._seed(str(row))], [self._seed(str(col))], buffer,
                           layers=layers, **rendering)
        return Picture(buffer.getvalue(), "image/png", "style-mix.png", self._command(
            "style-mix", look, "--rows", str(row), "--cols", str(col), "--layers", layers,
            "--out", "style-mix.png"))

    @staticmethod
    def _seed(text: str) -> int:
        seeds = parse_seeds(text)
        if len(seeds) != 1:
            raise ValueError(f"give one seed, not {text!r}")
        return seeds[0]

    def _projected(self, name: str) -> Projection:
        job = self.projections.get(name.removeprefix("projection:"))
        if job is None or job.result is None:
            raise ValueError(f"there is no finished projection {name!r}: upload a photo and "
                             f"let its projection finish first")
        return job.result

    def start_projection(self, photo: bytes, *, steps: int = 200, space: str | None = None,
                         loss: str = "l2", seed: int = 0, restarts: int = 8,
                         look: Look = Look()) -> str:
        """Starts projecting the photo (an image file's bytes) in a background thread;
        returns the job's id. A projection still running is cancelled: one at a time."""
        if not 1 <= steps <= MAX_PROJECTION_STEPS:
            raise ValueError(f"steps must be 1..{MAX_PROJECTION_STEPS}, got {steps}")
        space = projection_space(self.G, space)
        target = self._target(photo)
        look = Look(noise_mode=look.noise_mode, class_index=look.class_index)  # no truncation
        rendering = self._rendering(look)
        for job in self.projections.values():
            job.cancelled = True
        if self._projector is None:
            self._projector = copy.deepcopy(self.G)
        self._projector.noise_mode = getattr(self.G, "noise_mode", None)
        options = ["--steps", str(steps), "--space", space, "--loss", loss, "--seed", str(seed),
                   "--restarts", str(restarts)]
        name = str(len(self.projections) + 1)
        job = self.projections[name] = ProjectionJob(steps, space, options, look)

        def on_step(step: int, value: float, frame: Tensor | None) -> None:
            if job.cancelled:
                raise ProjectionCancelledError
            job.losses.append(value)
            job.step = step + 1
            if frame is not None:
                job.frame = _png(frame)

        def run() -> None:
            try:
                job.result = project(self._projector, target, steps=steps, loss=loss,
                                     space=space, seed=seed, restarts=restarts,
                                     device=self.device, progress=False,
                                     stage=self.stage, classes=rendering["classes"],
                                     on_step=on_step)
                job.frame = _png(job.result.image)
            except ProjectionCancelledError:
                job.error = "cancelled: a newer projection replaced it"
            except (ValueError, RuntimeError) as exc:
                job.error = str(exc)

        job.thread = threading.Thread(target=run, name=f"projection {name}", daemon=True)
        job.thread.start()
        return name

    def _target(self, photo: bytes) -> Tensor:
        try:
            with Image.open(io.BytesIO(photo)) as image:
                width, height = image.size
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"the upload is not an image Pillow reads ({exc}): upload a "
                             f"PNG, JPEG or other picture") from None
        if width * height > MAX_UPLOAD_PIXELS:
            raise ValueError(f"the image is {width}x{height} pixels; the explorer projects "
                             f"up to {MAX_UPLOAD_PIXELS // 1_000_000} megapixels: resize "
                             f"it first")
        return load_target(photo, self.stage.resolution, self.G.config["img_channels"])

    def projection_command(self, name: str, filename: str) -> str:
        """The command that makes the same projection from the photo saved as
        ``filename``."""
        job = self.projections[name]
        return self._command("project", job.look, "--target", filename, *job.options,
                             "--out", "projection")

    def projection_picture(self, name: str, which: str) -> Picture:
        """One of the pictures ``fastpgan project`` writes (target.png, projected.png,
        projection.gif), as it writes it."""
        result = self._projected(name)
        if which not in PROJECTION_PICTURES:
            raise ValueError(f"a projection's pictures are {', '.join(PROJECTION_PICTURES)}, "
                             f"not {which}")
        buffer = io.BytesIO()
        PROJECTION_PICTURES[which](result, buffer)
        return Picture(buffer.getvalue(), "image/" + which[-3:], which,
                       self.projection_command(name, "photo.png"))
