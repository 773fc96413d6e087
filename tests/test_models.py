"""ProGAN and StyleGAN networks: sizes, growing identities, fused vs reference, saving."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close, rel_err

from fastpgan.models import (
    Pretrained,
    ProGANDiscriminator,
    ProGANGenerator,
    StyleGANGenerator,
    channels_at,
)
from fastpgan.runs.schedule import BATCH_SCHEDULES

SMALL = dict(resolution=16, latent_dim=8, fmap_base=64, fmap_max=8)  # 8, 8, 8, 4 channels


def _small(cls, **kwargs):
    settings = dict(SMALL)
    if cls is StyleGANGenerator:
        settings.update(w_dim=8, mapping_layers=2, noise_mode="const")
    if cls is ProGANDiscriminator:
        del settings["latent_dim"]
    model = cls(**settings, **kwargs)
    with torch.no_grad():  # as after training: StyleGAN starts from a constant, noise off
        for name, param in model.named_parameters():
            if name.endswith(("const", "noise.weight")):
                param.normal_()
    return model


def _reference_copy(model):
    """The same network on the reference ops, in float64 (weights copied)."""
    twin = type(model)(**{**model.config, "backend": "reference"})
    twin.load_state_dict(model.state_dict())
    return twin.double().train(model.training)


def test_channels_per_resolution_follow_the_official_schedule():
    assert [channels_at(2 ** k) for k in range(2, 11)] == [512] * 4 + [256, 128, 64, 32, 16]


@pytest.mark.parametrize("cls,paper_millions", [
    (ProGANGenerator, 23.1), (ProGANDiscriminator, 23.1),  # Karras et al. 2017, table 2
    (StyleGANGenerator, 26.2),  # Karras et al. 2019, section 2
])
def test_parameter_counts_at_1024_match_the_papers(cls, paper_millions):
    with torch.device("meta"):
        model = cls()
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert count == pytest.approx(paper_millions, rel=0.01)


@pytest.mark.parametrize("cls", [ProGANGenerator, StyleGANGenerator])
@pytest.mark.parametrize("resolution", [4, 8])
def test_generator_at_alpha_0_is_the_previous_resolution_upsampled(cls, resolution):
    G = _small(cls, backend="reference").double().eval()
    z = torch.randn(3, 8, dtype=torch.float64)
    fading = G(z, 2 * resolution, alpha=0.0)
    assert torch.equal(F.avg_pool2d(fading, 2), G(z, resolution, alpha=1.0))
    assert torch.equal(fading, F.interpolate(G(z, resolution), scale_factor=2, mode="nearest"))
    half = G(z, 2 * resolution, alpha=0.5)
    assert_close(half, 0.5 * fading + 0.5 * G(z, 2 * resolution, alpha=1.0), 1e-12, "alpha 0.5")


@pytest.mark.parametrize("resolution", [4, 8])
def test_discriminator_at_alpha_0_sees_only_the_pooled_image(resolution):
    D = _small(ProGANDiscriminator, backend="reference").double()
    images = torch.randn(4, 3, 2 * resolution, 2 * resolution, dtype=torch.float64)
    assert torch.equal(D(images, alpha=0.0), D(F.avg_pool2d(images, 2), alpha=1.0))


@pytest.mark.parametrize("cls", [ProGANGenerator, StyleGANGenerator, ProGANDiscriminator])
def test_a_0d_tensor_alpha_gives_the_number_alphas_output(cls):
    """A training step passes a fade-in's alpha as a tensor (data, not a new graph): both
    paths run, and at 0 and 1 the output is still exactly the old or the new one."""
    net = _small(cls, backend="reference").double().eval()
    x = (torch.randn(3, 3, 16, 16, dtype=torch.float64) if cls is ProGANDiscriminator
         else torch.randn(3, 8, dtype=torch.float64))
    args = () if cls is ProGANDiscriminator else (16,)
    for alpha in (0.0, 0.3, 1.0):
        as_tensor = net(x, *args, alpha=torch.tensor(alpha, dtype=torch.float64))
        assert_close(as_tensor, net(x, *args, alpha=alpha), 1e-12, f"alpha {alpha}")
    with pytest.raises(ValueError, match="must be 0-d and floating-point"):
        net(x, *args, alpha=torch.ones(2))


@pytest.mark.parametrize("cls", [ProGANGenerator, StyleGANGenerator])
@pytest.mark.parametrize("resolution,alpha", [(4, 1.0), (8, 0.3), (16, 1.0), (16, 0.7)])
def test_fused_generator_matches_float64_reference(device, cls, resolution, alpha):
    G = _small(cls, backend="fused").to(device).eval()
    G64 = _reference_copy(G.cpu()).eval()
    G.to(device)
    z = torch.randn(4, 8, device=device)
    out = G(z, resolution, alpha)
    head = torch.randn_like(out)
    grads = torch.autograd.grad((out * head).sum(), list(G.parameters()), allow_unused=True)
    out64 = G64(z.double().cpu(), resolution, alpha)
    grads64 = torch.autograd.grad((out64 * head.double().cpu()).sum(), list(G64.parameters()),
                                  allow_unused=True)
    assert_close(out, out64, 1e-4, "image")
    for (name, _), g, g64 in zip(G.named_parameters(), grads, grads64, strict=True):
        assert (g is None) == (g64 is None), name
        if g is not None and g64.norm() > 0:
            assert_close(g, g64, 1e-4, name)


@pytest.mark.parametrize("resolution,alpha", [(8, 1.0), (16, 0.4)])
def test_fused_discriminator_with_gradient_penalty_matches_float64(device, resolution, alpha):
    """WGAN-GP through D (Gulrajani et al. 2017): scores and the penalty's parameter grads."""
    D = _small(ProGANDiscriminator, backend="fused").to(device)
    D64 = _reference_copy(D.cpu())
    D.to(device)
    images = torch.randn(4, 3, resolution, resolution, device=device)

    def penalized(net, x):
        x = x.detach().requires_grad_()
        scores = net(x, alpha)
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
        penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
        return scores, scores.mean() + 10 * penalty

    scores, loss = penalized(D, images)
    grads = torch.autograd.grad(loss, list(D.parameters()), allow_unused=True)
    scores64, loss64 = penalized(D64, images.double().cpu())
    grads64 = torch.autograd.grad(loss64, list(D64.parameters()), allow_unused=True)
    assert_close(scores, scores64, 1e-4, "scores")
    assert_close(loss, loss64, 1e-4, "loss")
    for (name, _), g, g64 in zip(D.named_parameters(), grads, grads64, strict=True):
        assert (g is None) == (g64 is None), name
        if g is not None and g64.norm() > 0:
            assert_close(g, g64, 1e-4, name)


