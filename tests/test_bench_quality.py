"""bench/quality.py's smoke mode, which CI runs: a tiny recipe trained, its shipped and raw
generators measured, kept in the results file and not measured again; a row of an earlier
version completed from its run folder."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quality_benchmark_smoke_trains_measures_resumes_and_tabulates(tmp_path):
    """bench/quality.py --smoke: one tiny ADA run measured by SWD (shipped and raw), a row
    in the results; run again it measures nothing twice, and a row without the raw scores
    or the moving average (as earlier versions wrote) gets them from its run folder."""
    results = tmp_path / "q.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "quality.py"), "--smoke", "--work",
               str(tmp_path / "w"), "--results", str(results)]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| smoke-ada | half-life 10 kimg, ramp-up 0.05 | 1 |" in first.stdout
    assert "| SWD x 1e3 | SWD x 1e3 raw G |" in first.stdout
    (row,) = [json.loads(line) for line in results.open()]
    assert row["kimg"] == 0.048 and row["train_cpu_s"] > 0 and "resumed_at_kimg" not in row
    assert row["swd"]["avg"] > 0 and row["raw_swd"]["avg"] > 0
    assert row["raw_swd"] != row["swd"], "the raw generator is not the moving average"
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| smoke-ada |" in again.stdout and "measured" not in again.stdout
    assert len(results.read_text().splitlines()) == 1
    earlier = {k: v for k, v in row.items() if k not in ("raw_swd", "ema")}
    results.write_text(json.dumps(earlier) + "\n")
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "raw generator of smoke-ada seed 0 measured" in completed.stdout
    (row_again,) = [json.loads(line) for line in results.open()]
    assert row_again == row
