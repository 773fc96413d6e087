"""fastpgan.ops.norm_act and the BatchNormAct / InstanceNormAct layers: the fused path
against its float64 definition, and the layers against torch's modules."""

import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import TOLERANCE, assert_close, leaf64, random_input, third_order
from torch import nn

from fastpgan.nn import BatchNormAct2d, BatchNormAct3d, InstanceNormAct2d, InstanceNormAct3d
from fastpgan.ops import norm_act, norm_act_reference
from fastpgan.ops.norm_act import norm_act_backward_reference

CASES = [  # (shape, channels_last, instance, batch statistics, act, affine, input bias)
    ((4, 21, 4, 4), False, False, True, "relu", True, False),
    ((4, 21, 4, 4), True, False, True, "lrelu", True, True),
    ((3, 6, 5, 7), True, True, True, "tanh", True, True),
    ((2, 40, 9, 9), False, True, True, "lrelu", False, False),
    ((2, 3, 70, 70), False, True, True, "sigmoid", True, False),  # rows split into chunks
    ((1, 40, 9, 9), True, True, True, "linear", True, True),  # a channels_last batch of one
    ((5, 7), False, False, True, "relu", True, False),  # BatchNorm1d's (N, C)
    ((8, 3, 1, 1), False, False, True, "tanh", True, True),  # 1x1 maps
    ((2, 5, 3, 4, 2), True, False, True, "lrelu", True, True),  # 3-D, channels_last_3d
    ((2, 5, 3, 1, 2), False, True, True, "sigmoid", False, True),
    ((4, 21, 4, 4), True, False, False, "lrelu", True, True),  # running statistics
    ((2, 5, 3, 4, 2), False, True, False, "tanh", True, False),
    ((4, 3, 1, 1, 1), True, False, True, "relu", True, True),  # 1x1x1 maps
]


def _ids(case):
    shape, channels_last, instance, batch_stats, act, affine, input_bias = case
    return (f"{'x'.join(map(str, shape))}{'-cl' if channels_last else ''}-"
            f"{'instance' if instance else 'batch'}-{'train' if batch_stats else 'eval'}-{act}"
            f"{'-affine' if affine else ''}{'-input_bias' if input_bias else ''}")


def _inputs(case, device, dtype=torch.float32):
    """Leaves (x, weight, bias, input_bias), running statistics, and keyword arguments."""
    shape, channels_last, instance, batch_stats, act, affine, with_input_bias = case
    c = shape[1]
    x = random_input(shape, device, dtype, channels_last)

    def leaf(t):
        return t.to(device).requires_grad_()
    weight, bias = ((leaf(1 + 0.3 * torch.randn(c)), leaf(0.3 * torch.randn(c))) if affine
                    else (None, None))
    input_bias = leaf(torch.randn(c)) if with_input_bias else None
    stats = (0.3 * torch.randn(c, device=device), 0.5 + torch.rand(c, device=device))
    kwargs = dict(instance=instance, use_input_stats=batch_stats, act=act, momentum=0.3)
    return (x, weight, bias, input_bias), stats, kwargs


def _call(fn, tensors, stats, kwargs, **more):
    x, weight, bias, input_bias = tensors
    return fn(x, weight, bias, running_mean=stats[0], running_var=stats[1],
              input_bias=input_bias, **kwargs, **more)


def _grads(out, tensors, grad_out=None, **kwargs):
    return torch.autograd.grad(out, [t for t in tensors if t is not None], grad_out, **kwargs)


def _as64(tensors):
    return tuple(None if t is None else leaf64(t) for t in tensors)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_values_gradients_and_running_statistics_match_float64(device, poisoned_outputs, case):
    tensors, stats, kwargs = _inputs(case, device)
    stats64 = tuple(s.double().cpu() for s in stats)
    y = _call(norm_act, tensors, stats, kwargs, backend="fused")
    grad_y = torch.randn_like(y)
    tensors64 = _as64(tensors)
    y64 = _call(norm_act_reference, tensors64, stats64, kwargs)
    assert y.dtype == tensors[0].dtype
    assert_close(y, y64, 1e-5, "value")
    grads, grads64 = _grads(y, tensors, grad_y), _grads(y64, tensors64, grad_y.double().cpu())
    names = [n for n, t in zip(("dx", "dweight", "dbias", "dinput_bias"), tensors, strict=True)
             if t is not None]
    for name, g, g64 in zip(names, grads, grads64, strict=True):
        if name == "dinput_bias" and kwargs["use_input_stats"]:
            # normalized by the batch's own statistics a constant shift has no effect: the
            # fused gradient is exactly 0, the reference's 0 up to rounding
            assert torch.equal(g, torch.zeros_like(g)) and g64.abs().max() < 1e-10, name
        else:
            assert_close(g, g64, 1e-5, name)
    for name, s, s64 in zip(("running_mean", "running_var"), stats, stats64, strict=True):
        assert_close(s, s64, 1e-6, name)
    if case[1]:
        layout = torch.channels_last_3d if y.dim() == 5 else torch.channels_last
        assert y.is_contiguous(memory_format=layout) and grads[0].is_contiguous(
            memory_format=layout)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[8], CASES[10]], ids=_ids)
