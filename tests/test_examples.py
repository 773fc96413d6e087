"""The drop-in examples (examples/) train for a few steps on the bundled faces."""

import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))


@pytest.mark.parametrize("models", ["plain", "fastpgan"])
def test_example_trains_and_writes_a_grid(tmp_path, models):
    import train

    out = tmp_path / "samples.png"
    train.main([models, "--steps", "3", "--batch", "8", "--device", "cpu", "--out", str(out)])
    from PIL import Image

    with Image.open(out) as grid:
        assert grid.size == (8 * 32, 4 * 32)


def test_faces_are_real_crops_in_range():
    from faces import load_faces

    faces = load_faces(32)
    assert faces.shape == (200, 1, 32, 32)
    assert faces.min() >= -1 and faces.max() <= 1 and faces.std() > 0.2
    assert math.isfinite(faces.sum().item())
