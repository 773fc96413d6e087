"""Class labels of an image folder or zip: NVlabs' ``dataset.json`` or one subfolder per class.

``dataset.json`` at the source's top level, as NVlabs' dataset tool writes it:
``{"labels": [["dir/img.png", 3], ...]}`` (``"labels": null`` means none), one entry
for every image, each class a non-negative integer; the number of classes is the largest
plus one, as NVlabs counts. Without it, a folder whose images all sit in subfolders of
its top level, two or more, is labelled by subfolder: the classes are their names in
sorted order. The file is read as JSON (no code runs), and refused beyond
:data:`MAX_LABEL_FILE` bytes before it is parsed.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LABEL_FILE = "dataset.json"
MAX_LABEL_FILE = 256 * 2 ** 20
"""The largest dataset.json read (about 4 million labelled images)."""


@dataclass(frozen=True)
class ClassLabels:
    """Each image's class by its name in the source (a POSIX path), where the classes
    came from, and their names when they are subfolders."""

    classes: dict[str, int]
    origin: str
    names: tuple[str, ...] | None = None

    @property
    def count(self) -> int:
        """The number of classes: the largest plus one."""
        return max(self.classes.values()) + 1


def read_class_labels(src: Path, images: list[str]) -> ClassLabels | None:
    """The labels of the images named ``images`` (POSIX paths in ``src``), or None when
    the source has none. ValueError names a label file that is not one, that names
    images the source does not have, that leaves images out, or whose classes are not
    non-negative integers."""
    text = _label_file(src)
    if text is not None:
        return _from_label_file(text, src, images)
    return _from_subfolders(images)


def _label_file(src: Path) -> str | None:
    """dataset.json's text from the folder or zip ``src``, or None."""
    if src.is_dir():
        path = src / LABEL_FILE
        if not path.is_file():
            return None
        size = path.stat().st_size
        data = path.read_bytes() if size <= MAX_LABEL_FILE else None
    else:
        with zipfile.ZipFile(src) as archive:
            try:
                member = archive.getinfo(LABEL_FILE)
            except KeyError:
                return None
            size = member.file_size
            data = archive.read(member) if size <= MAX_LABEL_FILE else None
    if data is None:
        raise ValueError(f"{src}/{LABEL_FILE} is {size} bytes, more than the "
                         f"{MAX_LABEL_FILE} a label file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{src}/{LABEL_FILE} is not UTF-8 text") from None


def _from_label_file(text: str, src: Path, images: list[str]) -> ClassLabels | None:
    where = f"{src}/{LABEL_FILE}"
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON ({exc}); NVlabs' format is "
                         '{"labels": [["img.png", 0], ...]}') from None
    if not isinstance(content, dict) or "labels" not in content:
        raise ValueError(f'{where} has no "labels"; NVlabs\' format is '
                         '{"labels": [["img.png", 0], ...]}')
    entries = content["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ValueError(f'{where}: "labels" must be a list of [file, class] pairs')
    classes: dict[str, int] = {}
    for entry in entries:
        if (not isinstance(entry, list) or len(entry) != 2
                or not isinstance(entry[0], str)):
            raise ValueError(f"{where}: each label must be [file, class], got "
                             f"{json.dumps(entry)[:80]}")
        name, label = entry
        if type(label) is not int or label < 0:
            raise ValueError(f"{where}: the class of {name} is {json.dumps(label)[:40]}; "
                             "classes must be non-negative integers (fastpgan trains on "
                             "class indices, not label vectors)")
        classes[str(PurePosixPath(name))] = label
    missing = sorted(set(classes) - set(images))
    if missing:
        raise ValueError(f"{where} names {len(missing)} image(s) that {src} does not have "
                         f"(first: {missing[0]})")
    unlabelled = sorted(set(images) - set(classes))
    if unlabelled:
        raise ValueError(f"{where} gives no class to {len(unlabelled)} image(s) (first: "
                         f"{unlabelled[0]}); label every image, or remove the file to "
                         "train without labels")
    if not classes:
        return None
    return ClassLabels(classes, LABEL_FILE)


def _from_subfolders(images: list[str]) -> ClassLabels | None:
    parts = [PurePosixPath(name).parts for name in images]
    if not parts or any(len(p) < 2 for p in parts):
        return None
    names = tuple(sorted({p[0] for p in parts}))
    if len(names) < 2:
        return None
    index = {name: i for i, name in enumerate(names)}
    return ClassLabels({image: index[p[0]] for image, p in zip(images, parts, strict=True)},
                       "subfolders", names)
