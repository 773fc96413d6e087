"""CUDA-only behaviour: dispatch to the kernels, real sizes, inductor and CUDA graphs."""

import pytest
import torch
from helpers import assert_close, leaf64

from fastpgan.ops import bias_act, bias_act_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_dispatches_cuda_tensors_to_the_kernels(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("reference path taken for a CUDA tensor")

    monkeypatch.setattr("fastpgan.ops.epilogue.epilogue_reference", fail)
    y = bias_act(torch.randn(4, 8, 5, 5, device="cuda"), backend="auto")
    assert y.is_cuda


@pytest.mark.parametrize("channels_last", [False, True])
def test_progan_sized_bfloat16_step_matches_float64(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(16, 512, 32, 32, device="cuda", dtype=torch.bfloat16)
    x = x.to(memory_format=fmt).requires_grad_()
    b = torch.randn(512, device="cuda", requires_grad=True)
    y = bias_act(x, b, pixel_norm=True)
    dy = torch.randn_like(y)
    dx, db = torch.autograd.grad(y, (x, b), dy)
    x64, b64 = leaf64(x), leaf64(b)
    y64 = bias_act_reference(x64, b64, pixel_norm=True)
    dx64, db64 = torch.autograd.grad(y64, (x64, b64), dy.double().cpu())
    assert_close(y, y64, 1e-2, "value")
    assert_close(dx, dx64, 1e-2, "dx")
    assert_close(db, db64, 1e-2, "db")


def test_inductor_compiles_through_the_op():
    x = torch.randn(8, 64, 16, 16, device="cuda", requires_grad=True)
    b = torch.randn(64, device="cuda", requires_grad=True)

    def loss(x, b):
        return (bias_act(x * 2, b, pixel_norm=True) ** 2).mean()

    compiled = torch.compile(loss, fullgraph=True)
    expected = torch.autograd.grad(loss(x, b), (x, b))
    actual = torch.autograd.grad(compiled(x, b), (x, b))
    for name, g, ref in zip(("dx", "db"), actual, expected, strict=True):
        assert_close(g, ref, 1e-5, name)


def test_cuda_graph_replays_forward_and_backward():
    x = torch.randn(4, 32, 8, 8, device="cuda", requires_grad=True)
    b = torch.randn(32, device="cuda", requires_grad=True)
    dy = torch.randn(4, 32, 8, 8, device="cuda")

    def step():
        return torch.autograd.grad(bias_act(x, b, pixel_norm=True), (x, b), dy)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = step()
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    graph.replay()
    expected = step()
    for name, g, ref in zip(("dx", "db"), static, expected, strict=True):
        assert_close(g, ref, 1e-6, name)


@pytest.mark.parametrize("channels_last", [False, True])
def test_extension_resampling_at_progan_size_in_bfloat16(channels_last):
    """The CUDA epilogue kernels and the cuDNN strided convolutions, via backend='auto'."""
    from fastpgan.extension import extension_status
    from fastpgan.ops import conv2d_downsample, upsample_conv2d, upsample_conv2d_reference

    assert extension_status().with_cuda, extension_status()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(8, 128, 16, 16, device="cuda", dtype=torch.bfloat16)
    x = x.to(memory_format=fmt).requires_grad_()
    w = torch.randn(64, 128, 3, 3, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    kw = dict(weight_gain=(2 / (128 * 9)) ** 0.5, act="lrelu", pixel_norm=True)
    y = upsample_conv2d(x, w, b, **kw)
    assert y.is_contiguous(memory_format=fmt)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), dy)
    leaves64 = [leaf64(t) for t in (x, w, b)]
    y64 = upsample_conv2d_reference(*leaves64, **kw)
    grads64 = torch.autograd.grad(y64, leaves64, dy.double().cpu())
    assert_close(y, y64, 1e-2, "value")
    for name, g, g64 in zip(("dx", "dw", "db"), grads, grads64, strict=True):
        assert_close(g, g64, 2e-2, name)
    down = conv2d_downsample(y.detach(), w.detach()[:, :64], None, act="lrelu")
    assert down.shape == (8, 64, 16, 16)
