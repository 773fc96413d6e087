"""A new op needs no table outside its own files: a throwaway op, scaled_copy, registered at
run time, is picked up by every registry-driven suite, the doctor and the GPU call's test
selection; an op that leaves out a declaration is refused, naming it.

scaled_copy(x, scale) = x * scale, a toy in the shape of NVlabs' ops (a reference and a
dispatching op, as their bias_act is a table plus one function). Fused path: torch.mul,
an ATen rewrite. Double backward: autograd through it.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from test_half_precision_references import HALF, check_half_precision
from test_nonfinite import check_non_finite
from test_properties import check_random_shapes
from test_structure import check_contract

from fastpgan.backend import (
    OPS,
    HalfPrecisionCase,
    OpInfo,
    OpSample,
    OpTests,
    register,
    unregister,
    use_fused,
)
from fastpgan.ops.samples import NOT_AN_ACTIVATION, activations, feature_map, zero_pixel

ROOT = Path(__file__).resolve().parent.parent


def scaled_copy_reference(x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """x * scale, for (N, C, H, W) x."""
    if x.dim() != 4:
        raise ValueError(f"scaled_copy: x must be (N, C, H, W), got {tuple(x.shape)}")
    return x * scale


def scaled_copy(x: torch.Tensor, scale: float = 2.0, *,
                backend: str | None = None) -> torch.Tensor:
    """x * scale (backend as every op's)."""
    if not use_fused("scaled_copy", x, backend):
        return scaled_copy_reference(x, scale)
    if x.dim() != 4:
        raise ValueError(f"scaled_copy: x must be (N, C, H, W), got {tuple(x.shape)}")
    return torch.mul(x, scale)


def _sample(rng: random.Random) -> OpSample:
    scale = rng.choice([0.5, 2.0, -3.0])
    shape = (rng.randint(1, 4), rng.randint(1, 9), *feature_map(rng))
    return OpSample(lambda x, **b: scaled_copy(x, scale, **b),
                    lambda x: scaled_copy_reference(x, scale), activations(rng, shape))


def _declarations(**changes) -> dict:
    declared = dict(sample=_sample, bad_call=lambda f: f(NOT_AN_ACTIVATION),
                    bad_call_message="scaled_copy", gpu_tests=("tests/test_registry.py",),
                    half_precision=lambda: HalfPrecisionCase(scaled_copy_reference,
                                                             (zero_pixel(),)))
    return {**declared, **changes}


def _info(**changes) -> OpInfo:
    return OpInfo("scaled_copy", scaled_copy, scaled_copy_reference, "torch", library_ops=(),
                  double_backward="autograd through torch.mul",
                  tests=OpTests(**_declarations(**changes)))


def test_a_registered_op_is_picked_up_by_every_suite_and_the_gpu_call(device):
    info = register(_info())
    try:
        assert "scaled_copy" in sorted(OPS), "the suites parametrize over sorted(OPS)"
        check_contract(info)
        rng = random.Random(0)
        check_random_shapes(info, rng, device, cases=3)
        for value in (float("nan"), float("inf"), -float("inf")):
            check_non_finite(info, rng, device, value, cases=2)
        for dtype in HALF:
            check_half_precision(info, dtype)
        sys.path.insert(0, str(ROOT / "bench"))
        from gpu_run import op_tests

        assert "tests/test_registry.py" in op_tests()
        from fastpgan.doctor import report

        assert any("scaled_copy" in line for line in report())
    finally:
        unregister("scaled_copy")
    assert "scaled_copy" not in OPS


def test_an_op_missing_a_declaration_is_refused_naming_it():
    with pytest.raises(TypeError, match="tests"):
        OpInfo("scaled_copy", scaled_copy, scaled_copy_reference, "torch", library_ops=(),
               double_backward="autograd")
    for missing in ("sample", "bad_call", "bad_call_message", "gpu_tests", "half_precision"):
        declared = _declarations()
        del declared[missing]
        with pytest.raises(TypeError, match=missing):
            OpTests(**declared)
    with pytest.raises(ValueError, match="gpu_tests names no test file"):
        _info(gpu_tests=())


def test_a_suite_fails_an_op_whose_fused_path_is_wrong(device):
    """The registry-driven suites do test what they are given: a fused path off by one
    ulp-free factor fails the random-shape check."""
    def wrong(x, scale=2.0, *, backend=None):
        return scaled_copy(x, scale, backend=backend) * 1.001

    info = OpInfo("scaled_copy", wrong, scaled_copy_reference, "torch", library_ops=(),
                  double_backward="autograd",
                  tests=OpTests(**_declarations(
                      sample=lambda rng: OpSample(lambda x, **b: wrong(x, 2.0, **b),
                                                  lambda x: scaled_copy_reference(x, 2.0),
                                                  activations(rng, (2, 3, 4, 4))))))
    register(info)
    try:
        with pytest.raises(AssertionError, match="scaled_copy case 0"):
            check_random_shapes(info, random.Random(0), device, cases=1)
    finally:
        unregister("scaled_copy")
