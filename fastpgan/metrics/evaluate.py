"""``fastpgan metrics``: SWD, FID and KID of a generator against a data set, and its
Inception Score.

Real images come from a fastpgan image cache at the generator's resolution; their
Inception features are cached per data set, resolution, image count and Inception file
(under ``~/.cache/fastpgan/inception-features``), so only the generated side is computed
again. Generated images are quantized to uint8 as a saved PNG would be, so a generator is
measured on what a person would see.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from fastpgan.atomic import atomic_write
from fastpgan.data.cache import MANIFEST, ImageCache, level_name
from fastpgan.data.demo import cache_root
from fastpgan.data.loader import subset_indices, to_model_range, to_uint8
from fastpgan.files import read_tensors
from fastpgan.metrics.fid import (
    frechet_inception_distance,
    inception_score,
    kernel_inception_distance,
)
from fastpgan.metrics.inception import HOW_TO_GET_A_CLASSIFIER, InceptionFeatures
from fastpgan.metrics.swd import PatchDescriptors, descriptors_of, swd_between
from fastpgan.models import GrowthStage
from fastpgan.models.sampling import class_labels, is_style_based, num_classes, render
from fastpgan.ops import frozen_weights
from fastpgan.runs import Checkpoint, checkpoint_generator, list_checkpoints

METRICS = ("swd", "fid", "kid", "is")


def parse_metrics(text: str) -> list[str]:
    """"swd,fid,kid" -> ["swd", "fid", "kid"]; ValueError naming an unknown metric."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"--metrics takes a comma-separated subset of {', '.join(METRICS)}, "
                         f"got {text!r}")
    return names


def real_indices(cache: ImageCache, num: int, seed: int = 0,
                 label: int | None = None) -> np.ndarray:
    """The indices of min(num, available) real images chosen by ``seed``: of all the
    cache's images, or of class ``label``'s (ValueError if it has none)."""
    if label is None:
        return subset_indices(cache.count, num, seed)
    members = np.flatnonzero(np.asarray(cache.labels.classes) == label)
    if not len(members):
        raise ValueError(f"the data has no image of class {label}")
    return members[subset_indices(len(members), num, seed)]


def real_batches(cache: ImageCache, resolution: int, num: int, batch: int,
                 seed: int = 0, label: int | None = None) -> Iterator[Tensor]:
    """uint8 batches of the real images :func:`real_indices` picks."""
    pick = real_indices(cache, num, seed, label)
    level = cache.level(resolution)
    for start in range(0, len(pick), batch):
        yield torch.from_numpy(np.ascontiguousarray(level[pick[start:start + batch]]))


def generated_batches(G: nn.Module, num: int, batch: int, *, device: str | torch.device,
                      truncation: float = 1.0, seed: int = 0, resolution: int | None = None,
                      alpha: float = 1.0, classes: Tensor | None = None) -> Iterator[Tensor]:
    """uint8 batches of ``num`` images from G's latents drawn with ``seed`` (StyleGAN's
    random noise too: it is drawn from the global RNG, seeded here and restored after), at
    ``resolution`` (default G's full one) with the newest block weighted by ``alpha``; a
    conditional G's of ``classes`` ((num,) class indices)."""
    stage = GrowthStage(resolution or G.resolution, alpha)
    latents = torch.randn(num, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for start in range(0, num, batch):
            z = latents[start:start + batch].to(device)
            labels = None if classes is None else classes[start:start + batch].to(device)
            with torch.no_grad():
                yield to_uint8(render(G, z, stage, truncation, labels))


def _progress(batches: Iterator[Tensor], total: int, desc: str, enabled: bool = True
              ) -> Iterator[Tensor]:
    with tqdm(total=total, desc=desc, unit="img", leave=False, disable=not enabled) as bar:
        for images in batches:
            yield images
            bar.update(images.shape[0])


def real_features(cache: ImageCache, resolution: int, num: int, extractor: InceptionFeatures,
                  *, batch: int = 64, seed: int = 0, folder: Path | None = None,
                  progress: bool = True, label: int | None = None) -> Tensor:
    """Inception features of the real images (of class ``label`` only, if given), read
    from (or written to) the feature cache.

    The cache key covers the data set (its path, manifest and the level file's
    modification time, so a rebuilt cache is read again), resolution, image count, subset
    seed, class and the Inception file (path, size, modification time).
    """
    file_stat = extractor.file.stat()
    key = json.dumps({
        "data": str(cache.path.resolve()),
        "manifest": (cache.path / MANIFEST).read_text(encoding="utf-8"),
        "level": (cache.path / level_name(resolution)).stat().st_mtime_ns,
        "resolution": resolution, "num": num, "seed": seed, "label": label,
        "inception": [str(extractor.file.resolve()), file_stat.st_size, file_stat.st_mtime_ns],
    }, sort_keys=True)
    folder = folder or cache_root() / "inception-features"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    path = folder / f"{cache.path.name}-r{resolution}-{digest}.safetensors"
    if path.exists():
        try:
            return read_tensors(path)["features"]
        except (ValueError, KeyError):
            path.unlink(missing_ok=True)  # unreadable: computed again below
    count = len(real_indices(cache, num, seed, label))
    features = torch.cat([extractor(images) for images in _progress(
        real_batches(cache, resolution, num, batch, seed, label), count, "real features",
        progress)])
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({"features": features.contiguous()}, str(tmp)))
    return features