def test_reference_is_torchs_batch_and_instance_norm(case):
    """The written-out reference against F.batch_norm / F.instance_norm and the torch
    activations, in float64 and NCHW (where torch's CPU instance norm is right)."""
    tensors, stats, kwargs = _inputs(case, "cpu", torch.float64)
    x, weight, bias, input_bias = (None if t is None else t.detach().double().requires_grad_()
                                   for t in tensors)
    ours = [s.double() for s in stats]
    theirs = [s.double() for s in stats]
    y = norm_act_reference(x, weight, bias, running_mean=ours[0], running_var=ours[1],
                           input_bias=input_bias, **kwargs)
    h = x.contiguous() + (0 if input_bias is None else input_bias.view(1, -1, *[1] *
                                                                       (x.dim() - 2)))
    norm = F.instance_norm if kwargs["instance"] else F.batch_norm
    h = norm(h, *theirs, weight, bias, kwargs["use_input_stats"], kwargs["momentum"], 1e-5)
    expected = {"relu": F.relu, "lrelu": lambda t: F.leaky_relu(t, 0.2), "tanh": torch.tanh,
                "linear": lambda t: t, "sigmoid": torch.sigmoid}[kwargs["act"]](h)
    assert_close(y, expected, 1e-12, "value")
    leaves = [t for t in (x, weight, bias) if t is not None]
    grad_y = torch.randn_like(y)
    for g, ref in zip(torch.autograd.grad(y, leaves, grad_y),
                      torch.autograd.grad(expected, leaves, grad_y), strict=True):
        assert_close(g, ref, 1e-10, "gradient")
    for s, ref in zip(ours, theirs, strict=True):
        assert_close(s, ref, 1e-12, "running statistic")


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[10]], ids=_ids)
def test_closed_form_backward_matches_autograd_of_the_reference(case):
    tensors, stats, kwargs = _inputs(case, "cpu", torch.float64)
    tensors = _as64(tensors)
    stats = tuple(s.double() for s in stats)
    y = _call(norm_act_reference, tensors, [s.clone() for s in stats], kwargs)
    grad_y = torch.randn_like(y)
    x, weight, bias, input_bias = tensors
    given = None if kwargs["use_input_stats"] else stats
    dx, rows = norm_act_backward_reference(
        grad_y, x, weight, bias, input_bias, *(given or (None, None)),
        instance=kwargs["instance"], act=kwargs["act"], negative_slope=0.2, eps=1e-5)
    expected = _grads(y, (x, weight, bias), grad_y)
    assert_close(dx, expected[0], 1e-12, "dx")
    assert_close(rows[1].sum(0), expected[1], 1e-12, "dweight")
    assert_close(rows[0].sum(0), expected[2], 1e-12, "dbias")


def test_plain_backward_runs_the_fused_kernel(device, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("closed-form reference used for a first-order backward")

    monkeypatch.setattr(sys.modules["fastpgan.ops.norm_act"], "norm_act_backward_reference",
                        fail)
    tensors, stats, kwargs = _inputs(CASES[1], device)
    _call(norm_act, tensors, stats, kwargs, backend="fused").square().sum().backward()
    assert torch.isfinite(tensors[0].grad).all()


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[10]], ids=_ids)
def test_second_gradients_match_float64(device, case):
    """An R1 / WGAN-GP penalty through the layer: the backward is differentiated again."""
    tensors, stats, kwargs = _inputs(case, device)
    head = torch.randn(case[0], device=device)

    def penalty(fn, tensors, stats):
        score = (torch.tanh(_call(fn, tensors, stats, kwargs)) * head.to(tensors[0])).sum()
        (grad,) = torch.autograd.grad(score, tensors[0], create_graph=True)
        return grad.square().sum()

    fused = penalty(lambda *a, **k: norm_act(*a, backend="fused", **k), tensors, stats)
    tensors64 = _as64(tensors)
    reference = penalty(norm_act_reference, tensors64, tuple(s.double().cpu() for s in stats))
    assert_close(fused, reference, 1e-5, "penalty")
    grads = _grads(fused, tensors)
    for g, g64 in zip(grads, _grads(reference, tensors64), strict=True):
        if g64.abs().max() < 1e-9:  # the input bias under the batch's statistics: zero,
            assert g.norm() < 1e-5 * grads[0].norm()  # to float32's rounding
        else:
            assert_close(g, g64, 1e-5, "second gradient")


