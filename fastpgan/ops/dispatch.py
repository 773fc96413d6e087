"""A fused op's two entry points, built from one set of functions, and the choice per call.

A ``torch.library.custom_op`` is what torch.compile traces through without a graph
break, what fake tensors and dispatch modes see as one op, and what ``opcheck`` tests.
Called eagerly it is costly: every call crosses the dispatcher into Python and a
generated autograd wrapper that binds its arguments by signature (on our 2-core CPU,
launch stubbed, the forward of bias + leaky ReLU on a 1x8x4x4 tensor took about 120 us
through it against 26 us in plain PyTorch; ``bench/host_costs.py`` measures it).
:class:`FusedOp` builds, from the same implementation, fake, ``setup_context`` and
backward, both that operator (``torch.ops.fastpgan.<name>``) and a plain
``torch.autograd.Function``, and each call takes

- the operator whenever something below autograd watches or traces the call: while
  torch.compile traces, under an active TorchDispatchMode (FakeTensorMode, the op
  counters of ``bench/step_overhead.py``, the tests' CUDA-graph emulator), under
  ``torch.func`` transforms, and for meta tensors (which have only a shape: the fake
  answers);
- the Function otherwise: eager calls, and CUDA-graph capture, which records kernels
  and not the host code around them; and the implementation alone where no input needs
  a gradient (inference, ``torch.no_grad``), with no autograd node to build.

Both run the same functions, so they give the same values and gradients at every order;
the tests compare them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch


def watched(first: Any) -> bool:
    """Whether a call whose first argument is ``first`` must go through the library
    operator, and keep no state of its own (see the module docstring)."""
    return (torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0
            or torch._C._are_functorch_transforms_active()
            or (isinstance(first, torch.Tensor) and first.is_meta))


class FusedOp:
    """One fused operator: ``torch.ops.fastpgan.<name>`` and its eager Function.

    Args:
        name: the operator's name in the ``fastpgan`` namespace.
        impl: the implementation, type-annotated as ``torch.library.custom_op`` requires;
            it launches the kernels and returns new tensors (no aliasing of inputs).
        fake: its shape-only twin (``register_fake``).
        setup_context: ``(ctx, inputs, output)``, saving what backward needs.
        backward: ``(ctx, *grad_outputs)`` -> one gradient (or None) per input.

    Calling the object runs the operator with positional arguments (defaults as in
    ``impl``), through whichever entry point applies.
    """

    def __init__(self, name: str, impl: Callable[..., Any], *, fake: Callable[..., Any],
                 setup_context: Callable[..., None], backward: Callable[..., Any]) -> None:
        self.name = name
        self._impl = impl
        self.library_op = torch.library.custom_op(f"fastpgan::{name}", mutates_args=())(impl)
        self.library_op.register_fake(fake)
        self.library_op.register_autograd(backward, setup_context=setup_context)
        self._defaults = tuple(p.default for p in inspect.signature(impl).parameters.values())

        def forward(ctx, *inputs):
            output = impl(*inputs)
            setup_context(ctx, inputs, output)
            return output

        # forward(ctx, ...) rather than a separate setup_context: apply() then skips
        # binding its arguments by signature, the largest part of its cost.
        self.function = type(f"{name}_eager", (torch.autograd.Function,),
                             {"forward": staticmethod(forward),
                              "backward": staticmethod(backward)})

    def __call__(self, *args: Any) -> Any:
        if len(args) < len(self._defaults):
            args += self._defaults[len(args):]
        if watched(args[0]):
            return self.library_op(*args)
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad
                                           for a in args):
            return self.function.apply(*args)
        return self._impl(*args)  # nothing to differentiate: no autograd node to build
