"""fastpgan's fused ops, one module each, all made to one contract.

The contract. An op module opens by saying what the op computes, from which paper or
code, and how its double backward works. It then has:

- ``<op>_reference``: the definition in plain PyTorch, readable and differentiable to any
  order. It is the ground truth of the tests and the path taken wherever the fused one
  does not apply. It checks its arguments as the op does.
- ``<op>``: the public function. It checks its arguments (ValueError or TypeError naming
  the op and the problem), then lets :func:`fastpgan.backend.use_fused` choose between
  the reference and the fused path for this call (``backend="auto" | "fused" |
  "reference"``).
- the fused path, as ``torch.library`` operators in the ``fastpgan`` namespace, so that
  ``torch.compile`` and CUDA graphs run through it without a graph break. An op on
  kernels of ours (provider "triton" or "extension") is a pair of custom ops, the
  forward and its backward, each with a registered fake; the forward's autograd calls
  the backward op, whose own registered autograd is the double backward (WGAN-GP and R1
  differentiate the discriminator's gradient): fused where that is cheap, else autograd
  through the op's closed-form backward in PyTorch (:mod:`fastpgan.ops.autograd`), for a
  reason its module gives in one line. An op made of ATen operations (provider "torch",
  or the extension's stride-2 kernel) is registered as an ATen composite, whose fake tensors
  and every order of gradient come from those operations.
- dtypes and layouts: float32, float16 and bfloat16 in (float64 too), arithmetic in
  float32 (float64 for float64), output in the input's dtype and memory format (NCHW
  and channels_last).
- one :class:`fastpgan.backend.OpInfo` registered at the end of the module, which the
  doctor, these exports and the tests read.

This package imports every op module in it, so a new op needs no line here: its public
function and its reference are exported under their own names, with
:func:`frozen_weights` (derived weights kept while weights do not change).

A fused op's custom-op pair is built by :class:`fastpgan.ops.dispatch.FusedOp`, which
also makes the eager ``torch.autograd.Function`` that eager calls take: same functions,
a fraction of the host cost.
"""

import importlib
import pkgutil

from fastpgan.backend import OPS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from fastpgan.ops.resample_conv import frozen_weights as frozen_weights  # noqa: E402

globals().update({fn.__name__: fn for op in OPS.values() for fn in (op.function, op.reference)})
__all__ = sorted([fn.__name__ for op in OPS.values() for fn in (op.function, op.reference)]
                 + ["frozen_weights"])