def evaluate(G: nn.Module, data: str | os.PathLike, metrics: list[str], *, num: int = 10_000,
             num_real: int | None = None,
             inception: str | os.PathLike | InceptionFeatures | None = None,
             device: str | torch.device = "cpu",
             batch: int = 32, truncation: float = 1.0, seed: int = 0,
             feature_folder: Path | None = None, resolution: int | None = None,
             alpha: float = 1.0, progress: bool = True, classes: int | None = None) -> dict:
    """The metrics of G against the cache at ``data``, at ``resolution`` (default G's full
    one; a growing generator's current one, with its ``alpha``, for a checkpoint).

    A conditional G generates labels drawn as the data's (its label distribution;
    uniform, with a warning, for data without labels), or with ``classes`` = k class k
    only, compared with the data's images of class k.

    Returns {"fid": float, "kid": float, "kid_std": float, "is": float, "is_std": float,
    "swd": {level: float}, "num_real": int, "num_fake": int, "num_swd": int,
    "resolution": int, "inception": path} for the metrics asked for; the Inception Score
    (over the generated images alone, in 10 splits) needs an Inception file with its
    classifier (:class:`InceptionFeatures`). FID and KID use ``num`` generated images and
    min(num_real, data size) real ones (``num_real`` defaults to ``num``); SWD compares
    equal sets, the smaller of the two counts (``num_swd``). ``inception`` is the file, or
    an already loaded :class:`InceptionFeatures` (as a trainer keeps one).
    """
    num_real = num if num_real is None else num_real
    if min(num, num_real, batch) < 1:
        raise ValueError(f"--num, --num-real and --batch must be at least 1, got {num}, "
                         f"{num_real} and {batch}")
    cache = ImageCache.open(data)
    resolution = resolution or G.resolution
    if cache.resolution < resolution:
        raise ValueError(f"the data at {data} goes up to {cache.resolution}px, but the "
                         f"generator makes {resolution}px images")
    if cache.channels != G.config["img_channels"]:
        raise ValueError(f"the data has {cache.channels} channels, the generator makes "
                         f"{G.config['img_channels']}")
    fake_classes, label, notes = _classes(G, cache, classes, max(num, cache.count), seed)
    real_count = len(real_indices(cache, num_real, seed, label))
    features = "fid" in metrics or "kid" in metrics
    classify = "is" in metrics
    if classify and num < IS_SPLITS:
        raise ValueError(f"the Inception Score averages over {IS_SPLITS} splits of the "
                         f"generated images: it needs at least {IS_SPLITS}, got --num {num}")
    if features and min(real_count, num) < 2:
        raise ValueError(f"FID and KID compare covariances: they need at least 2 real and 2 "
                         f"generated images, and the data at {data} holds {cache.count}")
    G = G.to(device).eval()
    swd_count = min(real_count, num)
    count = num if features or classify else swd_count  # SWD alone: only what it compares
    result: dict = {"resolution": resolution, "num_real": real_count, "num_fake": count,
                    "warnings": notes + _too_few(metrics, real_count, count, swd_count,
                                                 cache.count)}
    if "swd" in metrics:
        result["num_swd"] = swd_count
    if classes is not None:
        result["class"] = classes

    if features or classify:
        extractor = (inception if isinstance(inception, InceptionFeatures)
                     else InceptionFeatures(inception, device))
        result["inception"] = str(extractor.file)
    if classify and not extractor.has_classifier:
        raise ValueError(f"{extractor.file} gives pool features only: {HOW_TO_GET_A_CLASSIFIER}")
    if features:
        real = real_features(cache, resolution, num_real, extractor, batch=batch, seed=seed,
                             folder=feature_folder, progress=progress, label=label)
    # one pass over the generated images feeds both: Inception takes all of them, SWD the
    # first swd_count (it compares equal sets)
    fake_features, fake_classes_p, fake_patches = [], [], PatchDescriptors(seed=seed + 1)
    taken = 0
    with frozen_weights():
        for images in _progress(generated_batches(G, count, batch, device=device,
                                                  truncation=truncation, seed=seed + 1,
                                                  resolution=resolution, alpha=alpha,
                                                  classes=None if fake_classes is None
                                                  else fake_classes[:count]),
                                count, "generated images", progress):
            if features:
                fake_features.append(extractor(images))
            if classify:
                fake_classes_p.append(extractor.probabilities(images))
            if "swd" in metrics and taken < swd_count:
                fake_patches.add(to_model_range(images[:swd_count - taken], device,
                                                torch.float64))
            taken += len(images)
    if "fid" in metrics:
        result["fid"] = frechet_inception_distance(real, torch.cat(fake_features))
    if "kid" in metrics:
        result["kid"], result["kid_std"] = kernel_inception_distance(real,
                                                                     torch.cat(fake_features))
    if classify:
        result["is"], result["is_std"] = inception_score(torch.cat(fake_classes_p), IS_SPLITS)
    if "swd" in metrics:
        real_patches = descriptors_of(
            (to_model_range(images, device, torch.float64)
             for images in real_batches(cache, resolution, swd_count, batch, seed, label)),
            seed=seed)
        result["swd"] = swd_between(real_patches, fake_patches, seed=seed)
    return result


