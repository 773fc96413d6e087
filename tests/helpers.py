"""Comparison helpers shared by the tests."""

from __future__ import annotations

import torch

from fastpgan.ops import bias_act_reference
from fastpgan.ops.epilogue import clamp_threshold

# Relative-error bounds against a float64 reference (ARCHITECTURE.md).
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2,
             torch.bfloat16: 1e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN anywhere gives inf."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if torch.isnan(out).any() or torch.isnan(ref).any():
        return float("inf")
    scale = ref.norm().item()
    diff = (out - ref).norm().item()
    return diff / scale if scale > 0 else diff


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> None:
    """Asserts shape equality and a relative error under tol."""
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    err = rel_err(out, ref)
    assert err < tol, f"{what}: relative error {err:.3e} >= {tol:.0e}"


def random_input(shape: tuple[int, ...], device: str, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False) -> torch.Tensor:
    """A random leaf tensor (requires grad) in the asked-for memory format."""
    x = torch.randn(shape, device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_()


def leaf64(t: torch.Tensor) -> torch.Tensor:
    """A float64 CPU leaf copy of t, for the reference."""
    return t.detach().double().cpu().requires_grad_()


class StubInception(torch.nn.Module):
    """Stands in for Inception-v3 where the real file is not the point: 299x299 -> 2048."""

    def __init__(self) -> None:
        super().__init__()
        self.project = torch.nn.Conv2d(3, 2048, 13, stride=13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(x)).mean((2, 3))



def third_order(fn, x: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of tanh(fn(x)).sum(), of its squared norm, and of the cubed second
    gradient, each with respect to x: first, second and third derivatives of fn."""
    g, = torch.autograd.grad(torch.tanh(fn(x)).sum(), x, create_graph=True)
    h, = torch.autograd.grad(g.square().sum(), x, create_graph=True)
    t, = torch.autograd.grad(h.pow(3).sum(), x)
    return [g, h, t]


def clear_of_clamp_band(x, b, kwargs):
    """x with every element whose pre-clamp output lies in twice the band below clamp
    that reads back as clamped (``clamp_threshold``) set to -b (an output of exactly 0).

    The kernels count an output within one rounding step of clamp as clamped (the
    documented convention: a half-precision output there rounds onto clamp; float32
    allows 16 steps), while the float64 reference still passes its gradient. In float32
    about 1 in 3 million elements falls there.
    """
    if kwargs.get("clamp") is None:
        return x
    clamp = kwargs["clamp"]
    unclamped = {k: v for k, v in kwargs.items() if k not in ("clamp", "pixel_norm")}
    b64 = None if b is None else b.detach().double()
    a = bias_act_reference(x.detach().double(), b64, **unclamped).abs()
    band = (a >= clamp - 2 * (clamp - clamp_threshold(clamp, x.dtype))) & (a < clamp)
    fill = (torch.zeros_like(x) if b is None
            else (-b.detach()).view(1, -1, *[1] * (x.dim() - 2)).expand_as(x))
    return torch.where(band, fill, x.detach()).requires_grad_()
