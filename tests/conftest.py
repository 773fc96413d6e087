"""Test set-up: fused kernels run on the GPU where there is one, else in Triton's interpreter.

TRITON_INTERPRET must be set before fastpgan.kernels is imported, so it is set here,
at collection, when no CUDA device is present.
"""

import os
import secrets

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device() -> str:
    """Where fused kernels run in this session: "cuda", or "cpu" through the interpreter."""
    return DEVICE


@pytest.fixture
def stub_inception(tmp_path):
    """A TorchScript file in the Inception file's format (299x299 in, 2048 features out)."""
    import warnings

    from helpers import StubInception

    path = tmp_path / "stub-inception.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated; the real file is one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(StubInception()).save(str(path))
    return path


@pytest.fixture
def stub_nvlabs_inception(tmp_path):
    """A TorchScript file in NVlabs' Inception format (uint8 in; features or class
    probabilities out)."""
    import warnings

    from helpers import StubNVlabsInception

    path = tmp_path / "stub-nvlabs-inception.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(StubNVlabsInception()).save(str(path))
    return path


@pytest.fixture(autouse=True)
def fresh_seed() -> int:
    """A new random seed per test, printed so a failure can be replayed."""
    seed = int(os.environ.get("FASTPGAN_TEST_SEED", secrets.randbits(31)))
    torch.manual_seed(seed)
    print(f"torch seed {seed}")
    return seed


@pytest.fixture
def poisoned_outputs(monkeypatch):
    """Makes every fresh allocation NaN-filled, so an element a kernel forgot stays NaN."""
    empty, empty_like, new_empty = torch.empty, torch.empty_like, torch.Tensor.new_empty

    def _nan(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: _nan(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: _nan(empty_like(*a, **k)))
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda *a, **k: _nan(new_empty(*a, **k)))


@pytest.fixture
def nvlabs_modules(monkeypatch):
    """(reconstruct, EasyDict) under the names NVlabs' pickles give them, for writing
    NVlabs-format fixtures (:mod:`published_formats`)."""
    from published_formats import install_nvlabs_modules

    return install_nvlabs_modules(monkeypatch)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A small cache of 40 grayscale 8x8 images of Gaussian blobs at random places."""
    from helpers import blob_cache

    return blob_cache(tmp_path_factory.mktemp("data") / "blobs")
