"""fastpgan.ops.bias_act: the fused path against its float64 definition."""

import math

import pytest
import torch
from helpers import TOLERANCE, assert_close, leaf64, random_input, third_order

from fastpgan.ops import bias_act, bias_act_reference
from fastpgan.ops.epilogue import clear_of_clamp_band

SHAPES = [  # (shape, channels_last)
    ((8, 21, 4, 4), False),
    ((8, 21, 4, 4), True),
    ((1, 3, 1, 1), False),
    ((3, 6, 5, 7), True),
    ((2, 16, 3, 5), False),
    ((5, 7), False),
    ((2, 1100, 1, 3), False),  # more channels than one pixel-norm tile
    ((2, 5, 3, 4, 2), False),  # 3-D maps
    ((2, 5, 3, 4, 2), True),  # channels_last_3d
]
CONFIGS = [  # (keyword arguments, with bias)
    (dict(act="lrelu", gain=math.sqrt(2)), True),  # discriminator epilogue
    (dict(act="lrelu", pixel_norm=True), True),  # ProGAN generator epilogue
    (dict(act="linear", pixel_norm=True), False),  # plain pixel norm
    (dict(act="relu", gain=1.3, clamp=0.8), True),
    (dict(act="lrelu", negative_slope=0.1, clamp=0.8, pixel_norm=True), True),
    (dict(act="linear", gain=2.0), False),
    (dict(act="tanh", gain=2.0, clamp=1.5), True),  # DCGAN's and pix2pix's output layer
    (dict(act="sigmoid"), True),
]


def _ids(cfg):
    kwargs, with_bias = cfg
    return "-".join(f"{k}={v}" for k, v in kwargs.items()) + ("-bias" if with_bias else "")


def _inputs(shape, device, channels_last=False, with_bias=True, dtype=torch.float32,
            kwargs=None):
    """Random x and bias (leaves); x kept clear of the band below ``kwargs``' clamp."""
    x = random_input(shape, device, dtype, channels_last)
    b = torch.randn(shape[1], device=device, dtype=dtype).requires_grad_() if with_bias else None
    return clear_of_clamp_band(x, b, kwargs or {}), b


def _grads(out, inputs, grad_out=None, **kwargs):
    leaves = [t for t in inputs if t is not None]
    return torch.autograd.grad(out, leaves, grad_out, **kwargs)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
@pytest.mark.parametrize("shape,channels_last", SHAPES)
def test_values_and_gradients_match_float64(device, poisoned_outputs, shape, channels_last, cfg):
    kwargs, with_bias = cfg
    x, b = _inputs(shape, device, channels_last, with_bias, kwargs=kwargs)
    y = bias_act(x, b, backend="fused", **kwargs)
    grad_y = torch.randn_like(y)
    grads = _grads(y, (x, b), grad_y)

    x64, b64 = leaf64(x), None if b is None else leaf64(b)
    y64 = bias_act_reference(x64, b64, **kwargs)
    grads64 = _grads(y64, (x64, b64), grad_y.double().cpu())

    assert y.dtype == x.dtype
    assert_close(y, y64, 1e-5, "value")
    for name, g, g64 in zip(("dx", "db"), grads, grads64, strict=False):
        assert_close(g, g64, 1e-5, name)
    if channels_last:
        layout = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        assert y.is_contiguous(memory_format=layout)
        assert grads[0].is_contiguous(memory_format=layout)


def _gradient_penalty(fn, x, b, head):
    """WGAN-GP style terms (||d score / dx|| - 1)^2 and <d score / db, 1>, to be
    differentiated again. Kept apart: their sum can cancel to a small number whose
    relative error says nothing about the kernels."""
    score = (torch.tanh(fn(x, b)) * head).sum()
    grads = _grads(score, (x, b), create_graph=True)
    terms = [(grads[0].flatten(1).norm(dim=1) - 1).square().sum()]
    if b is not None:
        terms.append(grads[1].sum())
    return torch.stack(terms)


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c[1] or c[0].get("pixel_norm")], ids=_ids)
@pytest.mark.parametrize("shape,channels_last", [SHAPES[1], SHAPES[3], SHAPES[5], SHAPES[6]])
def test_second_gradients_match_float64(device, shape, channels_last, cfg):
    kwargs, with_bias = cfg
    x, b = _inputs(shape, device, channels_last, with_bias, kwargs=kwargs)
    head = torch.randn(shape, device=device)

    penalty = _gradient_penalty(lambda x, b: bias_act(x, b, backend="fused", **kwargs),
                                x, b, head)
    grads = _grads(penalty.sum(), (x, b))

    x64, b64 = leaf64(x), None if b is None else leaf64(b)
    penalty64 = _gradient_penalty(lambda x, b: bias_act_reference(x, b, **kwargs),
                                  x64, b64, head.double().cpu())
    grads64 = _grads(penalty64.sum(), (x64, b64))

    assert_close(penalty, penalty64, 1e-5, "penalty")
    for name, g, g64 in zip(("d2x", "d2b"), grads, grads64, strict=False):
        assert_close(g, g64, 1e-5, name)


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1], CONFIGS[4], CONFIGS[6]], ids=_ids)
@pytest.mark.parametrize("shape", [(2, 5, 3, 2), (3, 4)])
def test_gradcheck_and_gradgradcheck_in_float64(device, shape, cfg):
    kwargs, with_bias = cfg
    x, b = _inputs(shape, device, with_bias=with_bias, dtype=torch.float64, kwargs=kwargs)

    def fn(x, b):
        return bias_act(x, b, backend="fused", **kwargs)

    assert torch.autograd.gradcheck(fn, (x, b))
    # fast mode: a random projection of the Jacobian of the backward, as the other ops'
    # tests check it (the full one took 40 s a case in Triton's interpreter)
    assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1], CONFIGS[3], CONFIGS[4]], ids=_ids)
