"""fuse(model): the normalization, activation and bias chains of existing GAN code, fused.

What is fused, in place, wherever a module's output feeds only the next one:

- ``BatchNorm | InstanceNorm -> ReLU | LeakyReLU | Tanh | Sigmoid``: the normalization
  becomes the matching :mod:`fastpgan.nn.norm_act` layer (its class swapped: the same
  object, parameters and buffers) and the activation an ``nn.Identity``, so every
  ``state_dict`` key stays where it was;
- ``Conv (with a bias) -> Norm [-> Act]``: the convolution runs without its bias, which
  the normalization adds inside its kernels (a pass over memory and the bias-gradient
  reduction saved);
- ``Conv (with a bias) -> ReLU | LeakyReLU``: the convolution runs without its bias and a
  :func:`fastpgan.ops.bias_act` epilogue adds it and applies the activation.

Conv is ``nn.Conv1d/2d/3d`` or ``nn.ConvTranspose1d/2d/3d``. How chains are found: the
children of an ``nn.Sequential`` (one that keeps torch's forward) run in order, each on
the previous one's output, so consecutive children are a chain. Any other module with
children is traced with ``torch.fx``, its children as leaves: a child whose output goes
only to the next child, which takes nothing else, is a link. A forward that cannot be
traced (control flow on values) is left alone.

Refused, left alone and listed in the report: a module used in several places (an
activation module shared by two blocks would lose one of its uses), a module with hooks
(they would see other values), a normalization whose output is also used elsewhere (an
in-place activation would overwrite what the other use reads), subclasses of the torch
classes (their forward may differ), SyncBatchNorm, and activations with no fused form.

Parameters and buffers are the same objects afterwards, so an optimizer built before
``fuse`` still trains the model, and a checkpoint of either loads into the other.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from fastpgan.nn.norm_act import NORM_ACT_LAYERS
from fastpgan.ops.epilogue import Epilogue, apply_epilogue

__all__ = ["FuseReport", "fuse"]

_ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.LeakyReLU: "lrelu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
"""The activation modules fused, by exact type, and their fastpgan names."""

_NOT_FUSED_ACTIVATIONS = (nn.ELU, nn.GELU, nn.PReLU, nn.ReLU6, nn.SELU, nn.SiLU, nn.Softplus,
                          nn.Mish, nn.Hardtanh, nn.CELU, nn.RReLU)
"""Activations seen after normalizations that have no fused form (reported)."""


class _BiasAfterConvolution:
    """A torch convolution whose bias fastpgan applies: in a bias_act epilogue with an
    activation, or (``epilogue`` None) in the next normalization's kernels."""

    epilogue: Epilogue | None
    backend: str | None

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        """The convolution without its bias, then the epilogue if it has one."""
        if isinstance(self, nn.modules.conv._ConvTransposeNd):
            dims = len(self.kernel_size)
            output_padding = self._output_padding(x, output_size, self.stride, self.padding,
                                                  self.kernel_size, dims, self.dilation)
            transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
            y = transpose(x, self.weight, None, self.stride, self.padding, output_padding,
                          self.groups, self.dilation)
        else:
            y = self._conv_forward(x, self.weight, None)
        if self.epilogue is None:
            return y
        return apply_epilogue(y, self.bias, self.epilogue, backend=self.backend,
                              op=type(self).__name__)

    def extra_repr(self) -> str:
        """torch's settings and where the bias goes."""
        where = ("bias in the next normalization" if self.epilogue is None
                 else f"bias_act({self.epilogue.describe()})")
        return f"{super().extra_repr()}, {where}"


FUSED_CONVOLUTIONS: dict[type[nn.Module], type[nn.Module]] = {}
"""Each torch convolution class -> its subclass whose bias fastpgan applies."""
for _base in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d):
    FUSED_CONVOLUTIONS[_base] = type(f"Fused{_base.__name__}", (_BiasAfterConvolution, _base),
                                     {"__module__": __name__})
    globals()[f"Fused{_base.__name__}"] = FUSED_CONVOLUTIONS[_base]  # picklable by name


@dataclass
class FuseReport:
    """What :func:`fuse` did: each fused chain, and each one it left alone and why.

    Attributes:
        fused: one line per fused chain, e.g. "main.1 -> main.2: BatchNorm2d -> ReLU".
        refused: one line per chain left alone, with the reason.
    """

    fused: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"fused {len(self.fused)} chain(s):", *(f"  {line}" for line in self.fused)]
        if self.refused:
            lines += [f"left {len(self.refused)} alone:", *(f"  {line}" for line in self.refused)]
        return "\n".join(lines)


def fuse(model: nn.Module, *, report: bool = False,
         backend: str | None = None) -> nn.Module | tuple[nn.Module, FuseReport]:
    """Fuses, in place, every chain of ``model`` it can fuse safely (see the module
    docstring); returns the model, or (model, :class:`FuseReport`) with ``report``.

    Args:
        model: any module; its outputs, gradients and running statistics stay what they
            were (to the kernels' rounding), in training and in evaluation mode.
        report: also return what was fused and what was left alone, and why.
        backend: the fused layers' backend ("auto", "fused", "reference"), None for the
            process default.
    """
    uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    summary = FuseReport()
    for prefix, parent in list(model.named_modules()):
        links = _links(parent, prefix, summary)
        _fuse_links(parent, prefix, links, uses, backend, summary)
    return (model, summary) if report else model


