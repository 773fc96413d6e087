"""bench/gpu.sh, the one prepared GPU call, must not rot while no GPU is lent: its dry
run executes every stage on a tiny CPU case and builds the summary from their outputs."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["env", "tests", "host", "bench", "train", "run", "ext"]


def test_dry_run_runs_every_stage_and_returns_at_most_eight_files(tmp_path):
    # twice the GPU's budget: the stages' boxes are shares of it, and on a loaded 2-core
    # CI machine the dry run's env stage (imports, doctor, a build started beside it)
    # once took 40 s, past its 10 % of 400 s
    env = {**os.environ, "GPU_DRY_RUN": "1", "OUT": str(tmp_path), "GPU_BUDGET_S": "800"}
    done = subprocess.run(["bash", "bench/gpu.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("gpu.sh dry run (CPU), budget 800 s")
    targets = summary.index("open targets (bench/NOTES.md):")  # the verdicts come last
    assert summary[targets + 1].startswith("incomplete bias_lrelu_pixel_norm"), summary
    rows = {line.split()[0]: line.split()[1] for line in summary[2:targets]}
    # the compile caches' warm-up is stopped when the bench stage starts, if still running
    assert rows.pop("warm") in ("ok", "stopped"), summary
    assert rows == dict.fromkeys(STAGES, "ok"), summary
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= 8, files  # the device machine returns no more
    assert "passed" in (tmp_path / "tests.log").read_text()
    assert (tmp_path / "bench.jsonl").read_text().count("\n") >= 1, "figures streamed"
    assert "projected" in (tmp_path / "train.txt").read_text()


def test_the_gpu_test_selection_names_tests_that_exist():
    """The dry run executes one CPU test; the GPU's own selection is only collected here,
    so a renamed test or file fails CI rather than the lent GPU's tests stage."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_run import op_tests

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *op_tests()], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout, done.stdout[-500:]
