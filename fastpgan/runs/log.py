"""A run's record: the JSONL log, its TensorBoard copy, and the plot made from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from fastpgan.runs.pictures import image_grid


class JsonlLog:
    """Appends one JSON object per line; line-buffered, so a crash loses nothing logged."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (kept open for the run)

    def write(self, record: dict) -> None:
        """Appends a record."""
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


class TensorBoardLog:
    """The same records as TensorBoard scalars, "event/key" against images shown (step),
    and sample grids as images; ValueError if the tensorboard package is missing."""

    def __init__(self, folder: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError("--tensorboard needs the tensorboard package: pip install "
                             "tensorboard") from exc
        self.writer = SummaryWriter(str(folder))

    def write(self, record: dict) -> None:
        """Adds the record's numbers (other than kimg and time) as scalars."""
        step = round(record["kimg"] * 1000)
        group = record.get("event", "train")
        for key, value in record.items():
            if key not in ("kimg", "time") and isinstance(value, (int, float)) and not \
                    isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, step)

    def image(self, tag: str, images: torch.Tensor, shown: int, columns: int) -> None:
        """Adds images in [-1, 1] as one grid."""
        self.writer.add_image(tag, image_grid(images, columns), shown, dataformats="HWC")

    def close(self) -> None:
        """Flushes and closes the event file."""
        self.writer.close()


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL log (a torn last line, from a crash, is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_training(log_path: str | os.PathLike, out: str | os.PathLike) -> Path | None:
    """A PNG of the losses, ADA's p with r_t = E[sign(D(real))], SWD and FID over kimg
    from the JSONL log; None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    steps = [r for r in records if "d_loss" in r]
    if not steps:
        return None
    metrics = [(key, label) for key, label in (("swd_avg", "SWD x1e3 (mean over levels)"),
                                               ("fid", "FID"))
               if any(key in r for r in records)]
    adaptive = any("aug_p" in r for r in steps)
    panels = 1 + adaptive + len(metrics)
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.5 + 2.5 * (panels - 1)), squeeze=False)
    loss_ax = axes[0][0]
    kimg = [r["kimg"] for r in steps]
    loss_ax.plot(kimg, [r["d_loss"] for r in steps], label="D loss", linewidth=0.8)
    loss_ax.plot(kimg, [r["g_loss"] for r in steps], label="G loss", linewidth=0.8)
    for r in records:
        if r.get("event") == "phase_start":
            loss_ax.axvline(r["kimg"], color="grey", linewidth=0.5, linestyle=":")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(loc="upper right")
    if adaptive:
        augment_ax = axes[1][0]
        for key, label in (("aug_p", "augmentation p"), ("real_sign", "r_t = E[sign(D(real))]")):
            points = [r for r in steps if key in r]
            augment_ax.plot([r["kimg"] for r in points], [r[key] for r in points], label=label,
                            linewidth=0.8)
        augment_ax.set_ylabel("ADA")
        augment_ax.legend(loc="upper right")
    for (key, label), (axis,) in zip(metrics, axes[1 + adaptive:], strict=True):
        measured = [r for r in records if key in r]
        for res in sorted({r["resolution"] for r in measured}):  # comparable within one
            points = [r for r in measured if r["resolution"] == res]
            axis.plot([r["kimg"] for r in points], [r[key] for r in points], marker="o",
                      label=f"{res}x{res}")
        axis.set_ylabel(label)
        axis.set_yscale("log")
        axis.legend(loc="upper right", title="generated at")
    axes[-1][0].set_xlabel("kimg (thousands of real images shown)")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
