"""The GAN systems of examples/ (python -m examples.<system>): each trains a few steps with
finite losses, plain and fused, writes its samples and loss plot, resumes from its
checkpoint exactly, and its fused networks equal its plain ones at initialization."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_matches_plain, value_and_gradients

from examples.harness import CHECKPOINT_KIND, parse
from fastpgan.files import read_tree
from fastpgan.nn import fuse

SYSTEMS = {"pix2pix": "Pix2Pix", "cyclegan": "CycleGAN", "gan3d": "Gan3D", "srgan": "SRGAN",
           "stackgan": "StackGAN", "agecgan": "AgeCGAN"}
"""Each example package and its system class."""
INPUTS = {
    "pix2pix": {"G": lambda s, b: (b[0],), "D": lambda s, b: (torch.cat(b, 1),)},
    "cyclegan": {"G_AB": lambda s, b: (b[0],), "G_BA": lambda s, b: (b[1],),
                 "D_A": lambda s, b: (b[0],), "D_B": lambda s, b: (b[1],)},
    "gan3d": {"G": lambda s, b: (b[1],), "D": lambda s, b: (b[0],)},
    "srgan": {"G": lambda s, b: (b[0],), "D": lambda s, b: (b[1],)},
    "stackgan": {"G1": lambda s, b: (b[3], s.embedding(b[1])),
                 "D1": lambda s, b: (F.avg_pool2d(b[0], 2), s.embedding(b[1])),
                 "G2": lambda s, b: (F.avg_pool2d(b[0], 2), s.embedding(b[1])),
                 "D2": lambda s, b: (b[0], s.embedding(b[1]))},
    "agecgan": {"G": lambda s, b: (b[2], b[1]), "D": lambda s, b: (b[0], b[1]),
                "E": lambda s, b: (b[0],)},
}
"""What each network takes from a training batch (the system at hand, the batch): the
input differentiated first."""


def _main(system: str):
    return importlib.import_module(f"examples.{system}.__main__")


def _checkpoint(folder) -> dict:
    return read_tree(folder / "checkpoint.safetensors", CHECKPOINT_KIND)[1]


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("system", SYSTEMS)
def test_trains_with_finite_losses_and_writes_its_pictures(tmp_path, system, fused):
    losses = _main(system).main(["--steps", "2", "--batch", "2", "--out", str(tmp_path),
                                 "--sample-every", "1", *(["--fused"] if fused else [])])
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(list(step.values()))).all()
                                    for step in losses)
    for name in ("samples.png", "samples-000001.png", "losses.png", "losses.jsonl",
                 "checkpoint.safetensors"):
        assert (tmp_path / name).exists(), name


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_run_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tmp_path, system):
    main = _main(system).main
    main(["--steps", "3", "--batch", "2", "--out", str(tmp_path / "straight")])
    main(["--steps", "3", "--until", "2", "--batch", "2", "--out", str(tmp_path / "resumed")])
    main(["--steps", "3", "--batch", "2", "--out", str(tmp_path / "resumed")])
    straight, resumed = _checkpoint(tmp_path / "straight"), _checkpoint(tmp_path / "resumed")
    assert straight["losses"] == resumed["losses"]
    for net, state in straight["networks"].items():
        for key, value in state.items():
            assert torch.equal(value, resumed["networks"][net][key]), f"{net}.{key}"


@pytest.mark.parametrize("system", SYSTEMS)
def test_fused_networks_equal_the_plain_ones_at_initialization(device, tmp_path, system):
    settings = parse(system, ["--out", str(tmp_path)], steps=1, batch=2)
    plain = getattr(_main(system), SYSTEMS[system])(settings)
    batch = next(plain.batches(2, torch.Generator().manual_seed(0)))
    for name, net in plain.networks.items():
        fused = fuse(copy.deepcopy(net), backend="fused").to(device)
        x, *rest = INPUTS[system][name](plain, batch)
        results = []
        for model, inputs, others in ((fused, x.to(device), [t.to(device) for t in rest]),
                                      (net, x, rest)):
            torch.manual_seed(1)  # the same dropout masks and conditioning draws
            inputs = inputs.clone().requires_grad_()
            y = model(inputs, *others)
            y = y[0] if isinstance(y, tuple) else y  # StackGAN's generators add mu, logvar
            # the gradients of sum(y^2)
            results.append(value_and_gradients(y, [inputs, *model.parameters()],
                                               2 * y.detach()))
        assert_matches_plain(*results, f"{system} {name}")


def test_bad_folders_and_other_checkpoints_are_refused_in_one_line(tmp_path, capsys):
    main = _main("srgan").main
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit):
        main(["--steps", "1", "--out", str(tmp_path / "file")])
    assert "--out" in (err := capsys.readouterr().err) and "a file of that name exists" in err
    _main("pix2pix").main(["--steps", "1", "--batch", "2", "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match="another system's checkpoint"):
        main(["--steps", "2", "--out", str(tmp_path / "run")])
    (tmp_path / "run" / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="remove it, or choose another --out"):
        _main("pix2pix").main(["--steps", "2", "--out", str(tmp_path / "run")])