def _classes(G: nn.Module, cache: ImageCache, classes: int | None, count: int,
             seed: int) -> tuple[Tensor | None, int | None, list[str]]:
    """(the generated images' class indices, or None for an unconditional G; the class
    the reals are restricted to, or None; notes) for ``count`` images (see
    :func:`evaluate`)."""
    known = num_classes(G)
    if classes is not None:  # refuses a class for an unconditional G, or one out of range
        class_labels(G, classes, 1, "cpu")
    if not known:
        return None, None, []
    if classes is not None:
        if cache.labels is None:
            return torch.full((count,), classes), None, [
                f"the data has no labels: class {classes}'s images are compared with all of it"]
        return torch.full((count,), classes), classes, []
    draw = torch.Generator().manual_seed(seed + 2)
    if cache.labels is None:
        return torch.randint(known, (count,), generator=draw), None, [
            f"the data has no labels: the generator's {known} classes are drawn uniformly"]
    pool = torch.tensor(cache.labels.classes)
    return pool[torch.randint(len(pool), (count,), generator=draw)], None, []


FEW_FOR_FID = 2048
"""Below this many images (Inception's 2,048 features) FID's covariance is rank-deficient
and FID and KID are biased and noisy; published FIDs use 50,000 generated images."""
IS_SPLITS = 10
"""The Inception Score's splits, as published (Salimans et al. 2016) and NVlabs measure it."""
FEW_FOR_IS = 5_000
"""Below this many images (500 a split) the Inception Score is biased low; published scores
use 50,000."""
FEW_FOR_SWD = 16
"""Below this many images SWD's patch statistics rest on too few patches to compare."""


