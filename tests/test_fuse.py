"""fastpgan.nn.fuse on the examples' plain-PyTorch GAN models (DCGAN, pix2pix's U-Net and
PatchGAN, CycleGAN's ResNet generator): the fused model's outputs, gradients, running
statistics and R1 penalty equal the original's, its state_dict loads both ways, and what
cannot be fused is listed."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import assert_close, assert_matches_plain, value_and_gradients
from torch import Tensor, nn

from examples import dcgan_plain
from examples.cyclegan.models import resnet_generator
from examples.pix2pix.models import patchgan, unet
from fastpgan.nn import BatchNormAct2d, InstanceNormAct2d, fuse
from fastpgan.nn.fuse import FusedConv2d, FusedConvTranspose2d

MODELS = {  # name: (model, input shape, a discriminator (R1 is checked), chains fused)
    "dcgan_generator": (lambda: dcgan_plain.Generator(16, 8), (4, 16), False, 7),
    "dcgan_discriminator": (lambda: dcgan_plain.Discriminator(8), (4, 1, 32, 32), True, 5),
    "unet_instance_norm": (lambda: unet(norm=nn.InstanceNorm2d), (2, 3, 32, 32), False, 7),
    "unet_batch_norm": (unet, (2, 3, 32, 32), False, 1),
    "patchgan": (patchgan, (2, 6, 32, 32), True, 3),
    "cyclegan_resnet": (resnet_generator, (2, 3, 32, 32), False, 17),
}
"""The examples' plain models (examples/), so the examples and these tests cannot drift."""


# ------------------------------------------------------------------------------- tests

def _randomize(model: nn.Module) -> None:
    """Parameters away from their initial values (weights 1, biases 0 would hide errors)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.dim() == 1:
                p.normal_(0, 0.3) if name.endswith("bias") else p.uniform_(0.5, 1.5)


def _pair(name: str, device: str) -> tuple[nn.Module, nn.Module, tuple[int, ...], bool, int]:
    build, shape, critic, chains = MODELS[name]
    torch.manual_seed(0)
    plain = build()
    _randomize(plain)
    fused, report = fuse(copy.deepcopy(plain).to(device), report=True, backend="fused")
    assert len(report.fused) == chains, str(report)
    return plain, fused, shape, critic, chains


def _outputs_and_grads(model: nn.Module, x: Tensor, seed: int) -> list[Tensor]:
    """model(x) and the gradients of <g, model(x)> for x and every parameter, g drawn from
    ``seed``; a parameter the graph does not reach gets a zero gradient."""
    x = x.detach().requires_grad_()
    y = model(x)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y)
    return value_and_gradients(y, [x, *model.parameters()], grad_y)


@pytest.mark.parametrize("name", MODELS)
def test_fused_model_equals_the_original_in_training_and_evaluation(device, name):
    plain, fused, shape, _, _ = _pair(name, device)
    for step, mode in enumerate(("train", "train", "train", "eval")):  # statistics move, serve
        plain.train(mode == "train"), fused.train(mode == "train")
        x = torch.randn(shape)
        assert_matches_plain(_outputs_and_grads(fused, x.to(device), step),
                        _outputs_and_grads(plain, x, step), f"{name} {mode} step {step}")
    for key, value in plain.state_dict().items():
        assert_close(fused.state_dict()[key].float(), value.float(), 1e-5, key)
    plain.load_state_dict(fused.state_dict())  # and back: the same keys and shapes
    fused.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m[2]])
def test_r1_penalty_gradients_equal_the_originals(device, name):
    """R1 (Mescheder et al. 2018): ||d D(x) / dx||^2, differentiated for D's parameters."""
    plain, fused, shape, _, _ = _pair(name, device)
    x = torch.randn(shape)

    def r1(model, x):
        x = x.detach().requires_grad_()
        (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return value_and_gradients(grad.square().sum(), list(model.parameters()))

    assert_matches_plain(r1(fused, x.to(device)), r1(plain, x), f"{name} R1")


def test_what_is_fused_keeps_every_parameter_object_and_key(device):
    model = dcgan_plain.Discriminator(8)
    params = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters())
    fused, report = fuse(model, report=True)
    assert fused is model and list(model.state_dict()) == keys
    assert all(p is params[name] for name, p in model.named_parameters())
    net = model.net
    assert type(net[0]) is FusedConv2d and type(net[1]) is nn.Identity  # bias_act
    assert type(net[3]) is BatchNormAct2d and net[3].activation == "lrelu"
    assert "net.0 -> net.1: Conv2d -> LeakyReLU: bias and activation in bias_act" in report.fused
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    optimizer.step()  # the optimizer built before fuse trains the fused model
    assert fuse(model, report=True)[1].fused == []  # nothing left to fuse


