"""Class labels in the cache: NVlabs' dataset.json (in a folder or a zip) or one subfolder
per class, kept for the images cached (skipped ones leave theirs out), and every bad
label file refused in one line naming the problem, with no cache written."""

import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from fastpgan.cli.dataset import main as dataset_main
from fastpgan.data.cache import ImageCache, prepare_dataset


def _image(path, value, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def _cache(src, tmp_path):
    return ImageCache.open(prepare_dataset(src, tmp_path / "cache", 8, progress=False))


def test_dataset_json_labels_follow_the_cached_images(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        _image(src / "a" / f"{i}.png", 40 * i)
    _image(src / "a" / "small.png", 0, size=4)  # skipped: its label leaves with it
    labels = [[f"a/{i}.png", (3 * i) % 4] for i in range(5)] + [["a/small.png", 9]]
    (src / "dataset.json").write_text(json.dumps({"labels": labels[::-1]}))
    cache = _cache(src, tmp_path)
    assert cache.count == 5 and cache.labels.classes == [0, 3, 2, 1, 0]
    assert cache.labels.count == 10 and cache.labels.origin == "dataset.json"
    levels = cache.level(8)[:, 0, 0, 0]
    assert list(levels) == [0, 40, 80, 120, 160], "labels in the images' order"


def test_dataset_json_in_a_zip_and_null_labels(tmp_path):
    archive = tmp_path / "data.zip"
    _image(tmp_path / "x.png", 10)
    with zipfile.ZipFile(archive, "w") as z:
        z.write(tmp_path / "x.png", "img/x.png")
        z.write(tmp_path / "x.png", "img/y.png")
        z.writestr("dataset.json", json.dumps({"labels": [["img/x.png", 1],
                                                          ["img/y.png", 0]]}))
    assert _cache(archive, tmp_path).labels.classes == [1, 0]
    src = tmp_path / "null"
    _image(src / "a.png", 1)
    (src / "dataset.json").write_text('{"labels": null}')
    assert ImageCache.open(prepare_dataset(src, tmp_path / "c2", 8, progress=False)).labels \
        is None


def test_one_subfolder_per_class(tmp_path):
    src = tmp_path / "src"
    for name, count in (("zebra", 2), ("cat", 3)):
        for i in range(count):
            _image(src / name / f"{i}.png", i)
    cache = _cache(src, tmp_path)
    assert cache.labels.names == ["cat", "zebra"] and cache.labels.origin == "subfolders"
    assert cache.labels.classes == [0, 0, 0, 1, 1]
    flat = tmp_path / "flat"  # images at the top: no classes
    _image(flat / "a.png", 1)
    _image(flat / "sub" / "b.png", 2)
    assert ImageCache.open(prepare_dataset(flat, tmp_path / "c2", 8,
                                           progress=False)).labels is None


@pytest.mark.parametrize("content,message", [
    ('{"labels": [["a.png", 0], ["gone.png", 1]]}',
     r"names 1 image\(s\) that .* does not have \(first: gone.png\)"),
    ('{"labels": [["a.png", 0.5], ["b.png", 1]]}',
     "the class of a.png is 0.5; classes must be non-negative integers"),
    ('{"labels": [["a.png", [0, 1]], ["b.png", 1]]}', "not label vectors"),
    ('{"labels": [["a.png", -1], ["b.png", 1]]}', "non-negative integers"),
    ('{"labels": [["a.png", true], ["b.png", 1]]}', "the class of a.png is true"),
    ('{"labels": [["a.png", 0]]}', r"gives no class to 1 image\(s\) \(first: b.png\)"),
    ('{"labels": [["a.png"]]}', r"each label must be \[file, class\]"),
    ('{"label": []}', 'has no "labels"'),
    ("{labels: 1", "is not JSON"),
])
def test_bad_label_files_are_refused_in_one_line(tmp_path, capsys, content, message):
    src = tmp_path / "src"
    _image(src / "a.png", 1)
    _image(src / "b.png", 2)
    (src / "dataset.json").write_text(content)
    out = tmp_path / "cache"
    assert dataset_main([str(src), str(out), "--resolution", "8"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("fastpgan-dataset: error: ") and re.search(message, err)
    assert not out.exists()


def test_the_dataset_command_counts_the_classes(tmp_path, capsys):
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        _image(src / name / "0.png", 5)
    assert dataset_main([str(src), str(tmp_path / "cache"), "--resolution", "8"]) == 0
    assert "3 classes from subfolders" in capsys.readouterr().out
