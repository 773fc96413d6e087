"""What a run shows a person: image grids, a JSONL log, GPU figures and a plot."""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import torch

from fastpgan.data.loader import to_uint8


def image_grid(images: torch.Tensor, columns: int | None = None) -> torch.Tensor:
    """(N, C, H, W) images in [-1, 1] as one uint8 (H * rows, W * columns, C) grid."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.zeros((rows * h, columns * w, c), dtype=torch.uint8)
    for i, image in enumerate(to_uint8(images)):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image.permute(1, 2, 0)
    return grid


def grid_picture(images: torch.Tensor, columns: int | None = None, upscale_to: int = 0):
    """Images in [-1, 1] as one PIL image grid, nearest-upscaled to at least upscale_to px
    wide."""
    from PIL import Image

    grid = image_grid(images, columns).numpy()
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if upscale_to and picture.width < upscale_to:
        factor = math.ceil(upscale_to / picture.width)
        picture = picture.resize((picture.width * factor, picture.height * factor),
                                 Image.Resampling.NEAREST)
    return picture


def save_grid(images: torch.Tensor, path: str | os.PathLike, columns: int | None = None,
              upscale_to: int = 0) -> Path:
    """Saves images in [-1, 1] as a PNG grid (nearest-upscaled to at least upscale_to px)."""
    path = Path(path)
    grid_picture(images, columns, upscale_to).save(path)
    return path


def save_animation(frames: list[torch.Tensor], path: str | os.PathLike, *, columns: int = 1,
                   upscale_to: int = 0, frame_ms: int = 50) -> Path:
    """Saves a looping GIF; each frame is a batch of images in [-1, 1] laid out as a grid."""
    pictures = [grid_picture(frame, columns, upscale_to) for frame in frames]
    path = Path(path)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return path


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


def gpu_figures(device: torch.device) -> dict:
    """On CUDA: the peak memory allocated since the last
    ``torch.cuda.reset_peak_memory_stats`` (GiB, from torch) and the utilization (%, from
    NVML, when nvidia-ml-py is installed); else {}."""
    if device.type != "cuda":
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    figures = {"gpu_mem_gib": round(torch.cuda.max_memory_allocated(index) / 2**30, 2)}
    uuid = str(torch.cuda.get_device_properties(index).uuid)
    handle = _nvml_handle(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    if handle is not None:
        import pynvml

        figures["gpu_util"] = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    return figures


@functools.cache
def _nvml_handle(uuid: str):
    """NVML's handle of the GPU with this UUID, initialized once; None without
    nvidia-ml-py or NVML. By UUID, because NVML's indices ignore CUDA_VISIBLE_DEVICES
    (cuda:0 may be NVML's GPU 3)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        return None


def progress_figures(figures: dict) -> dict[str, str]:
    """``gpu_figures`` as short progress-bar fields: mem (peak GiB) and util."""
    shown = {}
    if "gpu_mem_gib" in figures:
        shown["mem"] = f"{figures['gpu_mem_gib']:.1f}G"
    if "gpu_util" in figures:
        shown["util"] = f"{figures['gpu_util']}%"
    return shown


def plot_training(log_path: str | os.PathLike, out: str | os.PathLike) -> Path | None:
    """A PNG of the losses, SWD and FID over kimg from the JSONL log; None if nothing to
    plot."""
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
    fig, axes = plt.subplots(1 + len(metrics), 1, figsize=(9, 3.5 + 2.5 * len(metrics)),
                             squeeze=False)
    loss_ax = axes[0][0]
    kimg = [r["kimg"] for r in steps]
    loss_ax.plot(kimg, [r["d_loss"] for r in steps], label="D loss", linewidth=0.8)
    loss_ax.plot(kimg, [r["g_loss"] for r in steps], label="G loss", linewidth=0.8)
    for r in records:
        if r.get("event") == "phase_start":
            loss_ax.axvline(r["kimg"], color="grey", linewidth=0.5, linestyle=":")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(loc="upper right")
    for (key, label), (axis,) in zip(metrics, axes[1:], strict=True):
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