def test_conv_bias_moves_into_the_instance_norm(device):
    model = resnet_generator()
    fuse(model)
    assert type(model[1]) is FusedConv2d and model[1].epilogue is None
    assert type(model[2]) is InstanceNormAct2d and model[2].activation == "relu"
    assert type(model[12]) is FusedConvTranspose2d
    assert type(model[10].conv_block[6]) is InstanceNormAct2d  # a norm with no activation
    assert model[10].conv_block[6].activation == "linear"
    assert type(model[-1]) is nn.Identity and model[-2].epilogue.act == "tanh"


class _Traced(nn.Module):
    """A block whose forward is a plain chain of its children (found by tracing)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class _Reused(_Traced):
    """The norm's output goes to the activation and to the residual sum."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.conv(x))
        return self.act(h) + h


class _Untraceable(_Traced):
    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.conv(x))
        return self.act(h) if h.sum() > 0 else h  # control flow on a value


class _GeLUBlock(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GELU())


def test_traced_chains_fuse_and_equal_the_original(device):
    plain = _Traced()
    _randomize(plain)
    fused, report = fuse(copy.deepcopy(plain), report=True, backend="fused")
    assert type(fused.norm) is BatchNormAct2d and type(fused.act) is nn.Identity, str(report)
    assert type(fused.conv) is FusedConv2d
    x = torch.randn(2, 3, 5, 5)
    assert_matches_plain(_outputs_and_grads(fused.to(device), x.to(device), 0),
                    _outputs_and_grads(plain, x, 0), "traced block")


@pytest.mark.parametrize("build,reason", [
    (lambda: nn.Sequential(nn.BatchNorm2d(4), shared := nn.ReLU(), nn.BatchNorm2d(4), shared),
     "ReLU module used in 2 places"),
    (lambda: _with_hook(nn.Sequential(nn.BatchNorm2d(4), nn.ReLU())), "has hooks"),
    (_Reused, "its output is also used elsewhere"),
    (_Untraceable, "its forward cannot be traced"),
    (_GeLUBlock, "GELU has no fused form"),
    (lambda: nn.Sequential(nn.SyncBatchNorm(4), nn.ReLU()), "SyncBatchNorm"),
    (lambda: nn.Sequential(type("MyNorm", (nn.BatchNorm2d,), {})(4), nn.ReLU()),
     "MyNorm is not a torch normalization class"),
    (lambda: nn.Sequential(nn.BatchNorm2d(4), nn.LeakyReLU(-0.1)), "negative_slope -0.1"),
])
def test_what_cannot_be_fused_is_left_alone_and_listed(build, reason):
    model = build()
    activations = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.GELU))]
    fused, report = fuse(model, report=True)
    assert any(reason in line for line in report.refused), str(report)
    assert reason in str(report)
    # the activation is still called where it was (a conv's bias may still have moved)
    assert [m for m in fused.modules() if m in activations] == activations


def _with_hook(model: nn.Module) -> nn.Module:
    model[1].register_forward_hook(lambda module, inputs, output: None)
    return model


def test_a_fused_model_compiles_without_graph_breaks(device):
    plain = dcgan_plain.Discriminator(8)
    _randomize(plain)
    fused = fuse(copy.deepcopy(plain), backend="fused").to(device)
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 1, 32, 32)
    assert_matches_plain(_outputs_and_grads(compiled, x.to(device), 0),
                    _outputs_and_grads(plain, x, 0), "compiled")
    # the running statistics moved inside the compiled graph as eagerly
    for key, value in plain.state_dict().items():
        assert_close(fused.state_dict()[key].float(), value.float(), 1e-5, key)
