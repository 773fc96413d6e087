"""Backend dispatch: process default, environment variable, and the errors it gives."""

import os
import subprocess
import sys
import types

import pytest
import torch

import fastpgan
from fastpgan import backend
from fastpgan.ops import bias_act


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET",
                                                                 "FASTPGAN_BACKEND")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, timeout=300)


def test_set_backend_round_trip_and_validation():
    before = fastpgan.get_backend()
    try:
        fastpgan.set_backend("reference")
        assert fastpgan.get_backend() == "reference"
        with pytest.raises(ValueError, match="unknown backend 'cuda_magic'"):
            fastpgan.set_backend("cuda_magic")
    finally:
        fastpgan.set_backend(before)


def test_process_default_is_used_when_no_backend_is_given(monkeypatch):
    calls = []
    monkeypatch.setattr(backend, "_default", "reference")
    monkeypatch.setattr("fastpgan.ops.epilogue.epilogue_reference",
                        lambda *a, **k: calls.append(1) or a[0])
    bias_act(torch.randn(2, 3))
    assert calls == [1]


def test_auto_uses_reference_for_cpu_tensors(monkeypatch):
    monkeypatch.setattr(torch.ops.fastpgan, "bias_act", None)  # any fused call would fail
    y = bias_act(torch.randn(2, 3, 4, 4), backend="auto")
    assert y.shape == (2, 3, 4, 4)


def test_auto_warns_once_and_falls_back_when_kernels_fail_to_load(monkeypatch):
    monkeypatch.setattr(backend, "_kernel_modules", {})
    monkeypatch.setattr(backend, "_kernel_errors", {"bias_act": "ImportError: no triton"})
    monkeypatch.setattr(backend, "_warned", set())
    cuda_like = types.SimpleNamespace(is_cuda=True, dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match="no triton"):
        assert backend.use_fused("bias_act", cuda_like, "auto") is False
    assert backend.use_fused("bias_act", cuda_like, "auto") is False  # no second warning
    with pytest.raises(RuntimeError, match="failed to load"):
        backend.use_fused("bias_act", cuda_like, "fused")


def test_fused_rejects_unsupported_dtype():
    with pytest.raises(TypeError, match=r"torch\.int32"):
        backend.use_fused("bias_act", torch.ones(2, dtype=torch.int32), "fused")


def test_environment_variable_sets_the_default():
    out = _run("import fastpgan; print(fastpgan.get_backend())", FASTPGAN_BACKEND="reference")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "reference"


def test_bad_environment_variable_is_named():
    out = _run("import fastpgan", FASTPGAN_BACKEND="fast")
    assert out.returncode != 0
    assert "FASTPGAN_BACKEND" in out.stderr and "'fast'" in out.stderr


def test_fused_on_cpu_without_interpreter_says_how_to_enable_it():
    code = ("import torch, fastpgan\n"
            "try:\n"
            "    fastpgan.ops.pixel_norm(torch.randn(2, 3), backend='fused')\n"
            "except RuntimeError as e:\n"
            "    print(e)\n")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "TRITON_INTERPRET=1" in out.stdout


def test_import_compiles_nothing_and_does_not_import_triton():
    out = _run("import sys, fastpgan, fastpgan.nn, fastpgan.ops; "
               "print('triton' in sys.modules, 'kernels' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_kernels_are_installed_as_a_subpackage():
    out = _run("import fastpgan.kernels, importlib.util; "
               "print(fastpgan.kernels.__name__, importlib.util.find_spec('kernels'))",
               PYTHONSAFEPATH="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fastpgan.kernels", "None"]
