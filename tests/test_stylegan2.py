"""StyleGAN2's networks: their size against NVlabs', NVlabs' calling conventions, the fused
path against the reference (with R1's double backward), and a network NVlabs' own code
built, pickled and computed, converted by fastpgan, as a regression test."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close
from safetensors import safe_open

from fastpgan.models import Pretrained, StyleGAN2Discriminator, StyleGAN2Generator, load

DATA = Path(__file__).parent / "data"

# Parameters of NVlabs' stylegan2-ada-pytorch Generator and Discriminator (training/
# networks.py, config F: channel_base 32768, channel_max 512, 8 mapping layers, z and w
# 512), counted from networks built by that code on 2026-12-03.
NVLABS_PARAMETERS = {32: (21_523_475, 21_507_073), 256: (30_034_338, 28_864_129),
                     1024: (30_370_060, 29_012_513)}


@pytest.mark.parametrize("resolution", sorted(NVLABS_PARAMETERS))
def test_parameter_counts_match_nvlabs_config_f(resolution):
    with torch.device("meta"):
        G = StyleGAN2Generator(img_resolution=resolution, conv_clamp=256)
        D = StyleGAN2Discriminator(img_resolution=resolution, conv_clamp=256)
    counts = tuple(sum(p.numel() for p in net.parameters()) for net in (G, D))
    assert counts == NVLABS_PARAMETERS[resolution]


def _small(c_dim=0, resolution=16, backend=None):
    kwargs = dict(channel_base=256, channel_max=16, conv_clamp=8.0, backend=backend)
    G = StyleGAN2Generator(16, c_dim, 16, resolution, 3, mapping_layers=2, **kwargs)
    D = StyleGAN2Discriminator(c_dim, resolution, 3, mapping_layers=2, **kwargs)
    with torch.no_grad():  # nonzero noise strengths and biases, so both paths matter
        for net in (G, D):
            for name, p in net.named_parameters():
                if name.endswith(("bias", "noise_strength")):
                    p.normal_(0, 0.5)
        G.mapping.w_avg.normal_()
    return G.eval(), D.eval()


def test_nvlabs_calling_conventions():
    G, D = _small()
    z = torch.randn(4, 16)
    ws = G.mapping(z, None)
    assert ws.shape == (4, G.num_ws, 16) and G.num_ws == 2 * 4 - 2
    img = G.synthesis(ws, noise_mode="const")
    assert img.shape == (4, 3, 16, 16) and img.dtype == torch.float32
    assert torch.equal(G(z, None, noise_mode="const"), img)
    assert torch.equal(G(z, noise_mode="const", force_fp32=True), img)
    assert not torch.equal(G(z, None, noise_mode="random"), img)
    psi = G(z, None, truncation_psi=0.5, truncation_cutoff=2, noise_mode="const")
    pulled = ws.clone()
    pulled[:, :2] = G.mapping.w_avg.lerp(ws[:, :2], 0.5)
    assert_close(psi, G.synthesis(pulled, noise_mode="const"), 1e-6, "truncation cutoff")
    assert D(img, None).shape == (4, 1)
    G.train()
    before = G.mapping.w_avg.clone()
    G(z)
    assert not torch.equal(G.mapping.w_avg, before), "w_avg tracks w in training"


def test_conditional_models_read_their_labels():
    G, D = _small(c_dim=3)
    z, c = torch.randn(4, 16), F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    a = G(z, c, noise_mode="const")
    b = G(z, c.roll(1, 0), noise_mode="const")
    assert not torch.allclose(a, b), "the label changes the image"
    assert D(a, c).shape == (4, 1)
    with pytest.raises(ValueError, match="one-hot labels"):
        G(z, None)


@pytest.mark.parametrize("call,message", [
    (lambda G, D: G(torch.randn(2, 7)), r"z must be \(N, 16\)"),
    (lambda G, D: G(torch.randn(2, 16), noise_mode="fixed"), "noise_mode"),
    (lambda G, D: G.synthesis(torch.randn(2, 3, 16)), "ws must be"),
    (lambda G, D: D(torch.randn(2, 3, 8, 8)), r"images must be \(N, 3, 16, 16\)"),
])
def test_bad_inputs_name_the_problem(call, message):
    G, D = _small()
    with pytest.raises(ValueError, match=message):
        call(G, D)


def test_fused_path_matches_the_reference_with_r1s_double_backward(device):
    G_ref, D_ref = _small(backend="reference")
    G, D = _small(backend="fused")
    G.load_state_dict(G_ref.state_dict())
    D.load_state_dict(D_ref.state_dict())
    G, D = G.to(device), D.to(device)
    z = torch.randn(4, 16)
    img_ref = G_ref(z, noise_mode="const")
    img = G(z.to(device), noise_mode="const")
    assert_close(img, img_ref, 1e-5, "G")

    def r1(net, images):  # the gradient penalty differentiates D's input gradient
        images = images.detach().requires_grad_()
        (grad,) = torch.autograd.grad(net(images).sum(), images, create_graph=True)
        penalty = grad.square().sum()
        return torch.autograd.grad(penalty, list(net.parameters()), materialize_grads=True)

    for g, g_ref in zip(r1(D, img), r1(D_ref, img_ref), strict=True):
        assert_close(g, g_ref, 1e-4, "R1 parameter gradient")


def _expected(folder: Path) -> dict[str, torch.Tensor | float]:
    with safe_open(str(folder / "expected.safetensors"), "pt") as f:
        names = f.keys()  # safe_open cannot be iterated
        tensors = {k: f.get_tensor(k) for k in names}
        return tensors | {"psi": float(f.metadata()["truncation_psi"])}


@pytest.mark.parametrize("name", ["nvlabs-sg2-16", "nvlabs-sg2-16-c4"])
def test_networks_nvlabs_code_built_give_its_outputs(name):
    """Made once with NVlabs' own code (random weights, pickled their way, fp32 CPU), the
    pickle converted with ``fastpgan convert``: the converted networks must keep giving
    NVlabs' outputs for the same z, c and const noise."""
    folder = DATA / name
    expected = _expected(folder)
    networks = load(folder)
    c = expected.get("c")
    images = networks.G_ema(expected["z"], c, truncation_psi=expected["psi"],
                            noise_mode="const")
    assert_close(images, expected["G_ema"], 1e-5, "G_ema")
    assert_close(networks.D(expected["G_ema"], c), expected["D"], 1e-5, "D")
    G = Pretrained.from_pretrained(folder / "generator")
    assert isinstance(G, StyleGAN2Generator) and G.c_dim == (0 if c is None else 4)
