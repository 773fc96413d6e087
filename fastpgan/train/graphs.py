"""CUDA-graph replay of the training step: the host launches a whole step in one call.

A step (the discriminator's phases, the generator's, both optimizer steps, the EMA and
the statistics' sums) is captured once per variant: its resolution, whether alpha
fades, which discriminator phases it runs (lazy regularization adds one every K-th
step) and its minibatch's shape. Each variant runs ``warmup`` times eagerly first (lazy
state: Adam's moments, the EMA's weight tensor, the statistics' sums, Triton's
compiled kernels), is captured with its minibatch copied into a static input buffer,
and from then on replays with the next minibatch copied into that buffer. Everything
that changes between steps is device data read by the graph: alpha (a 0-d tensor), the
EMA's weight, Adam's step counts (``capturable=True``), the latents and interpolation
weights (drawn from generators registered with each graph).

If a capture fails, the step runs eagerly from then on, after one warning that names
the reason. What would make a capture wrong rather than fail (an fp16 gradient scaler,
which reads its overflow flag on the host; the all-reduce between processes) switches
graphs off before training starts: ``obstacle`` names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import torch
from torch import Tensor

GRAPH_MODES = ("auto", "on", "off")
"""``--cuda-graphs``: auto captures where nothing stands in the way, on insists."""

Result = TypeVar("Result")


def obstacle(device: torch.device, precision: str, world: int, compile: bool,
             checkpoint_activations: bool) -> str | None:
    """Why this run's training step cannot be replayed from a CUDA graph, or None."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device and this run is on {device.type}"
    if precision == "fp16":
        return ("fp16's gradient scaler reads its overflow flag on the host at every step; "
                "use --precision bf16 (or fp32) for CUDA graphs")
    if world > 1:
        return "the gradient all-reduce between processes is not captured; one GPU only"
    if compile:
        return "--compile's generator runs its own graphs; use --compile or CUDA graphs"
    if checkpoint_activations:
        return ("--checkpoint-activations saves and restores the RNG state on the host "
                "in the forward pass (not verified under capture)")
    return None


def graphs_wanted(mode: str, reason: str | None) -> bool:
    """Whether to capture, for ``--cuda-graphs mode`` and the run's ``obstacle``; raises
    ValueError for "on" against an obstacle."""
    if mode not in GRAPH_MODES:
        raise ValueError(f"--cuda-graphs must be one of {GRAPH_MODES}, got {mode!r}")
    if mode == "on" and reason is not None:
        raise ValueError(f"--cuda-graphs on: {reason}")
    return mode != "off" and reason is None


class GraphBackend(Protocol):
    """How a step is warmed up and captured: ``CudaGraphs`` on a GPU; tests give an
    emulator that replays recorded ops on the CPU."""

    def warm(self, step: Callable[[], Result]) -> Result:
        """Runs ``step`` eagerly, as a warm-up before its capture."""

    def capture(self, step: Callable[[], Result]) -> tuple[Callable[[], None], Result]:
        """Records ``step`` without running it: returns the replay function (which runs
        it) and what the step's Python code returned while it was recorded."""


class CudaGraphs:
    """``torch.cuda.CUDAGraph`` captures on a side stream, all in one memory pool.

    One pool serves every variant: a step leaves nothing allocated behind (gradients
    are freed by ``zero_grad(set_to_none=True)``, statistics go into sums made before the
    capture), so graphs that never run at the same time can share their scratch memory.
    ``generators`` are the non-default generators the step draws from; the default one
    is registered by PyTorch itself.
    """

    def __init__(self, generators: Sequence[torch.Generator] = ()) -> None:
        self.generators = list(generators)
        self.pool = torch.cuda.graph_pool_handle()
        self.stream = torch.cuda.Stream()

    def warm(self, step: Callable[[], Result]) -> Result:
        """The step on the side stream the captures use (PyTorch's recipe for warm-up)."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            result = step()
        torch.cuda.current_stream().wait_stream(self.stream)
        return result

    def capture(self, step: Callable[[], Result]) -> tuple[Callable[[], None], Result]:
        """Captures ``step``; thread-local error mode, so that the data loader's pinning
        thread may call CUDA while the main thread captures."""
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph, pool=self.pool, stream=self.stream,
                              capture_error_mode="thread_local"):
            result = step()
        return graph.replay, result


@dataclass
class _Captured(Generic[Result]):
    replay: Callable[[], None]
    inputs: tuple[Tensor, ...]  # the static input buffers the graph reads
    result: Result


class StepGraphs(Generic[Result]):
    """Training steps replayed from graphs, one a variant (see the module's docstring).

    ``run(variant, batch, step)`` runs ``step(batch on the device)``: eagerly for the
    variant's first ``warmup`` calls, then captured and replayed. ``batch`` is a tensor,
    or a tuple of them (images and labels) passed to ``step`` as its arguments.
    ``reset()`` drops every graph; call it when the tensors a step uses are replaced (new
    optimizers, new resolution). ``on_failure`` runs after a failed capture, before the
    eager step (the trainer frees the gradients the capture may have left).
    """

    def __init__(self, backend: GraphBackend, device: torch.device, warmup: int = 2,
                 on_failure: Callable[[], None] = lambda: None) -> None:
        self.backend, self.device, self.warmup = backend, device, warmup
        self.on_failure = on_failure
        self.failure: str | None = None  # why capturing stopped, once it has
        self.captures = self.replays = 0
        self._graphs: dict[Hashable, _Captured[Result]] = {}
        self._eager_runs: dict[Hashable, int] = {}

    def reset(self) -> None:
        """Forgets every graph (and warm-up count); the next steps warm up again."""
        self._graphs.clear()
        self._eager_runs.clear()

    def run(self, variant: Hashable, batch: Tensor | tuple[Tensor, ...],
            step: Callable[..., Result]) -> Result:
        """The step's result (its Python return value, the same for every replay)."""
        inputs = batch if isinstance(batch, tuple) else (batch,)
        captured = self._graphs.get(variant)
        if captured is not None:
            for static, value in zip(captured.inputs, inputs, strict=True):
                static.copy_(value, non_blocking=True)
            captured.replay()
            self.replays += 1
            return captured.result

        def on_device() -> tuple[Tensor, ...]:
            return tuple(t.to(self.device, non_blocking=True) for t in inputs)

        if self.failure is not None:
            return step(*on_device())
        runs = self._eager_runs.get(variant, 0)
        if runs < self.warmup:
            self._eager_runs[variant] = runs + 1
            return self.backend.warm(lambda: step(*on_device()))
        statics = tuple(torch.empty_like(t, device=self.device) for t in inputs)
        for static, value in zip(statics, inputs, strict=True):
            static.copy_(value, non_blocking=True)
        try:
            replay, result = self.backend.capture(lambda: step(*statics))
        except Exception as exc:  # any reason at all: the run goes on eagerly
            self.failure = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"fastpgan-train: capturing the training step in a CUDA graph "
                          f"failed ({self.failure}); the run continues without CUDA graphs",
                          RuntimeWarning, stacklevel=2)
            self._graphs.clear()
            self.on_failure()
            return step(*statics)
        self._graphs[variant] = _Captured(replay, statics, result)
        self.captures += 1
        replay()
        self.replays += 1
        return result