def test_third_order_gradients_match_float64(device):
    """The double backward is itself differentiable: a third derivative is exact too."""
    tensors, stats, kwargs = _inputs(CASES[2], device, torch.float64)
    x, *rest = (None if t is None else t.detach().requires_grad_() for t in tensors)
    fused = third_order(lambda x: _call(norm_act, (x, *rest), stats, kwargs, backend="fused"),
                        x)
    reference = third_order(lambda x: _call(norm_act_reference, (x, *rest), stats, kwargs), x)
    for order, (a, b) in enumerate(zip(fused, reference, strict=True), 1):
        assert_close(a, b, 1e-10, f"order {order}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_within_1e_2_with_float32_statistics(device, poisoned_outputs, dtype):
    tensors, stats, kwargs = _inputs(CASES[1], device, dtype)
    y = _call(norm_act, tensors, stats, kwargs, backend="fused")
    assert y.dtype == dtype and stats[0].dtype == torch.float32
    tensors64 = _as64(tensors)
    y64 = _call(norm_act_reference, tensors64, tuple(s.double().cpu() for s in stats), kwargs)
    assert_close(y, y64, TOLERANCE[dtype], "value")
    grad_y = torch.randn_like(y)
    grads = _grads(y, tensors, grad_y)
    assert grads[0].dtype == dtype
    for g, g64 in zip(grads, _grads(y64, tensors64, grad_y.double().cpu()), strict=True):
        if g64.abs().max() > 1e-9:
            assert_close(g, g64, TOLERANCE[dtype], "gradient")


@pytest.mark.parametrize("instance", [False, True])
def test_large_means_keep_their_precision(device, instance):
    """Values of 1000 with a spread of 0.01: a naive sum(x^2) - sum(x)^2 cancels to noise.
    float32 holds such a mean only to 3e-5, 0.3 % of the spread: the bound is 1e-2."""
    x = 1000 + 0.01 * torch.randn(3, 4, 40, 40, device=device)
    y = norm_act(x, instance=instance, backend="fused")
    assert_close(y, norm_act_reference(x.double().cpu(), instance=instance), 1e-2, "value")


def test_opcheck(device):
    tensors, stats, _ = _inputs(CASES[2], device)
    x, weight, bias, input_bias = (None if t is None else t.detach() for t in tensors)
    for given in (None, stats):
        args = (x, input_bias, weight, bias, *(given or (None, None)), True, 1, 0.0, 1e-5)
        torch.library.opcheck(torch.ops.fastpgan.norm_act.default, args)
        y, mean, var = torch.ops.fastpgan.norm_act(*args)
        if given is None:
            torch.library.opcheck(torch.ops.fastpgan.norm_act_running.default,
                                  (*(s.clone() for s in stats), mean, var, 35, 0.1))
        mean, var = given or (mean, var)
        torch.library.opcheck(torch.ops.fastpgan.norm_act_backward.default,
                              (torch.randn_like(y), x, input_bias, weight, bias, mean, var,
                               given is not None, True, 1, 0.0, 1e-5))


def test_torch_compile_runs_through_without_graph_break(device):
    layer = BatchNormAct2d(21, activation="lrelu", backend="fused").to(device)
    compiled_layer = BatchNormAct2d(21, activation="lrelu", backend="fused").to(device)
    x = random_input((4, 21, 4, 4), device)

    def loss(layer, x):
        return layer(x).square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    for _ in range(2):  # the running statistics updated inside the compiled graph
        expected = torch.autograd.grad(loss(layer, x), [x, layer.weight])
        actual = torch.autograd.grad(compiled(compiled_layer, x), [x, compiled_layer.weight])
        for g, ref in zip(actual, expected, strict=True):
            assert_close(g, ref, 1e-6, "gradient")
    assert_close(compiled_layer.running_var, layer.running_var, 1e-6, "running_var")


@pytest.mark.parametrize("change,message", [
    (dict(x=torch.randn(4)), "x must be \\(N, C, \\.\\.\\.\\) for batch norm"),
    (dict(x=torch.randn(2, 3), instance=True), "x must be \\(N, C, H, \\.\\.\\.\\)"),
    (dict(weight=torch.randn(4)), "weight must have shape \\(3,\\)"),
    (dict(running_mean=torch.zeros(3)), "given together"),
    (dict(use_input_stats=False), "use_input_stats=False normalizes by running_mean"),
    (dict(x=torch.randn(1, 3, 1, 1)), "a row of one value has no variance"),
    (dict(act="gelu"), "the activation must be one of"),
    (dict(momentum=float("nan")), "momentum must be >= 0 and finite"),
])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_bad_arguments_raise_value_error_naming_the_problem(change, message, backend):
    kwargs = dict(x=torch.randn(2, 3, 4, 4))
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        norm_act(backend=backend, **kwargs)


# ------------------------------------------------------------------------------ layers

TORCH_ACTIVATIONS = {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(0.2), "tanh": nn.Tanh(),
                     "sigmoid": nn.Sigmoid()}

LAYERS = [  # (fastpgan layer, torch layer, input shape, torch keyword arguments)
    (BatchNormAct2d, nn.BatchNorm2d, (4, 6, 5, 3), {}),
    (BatchNormAct2d, nn.BatchNorm2d, (4, 6, 5, 3), dict(momentum=None)),  # cumulative
    (BatchNormAct2d, nn.BatchNorm2d, (4, 6, 5, 3), dict(track_running_stats=False)),
    (BatchNormAct3d, nn.BatchNorm3d, (2, 5, 3, 2, 4), dict(affine=False)),
    (InstanceNormAct2d, nn.InstanceNorm2d, (3, 6, 5, 3), {}),
    (InstanceNormAct2d, nn.InstanceNorm2d, (3, 6, 5, 3),
     dict(affine=True, track_running_stats=True)),
    (InstanceNormAct3d, nn.InstanceNorm3d, (2, 5, 3, 2, 4), dict(affine=True)),
]


@pytest.mark.parametrize("act", ["lrelu", "tanh"])
@pytest.mark.parametrize("layer,torch_layer,shape,kwargs", LAYERS,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_layers_equal_the_torch_modules_in_training_and_evaluation(device, layer, torch_layer,
                                                                   shape, kwargs, act):
    ours = layer(shape[1], activation=act, backend="fused", **kwargs).to(device)
    theirs = nn.Sequential(torch_layer(shape[1], **kwargs), TORCH_ACTIVATIONS[act]).to(device)
    assert list(ours.state_dict()) == list(theirs[0].state_dict())
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs[0].load_state_dict(ours.state_dict())
    for mode in ("train", "train", "train", "eval"):
        ours.train(mode == "train"), theirs.train(mode == "train")
        x = (3 * torch.randn(shape) + 1).to(device).requires_grad_()
        x_ref = x.detach().cpu().requires_grad_()
        y, expected = ours(x), theirs(x_ref)
        assert_close(y, expected, 1e-5, f"{mode} value")
        grad_y = torch.randn_like(expected)
        grads = torch.autograd.grad(y, [x, *ours.parameters()], grad_y.to(device))
        expected_grads = torch.autograd.grad(expected, [x_ref, *theirs.parameters()], grad_y)
        for g, ref in zip(grads, expected_grads, strict=True):
            assert_close(g, ref, 1e-5, f"{mode} gradient")
    for name, buffer in ours.state_dict().items():
        assert_close(buffer.float(), theirs[0].state_dict()[name].float(), 1e-6, name)
    theirs[0].load_state_dict(ours.state_dict())  # and back: the same keys and shapes
    ours.load_state_dict(theirs[0].state_dict())


def test_instance_layer_takes_an_unbatched_input_as_torch_does(device):
    layer = InstanceNormAct2d(4, activation="relu", backend="fused").to(device)
    x = torch.randn(4, 5, 6, device=device)
    assert_close(layer(x), torch.relu(nn.InstanceNorm2d(4)(x.cpu())), 1e-5, "value")
