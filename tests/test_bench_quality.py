"""bench/quality.py's smoke mode, which CI runs: a tiny recipe trained, measured, kept in
the results file and not measured again."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quality_benchmark_smoke_trains_measures_resumes_and_tabulates(tmp_path):
    """bench/quality.py --smoke: one tiny ADA run measured by SWD, a row in the results,
    and run again it measures nothing twice."""
    command = [sys.executable, str(ROOT / "bench" / "quality.py"), "--smoke", "--work",
               str(tmp_path / "w"), "--results", str(tmp_path / "q.jsonl")]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| smoke-ada | 1 |" in first.stdout and "SWD x 1e3" in first.stdout
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").open()]
    assert len(rows) == 1 and rows[0]["kimg"] == 0.048 and rows[0]["train_cpu_s"] > 0
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| smoke-ada | 1 |" in again.stdout
    assert len((tmp_path / "q.jsonl").read_text().splitlines()) == 1
