"""Comparison helpers, small data and tiny training runs shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastpgan.train.config import TrainConfig

# Relative-error bounds against a float64 reference (ARCHITECTURE.md).
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2,
             torch.bfloat16: 1e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN anywhere gives inf."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if torch.isnan(out).any() or torch.isnan(ref).any():
        return float("inf")
    scale = ref.norm().item()
    diff = (out - ref).norm().item()
    return diff / scale if scale > 0 else diff


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> None:
    """Asserts shape equality and a relative error under tol."""
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    err = rel_err(out, ref)
    assert err < tol, f"{what}: relative error {err:.3e} >= {tol:.0e}"


def value_and_gradients(y: torch.Tensor, leaves: list[torch.Tensor],
                        grad_y: torch.Tensor | None = None) -> list[torch.Tensor]:
    """[y, d<grad_y, y>/d leaf for each leaf] on the CPU, a zero gradient for a leaf the
    graph does not reach (a fused model's bias moved into a norm, for one)."""
    grads = torch.autograd.grad(y, leaves, grad_y, allow_unused=True)
    return [y.detach().cpu(), *(torch.zeros_like(t).cpu() if g is None else g.cpu()
                                for t, g in zip(leaves, grads, strict=True))]


def assert_matches_plain(fused: list[torch.Tensor], plain: list[torch.Tensor], what: str) -> None:
    """Each fused value within 1e-5 of the plain model's. Where the plain model's is
    rounding noise around zero (a convolution's bias before a norm by the batch's
    statistics, which cancels it exactly) the fused one must be as small."""
    scale = max(t.norm().item() for t in plain)
    for i, (a, b) in enumerate(zip(fused, plain, strict=True)):
        name = f"{what}: {'value' if i == 0 else f'gradient {i}'}"
        if b.norm() < 1e-5 * scale:
            assert a.norm() < 1e-5 * scale, name
        else:
            assert_close(a, b, 1e-5, name)


def random_input(shape: tuple[int, ...], device: str, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False) -> torch.Tensor:
    """A random leaf tensor (requires grad) in the asked-for memory format
    (channels_last_3d for a 5-D shape)."""
    x = torch.randn(shape, device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last_3d if len(shape) == 5
                 else torch.channels_last)
    return x.requires_grad_()


def leaf64(t: torch.Tensor) -> torch.Tensor:
    """A float64 CPU leaf copy of t, for the reference."""
    return t.detach().double().cpu().requires_grad_()


class StubInception(torch.nn.Module):
    """Stands in for Inception-v3 where the real file is not the point: 299x299 -> 2048."""

    def __init__(self) -> None:
        super().__init__()
        self.project = torch.nn.Conv2d(3, 2048, 13, stride=13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(x)).mean((2, 3))



class StubNVlabsInception(torch.nn.Module):
    """Stands in for NVlabs' inception-2015-12-05.pt: uint8 RGB images of any size ->
    2048 features (``return_features``) or 1008 class probabilities, the output layer's
    bias left out with ``no_output_bias``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.project = torch.nn.Linear(3 * 4 * 4, 2048)
        self.classify = torch.nn.Linear(2048, 1008)
        torch.nn.init.normal_(self.classify.bias, std=10.0)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        if img.dtype != torch.uint8 or img.shape[1] != 3:
            raise ValueError("NVlabs' Inception takes uint8 RGB images")
        pooled = torch.nn.functional.adaptive_avg_pool2d(img.float() / 255, 4).flatten(1)
        features = torch.tanh(self.project(pooled))
        if return_features:
            return features
        logits = torch.nn.functional.linear(features, self.classify.weight) * 60
        if not no_output_bias:
            logits = logits + self.classify.bias
        return logits.softmax(1)


def third_order(fn, x: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of tanh(fn(x)).sum(), of its squared norm, and of the cubed second
    gradient, each with respect to x: first, second and third derivatives of fn."""
    g, = torch.autograd.grad(torch.tanh(fn(x)).sum(), x, create_graph=True)
    h, = torch.autograd.grad(g.square().sum(), x, create_graph=True)
    t, = torch.autograd.grad(h.pow(3).sum(), x)
    return [g, h, t]


class _Recorder(TorchDispatchMode):
    """Runs and records every op below autograd, saving the first value of each tensor
    from before the recording that an op writes into; a host read is refused, as a CUDA
    capture refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.made: set[int] = set()  # the storages the recorded ops allocated
        self.saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default):
            raise RuntimeError(f"{func} reads a tensor's value on the host inside a capture")
        for argument, value in zip(func._schema.arguments, _arguments(func, args, kwargs),
                                   strict=True):
            if argument.alias_info is not None and argument.alias_info.is_write:
                for tensor in _tensors(value):
                    storage = _storage(tensor)
                    if storage not in self.made and storage not in self.saved:
                        whole = tensor.as_strided((tensor.untyped_storage().nbytes()
                                                   // tensor.element_size(),), (1,), 0)
                        self.saved[storage] = (whole, whole.clone())
        out = func(*args, **kwargs)
        if not (func._schema.returns and func._schema.returns[0].alias_info is not None):
            self.made.update(_storage(t) for t in _tensors(out))
        self.calls.append((func, args, kwargs, out))
        return out


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _arguments(func, args, kwargs) -> list:
    names = [a.name for a in func._schema.arguments]
    return list(args) + [kwargs.get(name) for name in names[len(args):]]


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class GraphEmulator:
    """A CUDA graph's semantics on the CPU, for ``fastpgan.train.graphs.StepGraphs``.

    ``capture`` runs the step once under a recorder, then puts back every tensor it wrote
    that existed before and the generators' states, so the capture leaves no trace, as a
    CUDA capture runs nothing. A replay runs the recorded ops again on the same tensor
    objects (outputs copied into the recorded ones, views left to alias them) without the
    step's Python code: a value the host baked into the recording stays baked, as in a
    CUDA graph.
    """

    def __init__(self, generators=()) -> None:
        self.generators = [torch.default_generator, *generators]
        self.captures = 0

    def warm(self, step):
        return step()

    def capture(self, step):
        states = [g.get_state() for g in self.generators]
        recorder = _Recorder()
        with recorder:
            result = step()
        with torch.no_grad():
            for tensor, value in recorder.saved.values():
                tensor.copy_(value)
        for generator, state in zip(self.generators, states, strict=True):
            generator.set_state(state)
        self.captures += 1
        calls = recorder.calls

        @torch.no_grad()
        def replay() -> None:
            for func, args, kwargs, out in calls:
                fresh = func(*args, **kwargs)
                if func._schema.returns and func._schema.returns[0].alias_info is not None:
                    continue  # a view of tensors the replay updates in place
                for old, new in zip(_tensors(out), _tensors(fresh), strict=True):
                    if old is not new:
                        old.copy_(new)
        return replay, result


def blob_cache(folder: Path) -> Path:
    """A cache of 40 grayscale 8x8 images of Gaussian blobs at random places (seeded: the
    data tests/data/checkpoints were trained on)."""
    from fastpgan.data import build_cache

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:8, :8]
    images = []
    for _ in range(40):
        cy, cx, r = rng.uniform(2, 6), rng.uniform(2, 6), rng.uniform(1.5, 3)
        images.append((255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2))[None]
                      .astype(np.float32))
    return build_cache(iter(images), folder, 8, 1, source="blobs")


def labelled_blobs(folder: Path, classes: int = 3) -> Path:
    """:func:`blob_cache`'s images, image i of class i % ``classes``."""
    from fastpgan.data import build_cache
    from fastpgan.data.cache import CacheLabels, ImageCache

    blobs = ImageCache.open(blob_cache(folder.with_name(folder.name + "-blobs")))
    labels = CacheLabels([i % classes for i in range(blobs.count)], classes, "subfolders")
    images = (level.astype(np.float32) for level in blobs.level(8))
    return build_cache(images, folder, 8, 1, source="labelled blobs", labels=labels)


def tiny(faces: Path, out: Path, **changes) -> TrainConfig:
    """A training run small enough for the CPU: 8x8 on ``faces``, a few dozen images a
    phase, tiny networks, a checkpoint every 8 images; ``changes`` override."""
    from fastpgan.train.config import TrainConfig

    settings = dict(data=str(faces), out=str(out), resolution=8, batch=4, fade_kimg=0.024,
                    stable_kimg=0.024, latent_dim=8, fmap_base=32, fmap_max=8,
                    checkpoint_kimg=0.008, sample_kimg=1.0, swd_images=0, workers=0,
                    progress=False, device="cpu")
    settings.update(changes)
    return TrainConfig(**settings)


def training_weights(trainer) -> dict[str, torch.Tensor]:
    """Every weight of a trainer's G, D and EMA generator, by prefixed name."""
    return {f"{name}.{k}": v for name, net in (("G", trainer.G), ("D", trainer.D),
                                               ("E", trainer.ema.model))
            for k, v in net.state_dict().items()}


def run_printed(command: str, out: Path) -> None:
    """Runs a ``fastpgan`` command line as printed (the explorer prints one under each
    picture) on the CPU, with its --out (or, where it has none, an added one) at ``out``."""
    import shlex

    from fastpgan.cli.main import main

    argv = shlex.split(command)
    assert argv[0] == "fastpgan", command
    argv = [*argv[1:], "--device", "cpu"]
    if "--out" in argv:
        argv[argv.index("--out") + 1] = str(out)
    else:
        argv += ["--out", str(out)]
    assert main(argv) == 0, command
