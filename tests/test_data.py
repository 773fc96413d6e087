"""fastpgan-dataset and the cache: folders and zips, skipped images, pyramid levels, loader."""

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fastpgan.cli.dataset import main as dataset_main
from fastpgan.data import ImageCache, RealImages, build_cache, prepare_dataset


def _image_folder(root, count=5, size=(40, 24)):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "tiny.webp")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_to_cache_skips_and_lists_bad_images(tmp_path):
    src = _image_folder(tmp_path / "src")
    cache = ImageCache.open(prepare_dataset(src, tmp_path / "cache", 16, progress=False))
    assert cache.count == 5 and cache.channels == 3 and cache.resolution == 16
    reasons = {item["file"]: item["reason"] for item in cache.skipped}
    assert set(reasons) == {"broken.png", "tiny.webp"}
    assert "too small: 8x8" in reasons["tiny.webp"]
    assert [cache.level(r).shape for r in (4, 8, 16)] == [(5, 3, r, r) for r in (4, 8, 16)]


def test_center_crop_and_levels_are_box_averages(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, 8:24] = np.arange(16, dtype=np.uint8)[:, None, None] * 16  # the center square
    Image.fromarray(pixels).save(src / "wide.png")
    cache = ImageCache.open(prepare_dataset(src, tmp_path / "cache", 16, progress=False))
    top = cache.level(16)[0].astype(np.float64)
    assert np.array_equal(top[0, :, 0], np.arange(16) * 16)  # cropped, not squeezed
    expected = top.reshape(3, 8, 2, 8, 2).mean(axis=(2, 4))
    assert np.abs(cache.level(8)[0] - expected).max() <= 0.5


def test_zip_source_and_the_command_line(tmp_path, capsys):
    src = _image_folder(tmp_path / "src", count=3)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in src.iterdir():
            z.write(file, file.name)
    assert dataset_main([str(archive), str(tmp_path / "cache"), "--resolution", "8",
                         "--channels", "1"]) == 0
    out = capsys.readouterr()
    assert "4 images at 4..8px" in out.out and "skipped broken.png" in out.err  # tiny fits 8px
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["channels"] == 1 and manifest["count"] == 4


