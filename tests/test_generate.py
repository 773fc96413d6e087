"""fastpgan generate / interpolate: seeds, slerp, loading generators, endpoints."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastpgan.cli.main import main
from fastpgan.generate import load_generator, parse_seeds, seed_latents, slerp
from fastpgan.models import ProGANGenerator, StyleGANGenerator
from fastpgan.train.checkpoint import save_checkpoint


def _saved(tmp_path, cls=ProGANGenerator):
    G = cls(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8)
    G.save_pretrained(tmp_path / "generator")
    return G


def test_seed_lists_and_latents_are_reproducible():
    assert parse_seeds("0-3,7, 10-11") == [0, 1, 2, 3, 7, 10, 11]
    with pytest.raises(ValueError, match="'3-1' is not N or N-M"):
        parse_seeds("3-1")
    assert torch.equal(seed_latents([5, 2], 8)[0], seed_latents([1, 5], 8)[1])


def test_slerp_keeps_the_norm_and_hits_the_endpoints():
    a = torch.randn(4, 512)
    b = torch.randn(4, 512)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    for t in torch.linspace(0, 1, 7):
        assert torch.allclose(slerp(a, b, t).norm(dim=1), a.norm(dim=1), rtol=1e-5)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)  # parallel: no division by zero


def test_generate_writes_each_seed_and_a_grid(tmp_path, capsys):
    G = _saved(tmp_path)
    assert main(["generate", str(tmp_path), "--seeds", "0-5", "--grid", "3x2", "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["grid.png"] + [f"seed{i:04d}.png" for i in range(6)]
    with Image.open(tmp_path / "out" / "seed0003.png") as picture:
        pixels = np.asarray(picture, dtype=np.float64)
    with torch.no_grad():
        image = G.eval()(seed_latents([3], 8))[0].permute(1, 2, 0).clamp(-1, 1)
    assert np.abs(pixels - ((image.numpy() + 1) * 127.5)).max() <= 0.51


@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolation_frames_start_at_each_seed(tmp_path, mode):
    _saved(tmp_path)
    gif = tmp_path / "walk.gif"
    assert main(["interpolate", str(tmp_path), "--seeds", "3,7,11", "--steps", "4", "--mode",
                 mode, "--out", str(gif), "--device", "cpu"]) == 0
    assert main(["generate", str(tmp_path), "--seeds", "3,7,11", "--out",
                 str(tmp_path / "g"), "--device", "cpu"]) == 0
    with Image.open(gif) as walk:
        assert walk.n_frames == 12
        for index, seed in ((0, 3), (4, 7), (8, 11)):
            walk.seek(index)
            frame = np.asarray(walk.convert("RGB"), dtype=np.int16)
            with Image.open(tmp_path / "g" / f"seed{seed:04d}.png") as still:
                assert np.array_equal(frame, np.asarray(still.convert("RGB"), np.int16))
    assert (tmp_path / "walk.png").exists()


def test_stylegan_w_space_walk_and_truncation(tmp_path):
    _saved(tmp_path, StyleGANGenerator)
    assert main(["interpolate", str(tmp_path), "--seeds", "0,1", "--steps", "3", "--space",
                 "w", "--truncation", "0.7", "--out", str(tmp_path / "w.gif")]) == 0
    with Image.open(tmp_path / "w.gif") as walk:
        assert walk.n_frames == 6


def test_checkpoint_files_load_their_ema_generator(tmp_path):
    G = ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8)
    config = dict(arch="progan", resolution=8, latent_dim=8, fmap_base=32, fmap_max=8,
                  channels=3)
    path = save_checkpoint({"shown": 1, "config": config, "G_ema": G.state_dict()}, tmp_path, 1)
    loaded = load_generator(path)
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z), G.eval()(z))


@pytest.mark.parametrize("args,message", [
    (["generate", "/no/such/run"], "no such generator or checkpoint"),
    (["generate", "{tmp}", "--truncation", "0.5"], "needs a StyleGAN generator"),
    (["interpolate", "{tmp}", "--seeds", "4"], "at least two seeds"),
])
def test_errors_are_named(tmp_path, capsys, args, message):
    _saved(tmp_path)
    args = [a.format(tmp=tmp_path) for a in args]
    assert main([*args, "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err
