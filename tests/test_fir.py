"""The FIR resampling ops (fastpgan.ops.fir) against their definitions, and the
definitions against a direct sum written out here."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from helpers import TOLERANCE, assert_close, leaf64, random_input

from fastpgan.ops import (
    conv2d_downsample_reference,
    fir_conv2d_downsample,
    fir_conv2d_downsample_reference,
    fir_upsample2d,
    fir_upsample2d_reference,
    fir_upsample_conv2d,
    fir_upsample_conv2d_reference,
    frozen_weights,
    modulated_conv2d,
    modulated_conv2d_reference,
    upsample_conv2d_reference,
)
from fastpgan.ops.fir import upfirdn2d_reference

OPS = {"up": (fir_upsample_conv2d, fir_upsample_conv2d_reference),
       "down": (fir_conv2d_downsample, fir_conv2d_downsample_reference)}
TAPS = [(1, 3, 3, 1), (1, 2, 5, 3), (2, -1, 4, 1, 0.5, 3)]  # asymmetric: orientation shows
EPILOGUES = {"none": {}, "lrelu-gain-clamp": dict(act="lrelu", gain=1.41, clamp=0.9,
                                                  weight_gain=0.4)}
CASES = [  # (x shape, out channels, kernel, channels_last, bias)
    ((2, 3, 4, 4), 5, 3, False, True),
    ((2, 3, 6, 10), 4, 3, True, True),  # not square
    ((3, 4, 2, 2), 2, 1, False, False),  # 1x1 kernel (StyleGAN2's residual skip)
    ((1, 2, 8, 6), 3, 5, True, True),  # batch 1, 5x5 kernel
]


def _direct_upfirdn(x, f2d, up, down, pad):
    """upfirdn2d as a sum over input pixels and taps: out[p] = sum over input pixels m
    and taps t with up*m + pad_left + t_offset = down*p + (T - 1) of x[m] f[t]."""
    n, c, h, w = x.shape
    t = f2d.shape[0]
    big_h, big_w = h * up + pad[2] + pad[3], w * up + pad[0] + pad[1]
    out = torch.zeros(n, c, (big_h - t) // down + 1, (big_w - t) // down + 1, dtype=x.dtype)
    for oy, ox in itertools.product(range(out.shape[2]), range(out.shape[3])):
        for my, mx in itertools.product(range(h), range(w)):
            # position of x[my, mx] in the upsampled, padded map, relative to the window
            dy, dx = my * up + pad[2] - down * oy, mx * up + pad[0] - down * ox
            if 0 <= dy < t and 0 <= dx < t:  # true convolution: the filter reversed
                out[:, :, oy, ox] += x[:, :, my, mx] * f2d[t - 1 - dy, t - 1 - dx]
    return out


@pytest.mark.parametrize("taps", TAPS[:2])
@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (2, 2, (0, 3, 1, -1))])
def test_upfirdn2d_reference_is_the_direct_sum(taps, up, down, pad):
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    t = torch.tensor(taps, dtype=torch.float64)
    f2d = torch.outer(t, t) / t.sum() ** 2 * 3.0
    expected = _direct_upfirdn(x, f2d, up, down, pad)
    got = upfirdn2d_reference(x, taps, up=up, down=down, padding=pad, gain=3.0)
    assert_close(got, expected, 1e-12, "upfirdn2d")


def test_box_taps_are_progans_nearest_and_average_pool():
    x = torch.randn(2, 3, 6, 4, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    assert_close(fir_upsample_conv2d_reference(x, w, taps=(1, 1)),
                 upsample_conv2d_reference(x, w), 1e-12, "up")
    assert_close(fir_conv2d_downsample_reference(x, w, taps=(1, 1)),
                 conv2d_downsample_reference(x, w), 1e-12, "down")
    assert_close(fir_upsample2d_reference(x, (1, 1)),
                 F.interpolate(x, scale_factor=2, mode="nearest"), 1e-12, "image")


def test_upsampled_constant_keeps_its_level_inside():
    up = fir_upsample2d_reference(torch.ones(1, 1, 6, 6, dtype=torch.float64))
    assert up.shape == (1, 1, 12, 12)
    assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8, dtype=torch.float64), 1e-12,
                 "level")


def _inputs(case, device, dtype=torch.float32):
    shape, o, k, channels_last, with_bias = case
    x = random_input(shape, device, dtype, channels_last)
    weight = torch.randn(o, shape[1], k, k, device=device, requires_grad=True)
    bias = torch.randn(o, device=device, requires_grad=True) if with_bias else None
    return x, weight, bias


@pytest.mark.parametrize("epilogue", list(EPILOGUES))
@pytest.mark.parametrize("taps", TAPS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-k{c[2]}"
                         + ("-cl" if c[3] else ""))
@pytest.mark.parametrize("op", list(OPS))
def test_values_and_gradients_match_float64(device, op, case, taps, epilogue):
    fn, reference = OPS[op]
    x, weight, bias = _inputs(case, device)
    settings = dict(EPILOGUES[epilogue], taps=taps)
    y = fn(x, weight, bias, **settings, backend="fused")
    if y.shape[1] > 1 and y.shape[2] * y.shape[3] > 1:  # else both layouts at once
        assert y.is_contiguous(memory_format=torch.channels_last) == case[3], "layout"
    leaves = [t for t in (x, weight, bias) if t is not None]
    grad_y = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, grad_y)
    leaves64 = [leaf64(t) for t in leaves]
    y64 = reference(*leaves64, *([None] if bias is None else []), **settings)
    grads64 = torch.autograd.grad(y64, leaves64, grad_y.double().cpu())
    assert_close(y, y64, 1e-5, "value")
    for name, g, g64 in zip(("dx", "dweight", "dbias")[:len(grads)], grads, grads64,
                            strict=True):
        assert_close(g, g64, 1e-5, name)


@pytest.mark.parametrize("op", list(OPS))
def test_gradcheck_and_gradgradcheck_in_float64(device, op):
    fn = OPS[op][0]
    x, weight, bias = (t.detach().double().requires_grad_()
                       for t in _inputs(((1, 2, 4, 4), 3, 3, False, True), device))

    def call(x, weight, bias):
        return fn(x, weight, bias, act="lrelu", gain=1.41, weight_gain=0.5, backend="fused")

    assert torch.autograd.gradcheck(call, (x, weight, bias))
    assert torch.autograd.gradgradcheck(call, (x, weight, bias), fast_mode=True)


def test_upsample2d_values_gradients_and_second_gradients(device):
    x = random_input((2, 3, 5, 4), device, torch.float64)
    y = fir_upsample2d(x, backend="fused")
    assert_close(y, fir_upsample2d_reference(x), 1e-12, "value")
    assert torch.autograd.gradcheck(lambda t: fir_upsample2d(t, backend="fused"), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fir_upsample2d(t, backend="fused"), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op", list(OPS))
def test_half_precision_within_1e_2(device, op, dtype):
    fn, reference = OPS[op]
    x, weight, bias = _inputs(CASES[1], device, dtype)
    y = fn(x, weight.to(dtype), bias.to(dtype), act="lrelu", gain=1.41, backend="fused")
    assert y.dtype == dtype
    y64 = reference(leaf64(x), leaf64(weight), leaf64(bias), act="lrelu", gain=1.41)
    assert_close(y, y64, TOLERANCE[dtype], "value")


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_upsampling_matches_the_per_sample_definition(device, demodulate):
    x = random_input((3, 4, 4, 5), device, channels_last=True)
    weight = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    styles = (1 + 0.5 * torch.randn(3, 4, device=device)).requires_grad_()
    y = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=True, backend="fused")
    assert y.shape == (3, 6, 8, 10)
    expected = []
    for n in range(3):  # the definition, sample by sample
        w = weight.double().cpu() * styles[n].double().cpu()[None, :, None, None]
        if demodulate:
            w = w * torch.rsqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        expected.append(fir_upsample_conv2d_reference(x[n:n + 1].double().cpu(), w))
    assert_close(y, torch.cat(expected), 1e-5, "value")
    leaves = (x, weight, styles)
    grad_y = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, grad_y)
    leaves64 = [leaf64(t) for t in leaves]
    y64 = modulated_conv2d_reference(*leaves64, demodulate=demodulate, up=True)
    grads64 = torch.autograd.grad(y64, leaves64, grad_y.double().cpu())
    for name, g, g64 in zip(("dx", "dweight", "dstyles"), grads, grads64, strict=True):
        assert_close(g, g64, 1e-5, name)


def test_modulated_upsampling_gradgradcheck(device):
    x = random_input((2, 2, 3, 3), device, torch.float64)
    weight = torch.randn(3, 2, 3, 3, device=device, dtype=torch.float64, requires_grad=True)
    styles = torch.rand(2, 2, device=device, dtype=torch.float64).add(0.5).requires_grad_()

    def call(x, weight, styles):
        return modulated_conv2d(x, weight, styles, up=True, backend="fused")

    assert torch.autograd.gradgradcheck(call, (x, weight, styles), fast_mode=True)


def test_compiles_without_graph_breaks():
    x, weight, bias = _inputs(CASES[0], "cpu")
    for fn, reference in OPS.values():
        compiled = torch.compile(lambda x, w, b, fn=fn: fn(x, w, b, backend="fused"),
                                 fullgraph=True, backend="aot_eager")
        assert_close(compiled(x, weight, bias), reference(x, weight, bias), 1e-5, fn.__name__)


@pytest.mark.parametrize("up", [True, False])
def test_kernel_fold_opcheck(up):
    weight = random_input((4, 3, 3, 3), "cpu")
    torch.library.opcheck(torch.ops.fastpgan.fir_kernel.default, (weight, [1.0, 3.0, 3.0, 1.0],
                                                                  up, 0.5))


def test_frozen_weights_keep_the_folded_kernel():
    x, weight = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)

    def builds():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                fir_upsample_conv2d(x, weight, backend="fused")
        return sum(e.name == "fastpgan::fir_kernel" for e in prof.events())

    assert builds() == 3
    with frozen_weights():
        assert builds() == 1


@pytest.mark.parametrize("call,message", [
    (lambda: fir_upsample_conv2d(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3),
                                 taps=()), "finite filter taps"),
    (lambda: fir_upsample2d(torch.randn(1, 3, 4, 4), (1, float("nan"))), "finite filter taps"),
    (lambda: fir_conv2d_downsample(torch.randn(1, 3, 5, 4), torch.randn(2, 3, 3, 3)),
     "must be even"),
    (lambda: fir_upsample2d(torch.randn(1, 3, 4, 4), (1, -1)), "nonzero sum"),
    (lambda: modulated_conv2d(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3),
                              torch.ones(1, 3), up=True, padding=0), "'same' padding"),
])
def test_bad_arguments_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("taps", [(1, 2, 1), (1,), (1, 3, 3, 1), (2, -1, 4, 1, 0.5)])
def test_any_filter_length_pads_as_nvlabs(taps):
    """A filter of any length t resamples with NVlabs' padding: ((t + 1) // 2, (t - 2) // 2)
    to upsample (gain 4), ((t - 1) // 2, (t - 2) // 2) to downsample (upfirdn2d's
    upsample2d / downsample2d), checked against the direct sum; the convolutions agree
    with their definitions."""
    from fastpgan.ops.fir import fir_downsample2d

    x = torch.randn(2, 3, 6, 4, dtype=torch.float64)
    t = torch.tensor(taps, dtype=torch.float64)
    f2d = torch.outer(t, t) / t.sum() ** 2
    n = len(taps)
    up = (n + 1) // 2, (n - 2) // 2
    assert_close(fir_upsample2d(x, taps, backend="reference"),
                 _direct_upfirdn(x, f2d * 4, 2, 1, (*up, *up)), 1e-12, "up")
    assert_close(fir_upsample2d(x, taps, backend="fused"),
                 _direct_upfirdn(x, f2d * 4, 2, 1, (*up, *up)), 1e-12, "up, fused")
    down = (n - 1) // 2, (n - 2) // 2
    assert_close(fir_downsample2d(x, taps), _direct_upfirdn(x, f2d, 1, 2, (*down, *down)),
                 1e-12, "down")
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    for name, (op, reference) in OPS.items():
        assert_close(op(x, weight, taps=taps, backend="fused"),
                     reference(x, weight, taps=taps), 1e-12, name)