@pytest.mark.parametrize("args,message", [
    (["missing", "out", "--resolution", "8"], "does not exist"),
    (["src", "out", "--resolution", "12"], "power of two"),
])
def test_command_line_errors_are_named(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    _image_folder(tmp_path / "src", count=1)
    assert dataset_main(args) == 2
    assert message in capsys.readouterr().err


def test_no_usable_image_leaves_no_cache(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no usable images"):
        prepare_dataset(src, tmp_path / "cache", 8, progress=False)
    assert not (tmp_path / "cache").exists()
    assert list(tmp_path.iterdir()) == [src], "the temporary build folder is removed"


def test_truncated_level_and_missing_manifest_are_named(tmp_path):
    folder = build_cache(iter([np.full((1, 8, 8), 100.0, np.float32)] * 3), tmp_path / "c", 8, 1,
                         source="test")
    (folder / "r8.u8").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="missing or truncated"):
        ImageCache.open(folder).level(8)
    with pytest.raises(ValueError, match="not a fastpgan image cache"):
        ImageCache.open(tmp_path)


def test_batches_depend_only_on_seed_and_step(tmp_path):
    images = [np.random.default_rng(i).uniform(0, 255, (3, 8, 8)).astype(np.float32)
              for i in range(20)]
    cache = ImageCache.open(build_cache(iter(images), tmp_path / "c", 8, 3, source="test"))
    first = RealImages(cache, seed=3, workers=2).batches(8, 4, start=0)
    steps = [next(first) for _ in range(6)]
    resumed = RealImages(cache, seed=3, workers=0).batches(8, 4, start=4)
    assert torch.equal(next(resumed), steps[4]) and torch.equal(next(resumed), steps[5])
    other = next(RealImages(cache, seed=4).batches(8, 4))
    assert not torch.equal(other, steps[0])
    assert steps[0].dtype == torch.uint8 and steps[0].shape == (4, 3, 8, 8)


def _save_random(folder, names, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / name)


def test_an_image_folder_cache_is_rebuilt_when_the_folder_changes(tmp_path, monkeypatch,
                                                                    capsys):
    """Training and ``fastpgan metrics --data`` both open a folder through this cache."""
    import os

    from fastpgan.data.demo import open_training_data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "faces"
    src.mkdir()
    _save_random(src, [f"{i}.png" for i in range(10)])

    def cached_count():
        return ImageCache.open(open_training_data(str(src), 8, 3)).count

    assert cached_count() == 10
    capsys.readouterr()
    assert cached_count() == 10 and "caching them again" not in capsys.readouterr().err
    _save_random(src, [f"{i}.png" for i in range(10, 20)], seed=1)
    (src / "3.png").unlink()
    assert cached_count() == 19
    assert "have changed since they were cached" in capsys.readouterr().err
    before = ImageCache.open(open_training_data(str(src), 8, 3)).level(8)[0].copy()
    _save_random(src, ["0.png"], seed=2)  # same name, new pixels
    stat = (src / "0.png").stat()
    os.utime(src / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = ImageCache.open(open_training_data(str(src), 8, 3)).level(8)[0]
    assert not np.array_equal(before, after), "a rewritten image is cached again"


def test_a_changed_zip_is_cached_again(tmp_path, monkeypatch):
    from fastpgan.data.demo import open_training_data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    _save_random(src, ["a.png", "b.png", "c.png"])
    archive = tmp_path / "faces.zip"
    for members in (["a.png", "b.png"], ["a.png", "b.png", "c.png"]):
        with zipfile.ZipFile(archive, "w") as z:
            for name in members:
                z.write(src / name, name)
        assert ImageCache.open(open_training_data(str(archive), 8, 3)).count == len(members)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path, channels):
    src = tmp_path / "src"
    src.mkdir()
    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(ramp).save(src / "ramp.png")
    assert Image.open(src / "ramp.png").mode.startswith("I"), "a 16-bit image, as Pillow opens it"
    cache = ImageCache.open(prepare_dataset(src, tmp_path / "cache", 16, channels=channels,
                                            progress=False))
    level = cache.level(16)[0].astype(np.float64)
    assert cache.skipped == [] and level.shape == (channels, 16, 16)
    assert np.abs(level - ramp / 257.0).max() <= 0.5  # the same ramp, in 8 bits


def test_two_processes_opening_one_folder_cache_it_once(tmp_path):
    import os
    import subprocess
    import sys

    src = tmp_path / "faces"
    src.mkdir()
    _save_random(src, [f"{i}.png" for i in range(30)])
    code = ("import sys; from fastpgan.data.demo import open_training_data; "
            "print(open_training_data(sys.argv[1], 8, 3))")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(src)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({out for out, _ in outs}) == 1, "the same cache"
    assert sum("caching faces" in err for _, err in outs) == 1, "built once"
    assert ImageCache.open(outs[0][0].strip()).count == 30


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    """A photo stored sideways with EXIF orientation 6 ("rotate 90 degrees clockwise to
    view") is cached as it is viewed: its bright left half becomes the top half."""
    src = tmp_path / "src"
    src.mkdir()
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(pixels).save(src / f"photo{suffix}", exif=exif, quality=100)
    cache = ImageCache.open(prepare_dataset(src, tmp_path / "cache", 16, progress=False))
    image = cache.level(16)[0].mean(axis=0)  # (16, 16)
    assert image[:8].mean() > 200 and image[8:].mean() < 55, image


def test_a_full_disk_while_caching_is_named_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The disk fills while the levels are written: one line names the disk and the cache,
    and no half-built temporary folder is left."""
    import builtins
    import errno

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(src / f"{i}.png")
    real_open = builtins.open

    class Full:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def opening(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Full(handle) if str(file).endswith(".u8") and "w" in mode else handle

    monkeypatch.setattr(builtins, "open", opening)
    assert dataset_main([str(src), str(tmp_path / "cache"), "--resolution", "8"]) == 2
    errors = [line.split("fastpgan-dataset: ", 1)[1]  # after the progress bar's
              for line in capsys.readouterr().err.splitlines() if "fastpgan-dataset:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: the disk holding "), errors
    assert "is full: writing cache stopped after" in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"], "nothing half-built left"


def test_a_killed_build_leaves_nothing_the_next_build_keeps(tmp_path):
    """The temporary folders and files a killed cache build or conversion left (named for
    their process) are removed by the next build of the same target; a living process's
    are not."""
    import subprocess
    import sys

    from fastpgan.models import ProGANGenerator

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")
    stale = tmp_path / f".cache.{gone}.x1.tmp"
    (stale / "r8.u8").parent.mkdir()
    (stale / "r8.u8").write_bytes(b"\0" * 100)
    living = tmp_path / f".cache.{os.getpid()}.x2.tmp"
    living.mkdir()
    prepare_dataset(src, tmp_path / "cache", 8, progress=False)
    assert not stale.exists() and living.exists()
    folder = tmp_path / "gen"
    folder.mkdir()
    (folder / f".model.safetensors.{gone}.abc.tmp").write_bytes(b"\0" * 100)
    ProGANGenerator(8, 8, 32, 8).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
