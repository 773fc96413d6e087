"""The C++ extension's loader: cache folder, lock, remembered failures, doctor, CUDA source."""

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from fastpgan import backend, extension


def _run(args: list[str], **env) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environ.update(env)
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environ)


@pytest.fixture
def fresh_status(monkeypatch):
    """Forgets this process's extension status (restored after the test)."""
    monkeypatch.setattr(extension, "_status", None)
    monkeypatch.setattr(backend, "_warned", set())


def test_build_folder_follows_torch_extensions_dir_and_torch_version(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder = extension.build_directory(with_cuda=False)
    assert folder.parent == tmp_path
    assert torch.__version__.split("+")[0].replace(".", "_") in folder.name
    assert extension.build_directory(with_cuda=True) != folder


def test_failed_build_is_remembered_and_its_log_named(monkeypatch, tmp_path, fresh_status):
    calls = []

    def failing_build(folder, with_cuda):
        calls.append(folder)
        raise RuntimeError("error: expected ';' before '}' token")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(extension, "_jit_build", failing_build)
    assert extension.load_extension() is None
    assert extension.load_extension() is None
    assert len(calls) == 1, "a failed build must not be retried in the same process"
    status = extension.extension_status()
    log = Path(status.error.split("compiler output in ")[1])
    assert log.parent == extension.build_directory(False) and "expected ';'" in log.read_text()

    cuda_like = types.SimpleNamespace(is_cuda=True, dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match=re.escape(str(log))) as record:
        assert backend.use_fused("upsample_conv2d", cuda_like, "auto") is False
        assert backend.use_fused("upsample_conv2d", cuda_like, "auto") is False
    assert len(record) == 1, "the fallback warns once"
    with pytest.raises(RuntimeError, match=r"fastpgan\.doctor"):
        backend.use_fused("upsample_conv2d", cuda_like, "fused")


def test_missing_compiler_is_named_without_trying_to_build(monkeypatch, fresh_status):
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    monkeypatch.setattr(extension, "_jit_build", lambda *a: pytest.fail("build attempted"))
    monkeypatch.setattr(extension.importlib, "import_module",
                        lambda name: (_ for _ in ()).throw(ImportError(name))
                        if name == "fastpgan._ext" else __import__(name))
    assert extension.load_extension() is None
    assert "'no-such-c++-compiler' is not on PATH" in extension.extension_status().error


def test_cuda_tensors_need_a_cuda_build(monkeypatch, fresh_status):
    monkeypatch.setattr(extension, "_status", extension.ExtensionStatus(
        module=types.ModuleType("fake"), with_cuda=False, cuda_note="nvcc not found"))
    cuda_like = types.SimpleNamespace(is_cuda=True, dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match="built without CUDA: nvcc not found"):
        assert backend.use_fused("conv2d_downsample", cuda_like, "auto") is False


def test_two_processes_build_once_under_the_lock(tmp_path):
    """Both load; the second waits for the first's build instead of compiling again."""
    code = ("from fastpgan.extension import extension_status as s; st = s(); "
            "print(st.module is not None, st.error)")
    procs = [_run(["-c", code], TORCH_EXTENSIONS_DIR=str(tmp_path)) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for out, err in outs:
        assert out.split()[0] == "True", err
    compiling = [err for _, err in outs if "fastpgan: compiling the C++ extension" in err]
    assert len(compiling) == 1, [err for _, err in outs]


def test_a_lock_left_by_a_killed_build_does_not_hang_the_next_load(tmp_path):
    """torch's build lock, left behind by a build that was killed, would make every later
    load wait forever; under fastpgan's own lock it is known to be stale."""
    assert extension.load_extension() is not None, "the extension builds on every CI machine"
    built = extension.build_directory(with_cuda=False)
    shutil.copytree(built, tmp_path / built.name)  # up to date: no compile in the child
    (tmp_path / built.name / "lock").touch()
    code = "from fastpgan.extension import extension_status as s; print(s().error)"
    out, err = _run(["-c", code], TORCH_EXTENSIONS_DIR=str(tmp_path)).communicate(timeout=600)
    assert out.strip() == "None", err
    assert not (tmp_path / built.name / "lock").exists()


def test_doctor_reports_both_fused_paths():
    proc = _run(["-m", "fastpgan.doctor"])
    out, err = proc.communicate(timeout=900)
    assert "C++ extension: loads" in out, out + err
    assert "upsample_conv2d" in out and "Triton kernels: load" in out
    assert proc.returncode == 0


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA compiler)")
def test_cuda_source_compiles_for_sm90(tmp_path):
    """The .cu file compiles (registers and spills reported) even on a machine without a GPU."""
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{p}" for p in include_paths()] + [f"-I{extension.source_dir()}"]
    # CPU builds of torch ship c10/cuda headers but not the CMake-generated one they include.
    generated = Path(include_paths()[0]) / "c10/cuda/impl/cuda_cmake_macros.h"
    if not generated.exists():
        stub = tmp_path / "c10/cuda/impl/cuda_cmake_macros.h"
        stub.parent.mkdir(parents=True)
        stub.write_text("#pragma once\n")
        includes.append(f"-I{tmp_path}")
    out = subprocess.run(
        ["nvcc", "-c", str(extension.source_dir() / "epilogue_cuda.cu"), "-o",
         str(tmp_path / "epilogue.o"), "-std=c++20", "-O3", "-arch=sm_90",
         "-DFASTPGAN_WITH_CUDA", "-Xptxas", "-v", *includes],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "forward_kernel" in out.stderr and "backward_kernel" in out.stderr
