"""fastpgan.ops.dispatch: each fused op's eager Function and its torch.library operator
give the same values and derivatives, and each call takes the entry point it should."""

from __future__ import annotations

import functools
import random

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastpgan.backend import OPS
from fastpgan.ops import bias_act
from fastpgan.ops.dispatch import FusedOp


class SeenOps(TorchDispatchMode):
    """Passes every op through and keeps the names of the fastpgan ones."""

    def __init__(self) -> None:
        super().__init__()
        self.fastpgan: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "fastpgan":
            self.fastpgan.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _derivatives(fn, x: torch.Tensor) -> list[torch.Tensor]:
    """fn(x), its gradient against a fixed cotangent and the gradient of that gradient's
    weighted sum: what WGAN-GP and R1 need of an op."""
    x = x.detach().requires_grad_()
    y = fn(x)
    cotangent = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    (dx,) = torch.autograd.grad(y, x, cotangent, create_graph=True)
    weights = torch.linspace(0.5, 2, dx.numel(), dtype=dx.dtype).reshape(dx.shape)
    ddx = None
    if dx.requires_grad:  # not for an op affine in x with constant parameters: ddx = 0
        (ddx,) = torch.autograd.grad((dx * weights).sum(), x, allow_unused=True)
    return [y.detach(), dx.detach(), torch.zeros_like(x) if ddx is None else ddx]


@pytest.mark.parametrize("op", sorted(OPS))
def test_eager_function_and_library_operator_agree_to_the_second_derivative(fresh_seed, op):
    rng = random.Random(f"{fresh_seed}-{op}")
    for case in range(3):
        sample = OPS[op].tests.sample(rng)
        x = sample.x
        fn = functools.partial(sample.op, backend="fused")
        eager = _derivatives(fn, x)
        with SeenOps() as seen:
            library = _derivatives(fn, x)
        for name, a, b in zip(("value", "dx", "second derivative"), eager, library, strict=True):
            assert torch.equal(a, b), (  # the same functions run either way
                f"{op} case {case} (x {tuple(x.shape)}): the {name}s differ by "
                f"{(a - b).abs().max().item():.3e}")
        # (composite operators, made of ATen calls, are decomposed before a mode sees them)
        assert {f"fastpgan::{name}" for name in seen.fastpgan} <= set(OPS[op].library_ops)


def _profiled_names(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.name for event in prof.events()}


def test_an_eager_call_does_not_cross_the_dispatcher_for_a_fused_op():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    b = torch.randn(8, requires_grad=True)

    def step():
        bias_act(x, b, act="lrelu", pixel_norm=True, backend="fused").sum().backward()
    names = _profiled_names(step)
    assert not {n for n in names if n.startswith("fastpgan::")}, names
    assert "bias_act_eagerBackward" in names, names  # the eager Function's autograd node
    with SeenOps() as seen:
        step()
    assert seen.fastpgan == ["bias_act", "bias_act_backward"]


def test_a_call_without_gradients_builds_no_autograd_node():
    x, b = torch.randn(2, 8, 4, 4), torch.randn(8, requires_grad=True)
    with torch.no_grad():
        y = bias_act(x, b, act="lrelu", backend="fused")
    assert y.grad_fn is None and not y.requires_grad
    assert bias_act(x, b.detach(), backend="fused").grad_fn is None
    assert bias_act(x, b, backend="fused").grad_fn is not None


def test_meta_tensors_and_torch_compile_take_the_library_operator():
    x = torch.randn(2, 8, 4, 4, device="meta", requires_grad=True)
    y = bias_act(x, torch.randn(8, device="meta"), pixel_norm=True, backend="fused")
    assert y.shape == x.shape and y.is_meta  # answered by the fake: no launch on meta
    assert type(y.grad_fn).__name__ != "bias_act_eagerBackward"

    calls = []
    op = FusedOp("dispatch_test_double", _double, fake=lambda x: torch.empty_like(x),
                 setup_context=lambda ctx, inputs, output: None,
                 backward=lambda ctx, grad: grad * 2)
    library_op = op.library_op
    op.library_op = lambda *args: calls.append("library") or library_op(*args)
    x = torch.randn(3)
    assert torch.equal(op(x), 2 * x) and calls == []
    compiled = torch.compile(lambda t: op(t) + 1, fullgraph=True, backend="eager")
    assert torch.equal(compiled(x), 2 * x + 1) and calls == ["library"]


def _double(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


def test_default_arguments_of_the_implementation_apply_to_either_entry_point():
    x, b = torch.randn(2, 8, 4, 4, requires_grad=True), torch.randn(8)
    from fastpgan.ops.epilogue import _bias_act_op
    # provider (the last argument) defaults to "triton" in both
    y_eager, _ = _bias_act_op(x, b, 0, 0.2, 1.0, None, False, 1e-8)
    with SeenOps():
        y_library, _ = _bias_act_op(x, b, 0, 0.2, 1.0, None, False, 1e-8)
    assert torch.equal(y_eager, y_library)