def test_stylegan_truncation_to_the_average_gives_one_image_for_any_z():
    G = _small(StyleGANGenerator, backend="reference").eval()
    with torch.no_grad():
        G.w_avg.normal_()
        images = G(torch.randn(5, 8), truncation_psi=0.0)
    assert torch.allclose(images, images[:1].expand_as(images), atol=1e-6)
    assert not torch.allclose(images, G(torch.randn(5, 8)), atol=1e-3)


def test_stylegan_style_mixing_crossover_selects_each_latent():
    G = _small(StyleGANGenerator, backend="reference").eval()
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        assert torch.allclose(G(z1, mix_z=z2, mix_layer=0), G(z2), atol=1e-6)
        assert torch.allclose(G(z1, mix_z=z2, mix_layer=G.num_layers), G(z1), atol=1e-6)
        mixed = G(z1, mix_z=z2, mix_layer=4)
    assert not torch.allclose(mixed, G(z1), atol=1e-4)
    assert not torch.allclose(mixed, G(z2), atol=1e-4)
    with pytest.raises(ValueError, match="mix_layer"):
        G(z1, mix_z=z2)


def test_stylegan_training_mixes_styles_at_a_device_drawn_crossover():
    # the draw must be data on the device (a CUDA graph replays it; a Python random number
    # would be frozen at capture): no mixing (crossover = layers) with probability 0.1,
    # else a crossover uniform over 1 .. layers - 1
    G = _small(StyleGANGenerator, backend="reference", style_mixing_prob=0.9).train()
    layers = 6
    torch.manual_seed(0)
    draws = torch.stack([G._crossover(torch.zeros(1), None, None, layers)
                         for _ in range(2000)])
    assert draws.dtype == torch.int64 and draws.dim() == 1
    counts = torch.bincount(draws, minlength=layers + 1).tolist()
    assert counts[0] == 0 and sum(counts) == 2000
    assert abs(counts[layers] / 2000 - 0.1) < 0.03
    for crossover in range(1, layers):
        assert abs(counts[crossover] / 2000 - 0.9 / (layers - 1)) < 0.04
    assert G.eval()._crossover(torch.zeros(1), None, None, layers) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_stylegan_tracks_the_average_w_in_training_only(dtype):
    G = _small(StyleGANGenerator, backend="reference").to(dtype)
    G(torch.randn(4, 8, dtype=dtype))
    moved = G.w_avg.clone()
    assert moved.abs().sum() > 0
    G.eval()
    G(torch.randn(4, 8, dtype=dtype))
    assert torch.equal(G.w_avg, moved)


