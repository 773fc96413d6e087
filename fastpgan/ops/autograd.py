"""The second derivative of a fused backward, computed by autograd through its closed form.

Ops whose second-order terms are not worth a kernel (see each op's docstring for why)
register this as the autograd of their backward op: the first backward always runs the
fused kernel, and only a double backward (WGAN-GP, R1) recomputes the closed-form
backward in plain PyTorch and differentiates it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def closed_form_vjp(closed_form: Callable[..., Sequence[Tensor]],
                    inputs: Sequence[Tensor | None], needed: Sequence[bool],
                    cotangents: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The vector-Jacobian product of ``closed_form`` at ``inputs`` with ``cotangents``.

    Returns, per input, the partial derivative d <cotangents, closed_form(*inputs)> /
    d input where ``needed`` (else None). ``torch.func.vjp`` keeps it a partial
    derivative (an input may itself depend on another, as the incoming gradient depends
    on x) while the result stays differentiable by the outer autograd, so every order of
    derivative exists.
    """
    wanted = [i for i, t in enumerate(inputs) if t is not None and needed[i]]
    if not wanted or all(g is None for g in cotangents):
        return [None] * len(inputs)

    def of_wanted(*tensors: Tensor) -> tuple[Tensor, ...]:
        full = list(inputs)
        for i, t in zip(wanted, tensors, strict=True):
            full[i] = t
        return tuple(closed_form(*full))

    outputs, vjp = torch.func.vjp(of_wanted, *(inputs[i] for i in wanted))
    grads = vjp(tuple(torch.zeros_like(o) if g is None else g
                      for o, g in zip(outputs, cotangents, strict=True)))
    result: list[Tensor | None] = [None] * len(inputs)
    for i, g in zip(wanted, grads, strict=True):
        result[i] = g
    return result
