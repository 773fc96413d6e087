"""pixel_norm: ProGAN's per-pixel feature normalization (Karras et al. 2017, section 4.2),
x / sqrt(mean over channels of x^2 + eps).

Fused path: :func:`fastpgan.ops.bias_act` with no bias, a linear activation and pixel
norm on, so both share one pair of custom ops (``fastpgan::bias_act`` and its backward),
one kernel pair and one set of tests. Double backward: bias_act's, whose pixel-norm
second-order terms are closed-form PyTorch expressions.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from fastpgan.backend import HalfPrecisionCase, OpInfo, OpSample, OpTests, register
from fastpgan.ops.epilogue import Epilogue, apply_epilogue, pixel_norm_reference
from fastpgan.ops.samples import activations, feature_map, zero_pixel

__all__ = ["pixel_norm", "pixel_norm_reference"]


def pixel_norm(x: Tensor, eps: float = 1e-8, *, backend: str | None = None) -> Tensor:
    """x / sqrt(mean over dim 1 of x^2 + eps) for (N, C, ...) tensors: (N, C), (N, C, H, W)
    and (N, C, D, H, W).

    Keeps x's dtype and memory format; ``backend`` as in :func:`fastpgan.ops.bias_act`.
    """
    if x.dim() < 2:
        raise ValueError(f"pixel_norm: x must be (N, C, ...) with at least 2 dimensions, "
                         f"got shape {tuple(x.shape)}")
    epilogue = Epilogue(pixel_norm=True, eps=eps).checked("pixel_norm")
    return apply_epilogue(x, None, epilogue, backend=backend, op="pixel_norm")


def _sample(rng: random.Random) -> OpSample:
    c = rng.randint(2, 40)  # over one channel it outputs +-1: a gradient float32 cannot hold
    shape = ((rng.randint(1, 5), c, *feature_map(rng)) if rng.random() < 0.8
             else (rng.randint(1, 9), c))
    return OpSample(pixel_norm, pixel_norm_reference, activations(rng, shape))


register(OpInfo(
    "pixel_norm", pixel_norm, pixel_norm_reference, "triton", kernels="bias_act",
    library_ops=("fastpgan::bias_act", "fastpgan::bias_act_backward"),
    double_backward="bias_act's: closed-form PyTorch second-order terms",
    tests=OpTests(_sample, lambda f: f(torch.randn(3)), "pixel_norm",
                  ("tests/test_pixel_norm.py",),
                  lambda: HalfPrecisionCase(pixel_norm_reference, (zero_pixel(),)))))
