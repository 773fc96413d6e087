"""Every Triton kernel compiles for sm_80 and sm_90 in every dtype, within the spill budget."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def report():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "fastpgan.kernels.aot", "--json"],
                         capture_output=True, text=True, env=env, timeout=1200)
    assert out.stdout, out.stderr
    return json.loads(out.stdout)


def test_every_kernel_has_a_compile_spec(report):
    assert report["missing"] == []
    kernels = {r["kernel"] for r in report["results"]}
    assert {"bias_act_fwd_kernel", "bias_act_bwd_kernel"} <= kernels


def test_all_archs_and_dtypes_covered(report):
    for kernel in {r["kernel"] for r in report["results"]}:
        seen = {(r["arch"], r["dtype"]) for r in report["results"] if r["kernel"] == kernel}
        assert seen == {(a, d) for a in (80, 90) for d in ("fp32", "fp16", "bf16", "fp64")}


def test_compiles_without_errors_or_heavy_spills(report):
    failures = [f"sm_{r['arch']} {r['kernel']} {r['variant']} {r['dtype']}: {r['error']}"
                for r in report["results"] if not r["ok"]]
    assert not failures, "\n".join(failures)