def test_stylegan_noise_modes():
    G = _small(StyleGANGenerator, backend="reference").eval()
    z = torch.randn(2, 8)
    with torch.no_grad():
        G.noise_mode = "random"
        assert not torch.allclose(G(z), G(z))
        G.noise_mode = "const"
        assert torch.equal(G(z), G(z))
    with pytest.raises(ValueError, match="noise_mode"):
        G.noise_mode = "fixed"


@pytest.mark.parametrize("cls", [ProGANGenerator, ProGANDiscriminator, StyleGANGenerator])
def test_save_and_load_round_trip(tmp_path, cls):
    model = _small(cls, backend="reference").eval()
    model.save_pretrained(tmp_path / "net")
    loaded = Pretrained.from_pretrained(tmp_path / "net")
    assert type(loaded) is cls and loaded.config == model.config
    x = torch.randn(2, 3, 16, 16) if cls is ProGANDiscriminator else torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["config.json",
                                                                     "model.safetensors"]


def test_loading_names_wrong_shapes_missing_keys_and_bad_files(tmp_path):
    from safetensors.torch import load_file, save_file

    _small(ProGANGenerator).save_pretrained(tmp_path / "g")
    weights = tmp_path / "g" / "model.safetensors"
    state = load_file(str(weights))
    state["conv4.weight"] = torch.zeros(1, 2, 3, 3)
    del state["to_rgb.0.bias"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"missing keys \['to_rgb.0.bias'\].*conv4.weight: "
                                         r"saved \(1, 2, 3, 3\), expected \(8, 8, 3, 3\)"):
        ProGANGenerator.from_pretrained(tmp_path / "g")
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read the weights file"):
        ProGANGenerator.from_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="holds a ProGANGenerator, not a ProGANDiscriminator"):
        ProGANDiscriminator.from_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="cannot read the model config"):
        ProGANGenerator.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("call,message", [
    (lambda G, D: G(torch.randn(2, 7)), r"z must be \(N, 8\)"),
    (lambda G, D: G(torch.randn(2, 8), resolution=12), "power of two"),
    (lambda G, D: G(torch.randn(2, 8), resolution=32), "above the network's 16"),
    (lambda G, D: G(torch.randn(2, 8), alpha=1.5), r"alpha must be in \[0, 1\]"),
    (lambda G, D: D(torch.randn(2, 1, 8, 8)), r"images must be \(N, 3, r, r\)"),
    (lambda G, D: D(torch.randn(2, 3, 32, 32)), "above the network's 16"),
])
def test_bad_calls_name_the_problem(call, message):
    G, D = _small(ProGANGenerator), _small(ProGANDiscriminator)
    with pytest.raises(ValueError, match=message):
        call(G, D)


def test_generator_output_keeps_channels_last_on_request():
    G = _small(ProGANGenerator, backend="reference").to(memory_format=torch.channels_last)
    assert G(torch.randn(2, 8), 8).shape == (2, 3, 8, 8)
    assert math.isfinite(G(torch.randn(2, 8), 16, 0.5).sum().item())


@pytest.mark.parametrize("cls", [ProGANGenerator, StyleGANGenerator])
def test_activation_checkpointing_changes_no_gradient(cls, monkeypatch):
    import fastpgan.models.common as common

    G = _small(cls, backend="reference").double().eval()
    D = _small(ProGANDiscriminator, backend="reference").double()
    z = torch.randn(4, 8, dtype=torch.float64)

    def grads():
        images = G(z, 16, 0.6).detach().requires_grad_()
        score = D(G(z, 16, 0.6), 0.6).sum()
        (penalty,) = torch.autograd.grad(D(images, 0.6).sum(), images, create_graph=True)
        loss = score + penalty.square().sum()
        return torch.autograd.grad(loss, [*G.parameters(), *D.parameters()], allow_unused=True)

    plain = grads()
    G.recompute_blocks(2)
    D.recompute_blocks(2)
    recomputed = []
    monkeypatch.setattr(common, "checkpoint", lambda block, *a, **k: recomputed.append(block)
                        or common.torch.utils.checkpoint.checkpoint(block, *a, **k))
    assert "G.blocks" not in G.state_dict() and set(G.state_dict()) == set(
        _small(cls).state_dict())
    for a, b in zip(plain, grads(), strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-12, atol=0)
    assert {id(block) for block in recomputed} == {id(b) for b in [*G.blocks[-2:],
                                                                    *D.blocks[-2:]]}