def test_half_precision_within_1e_2(device, poisoned_outputs, dtype, cfg):
    kwargs, with_bias = cfg
    x, b = _inputs((4, 24, 6, 5), device, True, with_bias, dtype, kwargs=kwargs)
    y = bias_act(x, b, backend="fused", **kwargs)
    grad_y = torch.randn_like(y)
    grads = _grads(y, (x, b), grad_y)
    x64, b64 = leaf64(x), leaf64(b)
    y64 = bias_act_reference(x64, b64, **kwargs)
    grads64 = _grads(y64, (x64, b64), grad_y.double().cpu())
    assert y.dtype == dtype and grads[0].dtype == dtype and grads[1].dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    tol = TOLERANCE[dtype]
    assert_close(y, y64, tol, "value")
    assert_close(grads[0], grads64[0], tol, "dx")
    assert_close(grads[1], grads64[1], tol, "db")


def test_float32_bias_with_bfloat16_activations(device):
    """Under autocast a conv gives bf16 activations while the bias parameter stays fp32."""
    x = random_input((2, 8, 3, 3), device, torch.bfloat16)
    b = torch.randn(8, device=device).requires_grad_()
    y = bias_act(x, b, pixel_norm=True, backend="fused")
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and b.grad.dtype == torch.float32
    ref = bias_act_reference(leaf64(x), leaf64(b), pixel_norm=True)
    assert_close(y, ref, 1e-2, "value")


def test_empty_batch(device):
    x, b = _inputs((0, 5, 2, 2), device)
    y = bias_act(x, b, pixel_norm=True, backend="fused")
    y.sum().backward()
    assert y.shape == x.shape and torch.equal(b.grad, torch.zeros_like(b))


def test_opcheck(device):
    x, b = _inputs((3, 6, 2, 5), device, channels_last=True)
    for act, pixel_norm in ((0, False), (0, True), (1, False)):  # leaky ReLU; tanh
        args = (x, b, act, 0.2, 1.0, None, pixel_norm, 1e-8)
        torch.library.opcheck(torch.ops.fastpgan.bias_act.default, args)
        y, r = torch.ops.fastpgan.bias_act(*args)
        bwd_args = (torch.randn_like(y), y.detach(), r.detach() if pixel_norm else None,
                    None, True, act, 0.2, 1.0, None)
        torch.library.opcheck(torch.ops.fastpgan.bias_act_backward.default, bwd_args)


def test_torch_compile_runs_through_without_graph_break(device):
    x, b = _inputs((2, 12, 4, 4), device)

    def loss(x, b):
        return bias_act(x, b, pixel_norm=True, backend="fused").square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    expected = _grads(loss(x, b), (x, b))
    actual = _grads(compiled(x, b), (x, b))
    for name, g, ref in zip(("dx", "db"), actual, expected, strict=True):
        assert_close(g, ref, 1e-6, name)


@pytest.mark.parametrize("bad,message", [
    (dict(x_shape=(5,)), "at least 2 dimensions"),
    (dict(bias_shape=(4,)), "bias must have shape"),
    (dict(act="gelu"), "activation must be one of"),
    (dict(negative_slope=-0.1), "negative_slope"),
    (dict(gain=0.0), "gain must be > 0"),
    (dict(clamp=-1.0), "clamp must be > 0"),
])
def test_bad_arguments_raise_value_error_naming_the_problem(bad, message):
    bad = dict(bad)
    x = torch.randn(bad.pop("x_shape", (2, 3, 4, 4)))
    b = torch.randn(bad.pop("bias_shape", (3,))) if x.dim() > 1 else None
    with pytest.raises(ValueError, match=message):
        bias_act(x, b, backend="reference", **bad)


def test_integer_input_raises_type_error():
    with pytest.raises(TypeError, match="floating-point"):
        bias_act(torch.ones(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("shape", [(8, 21, 4, 4), (2, 1100, 1, 3)])
def test_deterministic_mode_sums_bias_gradient_in_fixed_order(device, shape):
    """torch.use_deterministic_algorithms swaps the atomic bias-gradient sum for partials."""
    x, b = _inputs(shape, device)
    dy = torch.randn(shape, device=device)
    x64, b64 = leaf64(x), leaf64(b)
    expected = _grads(bias_act_reference(x64, b64, pixel_norm=True), (x64, b64),
                      dy.double().cpu())[1]

    def bias_grad():
        return _grads(bias_act(x, b, pixel_norm=True, backend="fused"), (x, b), dy)[1]

    atomic = bias_grad()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = bias_grad(), bias_grad()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(first, second)
    assert_close(first, expected, 1e-5, "deterministic db")
    assert_close(atomic, expected, 1e-5, "atomic db")


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1], CONFIGS[4], CONFIGS[6]], ids=_ids)
def test_third_order_gradients_match_float64(device, cfg):
    """The backward's own derivative is differentiable: a third derivative is exact too."""
    kwargs, with_bias = cfg
    x, b = _inputs((3, 5, 2, 3), device, with_bias=with_bias, dtype=torch.float64,
                   kwargs=kwargs)
    fused = third_order(lambda x: bias_act(x, b, backend="fused", **kwargs), x)
    reference = third_order(lambda x: bias_act_reference(x, b, **kwargs), x)
    for order, (a, g) in enumerate(zip(fused, reference, strict=True), 1):
        # Triton passes the scalars (slope, gain) as float32: 0.2 and sqrt(2) are
        # rounded to about 3e-8, the bound on float64 results here
        assert_close(a, g, 1e-6, f"order {order}")