def _too_few(metrics: list[str], num_real: int, num_fake: int, num_swd: int,
             data_count: int) -> list[str]:
    """Warnings for metrics resting on fewer images than they need to mean much."""
    warnings = []
    fewest = min(num_real, num_fake)
    if ("fid" in metrics or "kid" in metrics) and fewest < FEW_FOR_FID:
        warnings.append(f"FID and KID on {fewest} images are biased and noisy (below "
                        f"{FEW_FOR_FID}, Inception's feature count; published FIDs use "
                        "50,000): compare them only with figures on as many")
    if "is" in metrics and num_fake < FEW_FOR_IS:
        warnings.append(f"the Inception Score on {num_fake} images is biased low (below "
                        f"{FEW_FOR_IS}, {FEW_FOR_IS // IS_SPLITS} a split; published scores "
                        "use 50,000): compare it only with scores on as many")
    if "swd" in metrics and num_swd < FEW_FOR_SWD:
        warnings.append(f"SWD on {num_swd} images rests on few patches (the data set holds "
                        f"{data_count})")
    return warnings


def format_result(result: dict) -> str:
    """A few readable lines for the terminal: the counts actually used, each metric, and
    a warning per metric that rests on too few images."""
    lines = [f"{result['num_fake']} generated vs {result['num_real']} real images at "
             f"{result['resolution']}px"
             + (f" (SWD on {result['num_swd']} of each)"
                if result.get("num_swd", result["num_fake"]) != result["num_fake"] else "")]
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    if "fid" in result:
        lines.append(f"FID  {result['fid']:.3f}")
    if "kid" in result:
        lines.append(f"KID  {result['kid']:.5f} +- {result['kid_std']:.5f}")
    if "is" in result:
        lines.append(f"IS   {result['is']:.3f} +- {result['is_std']:.3f} ({IS_SPLITS} splits)")
    if "swd" in result:
        levels = ", ".join(f"{k}: {v:.2f}" for k, v in result["swd"].items() if k != "avg")
        lines.append(f"SWD  {result['swd']['avg']:.2f} x1e3 (per level {levels})")
    return "\n".join(lines)


def evaluate_checkpoints(run: str | os.PathLike, data: str | os.PathLike, metrics: list[str],
                         *, noise_mode: str = "random", raw: bool = False,
                         **options) -> list[dict]:
    """:func:`evaluate` for every checkpoint in ``run``/checkpoints, oldest first, each at
    the resolution and alpha it was training (its training generator G with ``raw``, else
    the moving average); each result also holds "kimg" and "alpha". ``options`` are
    :func:`evaluate`'s."""
    files = list_checkpoints(Path(run) / "checkpoints")
    if not files:
        raise ValueError(f"{run} has no checkpoints/ to evaluate")
    results = []
    for file in tqdm(files, desc="checkpoints", unit="ckpt"):
        trained = checkpoint_generator(Checkpoint.read(file), file, raw)
        if is_style_based(trained.G):
            trained.G.noise_mode = noise_mode
        result = evaluate(trained.G, data, metrics, resolution=trained.stage.resolution,
                          alpha=trained.stage.alpha, **options)
        results.append({"checkpoint": file.name, "kimg": trained.shown / 1000,
                        "alpha": trained.stage.alpha, **result})
    return results


def plot_checkpoint_metrics(results: list[dict], out: str | os.PathLike) -> Path:
    """One panel per metric over kimg, points colored by resolution; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, label) for name, label in (("fid", "FID"), ("kid", "KID"),
                                                ("is", "Inception Score"),
                                                ("swd", "SWD x1e3 (avg)"))
              if name in results[0]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4),
                                squeeze=False)
    resolutions = sorted({r["resolution"] for r in results})
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(resolutions)))
    for axis, (name, label) in zip(axes[0], panels, strict=True):
        values = [r[name]["avg"] if name == "swd" else r[name] for r in results]
        axis.plot([r["kimg"] for r in results], values, color="0.7", zorder=1)
        for res, color in zip(resolutions, colors, strict=True):
            points = [(r["kimg"], v) for r, v in zip(results, values, strict=True)
                      if r["resolution"] == res]
            axis.scatter(*zip(*points, strict=True), color=color, label=f"{res}px", zorder=2)
        axis.set_xlabel("kimg")
        axis.set_title(label)
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    out = Path(out)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out