# Under autocast (the trainer's bf16/fp16 on a GPU) the fused ops get half-precision
# activations beside float32 parameters and noise. Over 45 seeds per case the fused images
# stayed within 1.4x the reference ops' error under the same autocast and the gradients
# under the absolute bound below, except for draws where the WGAN-GP step is ill-conditioned
# in half precision: there eager PyTorch's own gradients erred as much (0.121 beside our
# 0.128 for fp16 at seed 1256060832). So the bound is the larger of the absolute tolerance
# and 1.5x what the reference ops reach under the same autocast at the same draw.
AUTOCAST_TOLERANCE = {torch.bfloat16: (4e-2, 0.3), torch.float16: (5e-3, 0.1)}


@pytest.mark.parametrize("dtype", list(AUTOCAST_TOLERANCE), ids=str)
@pytest.mark.parametrize("cls", [ProGANGenerator, StyleGANGenerator])
def test_fused_networks_under_autocast_match_float64_to_half_precision(device, cls, dtype):
    """A WGAN-GP step of G and D, fused under autocast, against float64 without it: no
    further from it than the absolute tolerance or than eager PyTorch under autocast."""
    G, D = _small(cls, backend="fused").eval(), _small(ProGANDiscriminator, backend="fused")
    G64, D64 = _reference_copy(G).eval(), _reference_copy(D)
    G_eager = _reference_copy(G).float().eval().to(device)
    D_eager = _reference_copy(D).float().to(device)
    G.to(device), D.to(device)
    z = torch.randn(4, 8, device=device)

    def step(G, D, z, dtype):
        with torch.autocast(z.device.type, dtype=dtype, enabled=dtype is not None):
            images = G(z, 16, 0.7)
            x = images.detach().to(z.dtype).requires_grad_()
            (grad,) = torch.autograd.grad(D(x, 0.7).float().sum(), x, create_graph=True)
            loss = (D(images, 0.7).float().mean()
                    + 10 * (grad.float().flatten(1).norm(dim=1) - 1).square().mean())
        grads = torch.autograd.grad(loss, [*G.parameters(), *D.parameters()],
                                    allow_unused=True)
        return images, torch.cat([g.double().cpu().flatten() for g in grads if g is not None])

    images, grads = step(G, D, z, dtype)
    images64, grads64 = step(G64, D64, z.double().cpu(), None)
    eager_images, eager_grads = step(G_eager, D_eager, z, dtype)
    assert images.dtype == dtype
    assert torch.isfinite(images).all() and torch.isfinite(grads).all()
    image_tol, grad_tol = AUTOCAST_TOLERANCE[dtype]
    assert_close(images, images64, max(image_tol, 1.5 * rel_err(eager_images, images64)),
                 "images")
    assert_close(grads, grads64, max(grad_tol, 1.5 * rel_err(eager_grads, grads64)),
                 "G and D gradients")


def _micro_batches(batch: int) -> list[int]:
    """The per-step minibatches a schedule's batch may train in: itself and, under
    --batch auto, each halving down to 1."""
    sizes = [batch]
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    return sizes


@pytest.mark.parametrize("schedule", sorted(BATCH_SCHEDULES))
@pytest.mark.parametrize("generator", [ProGANGenerator, StyleGANGenerator])
def test_every_schedule_runs_at_every_resolution_with_the_full_size_networks(schedule,
                                                                             generator):
    """The official networks (1024x1024, fmap_base 8192), shapes only (the meta device):
    G and D, stable and fading, at each resolution's minibatch and micro-batch of the
    schedule (14 and 6 at 256 and 512 were refused by minibatch-stddev's group of 4)."""
    with torch.device("meta"):
        G, D = generator(backend="reference"), ProGANDiscriminator(backend="reference")
        alpha = torch.full((), 0.5)
        for resolution, batch in BATCH_SCHEDULES[schedule].items():
            for n in _micro_batches(batch):
                for fade in (1.0, alpha) if resolution > 4 else (1.0,):
                    images = G(torch.randn(n, 512), resolution, fade)
                    assert images.shape == (n, 3, resolution, resolution)
                    assert D(images, fade).shape == (n, 1)