def _links(parent: nn.Module, prefix: str, summary: FuseReport) -> list[tuple[str, str]]:
    """(a, b) for each pair of parent's children where b takes a's output and nothing
    else, and a's output goes nowhere else."""
    children = list(parent.named_children())
    if not children or not any(_interesting(m) for _, m in children):
        return []
    if isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
        return [(a, b) for (a, _), (b, _) in itertools.pairwise(children)]
    try:
        graph = _ChildrenAsLeaves().trace(parent)
    except Exception as exc:  # any failure to trace leaves the module as it is
        summary.refused.append(f"{prefix or type(parent).__name__}: its forward cannot be "
                               f"traced ({type(exc).__name__}: {str(exc)[:120]}); its "
                               f"children are left alone")
        return []
    links = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and users[0].args == (node,) \
                and not users[0].kwargs:
            links.append((node.target, users[0].target))
        elif isinstance(parent.get_submodule(node.target), tuple(NORM_ACT_LAYERS)) and any(
                u.op == "call_module" and _is_activation(parent.get_submodule(u.target))
                for u in users):
            summary.refused.append(
                f"{_qualified(prefix, node.target)}: its output is also used elsewhere "
                f"({', '.join(str(u) for u in users)}); an activation after it, in place or "
                f"not, is left alone")
    return links


class _ChildrenAsLeaves(torch.fx.Tracer):
    """Traces a module's own forward, calling each child as one opaque step."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _interesting(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.modules.conv._ConvNd,
                               *_ACTIVATIONS, *_NOT_FUSED_ACTIVATIONS))


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, (*_ACTIVATIONS, *_NOT_FUSED_ACTIVATIONS))


def _qualified(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _fuse_links(parent: nn.Module, prefix: str, links: list[tuple[str, str]],
                uses: Counter, backend: str | None, summary: FuseReport) -> None:
    """Fuses Norm -> Act links, then moves Conv biases into the norms they feed and into
    activations' epilogues."""
    for a, b in links:
        norm, act = parent.get_submodule(a), parent.get_submodule(b)
        if not isinstance(norm, nn.modules.batchnorm._NormBase) or not _is_activation(act):
            continue
        what = _chain(prefix, a, b, norm, act)
        reason = (_refusal(norm, uses) or _refusal(act, uses) or _norm_refusal(norm)
                  or _activation_refusal(act))
        if reason:
            summary.refused.append(f"{what}: {reason}")
            continue
        norm.__class__ = NORM_ACT_LAYERS[type(norm)]
        norm._set_activation(_ACTIVATIONS[type(act)], getattr(act, "negative_slope", 0.2),
                             backend)
        parent._modules[b] = nn.Identity()
        summary.fused.append(what)
    for a, b in links:
        conv, nxt = parent.get_submodule(a), parent.get_submodule(b)
        if type(conv) not in FUSED_CONVOLUTIONS or conv.bias is None or _refusal(conv, uses):
            continue
        what = _chain(prefix, a, b, conv, nxt)
        if type(nxt) in NORM_ACT_LAYERS and not (_refusal(nxt, uses) or _norm_refusal(nxt)):
            nxt.__class__ = NORM_ACT_LAYERS[type(nxt)]  # a normalization with no activation
            nxt._set_activation("linear", 0.2, backend)
        if type(nxt) in NORM_ACT_LAYERS.values():
            _swap_convolution(conv, None, backend)
            nxt.add_bias_of(conv)
            summary.fused.append(f"{what}: the bias added in the normalization")
        elif _is_activation(nxt):
            reason = _refusal(nxt, uses) or _activation_refusal(nxt)
            if reason is None:
                epilogue = Epilogue(_ACTIVATIONS[type(nxt)], getattr(nxt, "negative_slope", 0.2))
                try:
                    epilogue.checked("fuse")
                except ValueError as exc:
                    reason = str(exc)
            if reason:
                summary.refused.append(f"{what}: {reason}")
                continue
            _swap_convolution(conv, epilogue, backend)
            parent._modules[b] = nn.Identity()
            summary.fused.append(f"{what}: bias and activation in bias_act")


def _chain(prefix: str, a: str, b: str, first: nn.Module, second: nn.Module) -> str:
    return (f"{_qualified(prefix, a)} -> {_qualified(prefix, b)}: {type(first).__name__} -> "
            f"{type(second).__name__}")


def _swap_convolution(conv: nn.Module, epilogue: Epilogue | None, backend: str | None) -> None:
    conv.__class__ = FUSED_CONVOLUTIONS[type(conv)]
    conv.epilogue, conv.backend = epilogue, backend


def _refusal(module: nn.Module, uses: Counter) -> str | None:
    """Why ``module`` must not be replaced, or None."""
    if uses[id(module)] > 1:
        return f"{type(module).__name__} module used in {uses[id(module)]} places"
    hooks = [name for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                               "_backward_pre_hooks") if getattr(module, name, None)]
    if hooks:
        return f"{type(module).__name__} has hooks ({', '.join(h.strip('_') for h in hooks)})"
    return None


def _norm_refusal(norm: nn.Module) -> str | None:
    if isinstance(norm, nn.SyncBatchNorm):
        return "SyncBatchNorm's statistics across processes are not fused"
    if type(norm) not in NORM_ACT_LAYERS:
        return f"{type(norm).__name__} is not a torch normalization class (a subclass may " \
               "change forward)"
    return None


def _activation_refusal(act: nn.Module) -> str | None:
    """Why the activation module ``act`` does not fuse, or None."""
    if type(act) in _ACTIVATIONS:
        slope = getattr(act, "negative_slope", 0.0)
        return None if slope >= 0 else f"negative_slope {slope} < 0 is not fused"
    if isinstance(act, _NOT_FUSED_ACTIVATIONS):
        return f"{type(act).__name__} has no fused form"
    return f"{type(act).__name__} is a subclass of a torch activation (its forward may differ)"
