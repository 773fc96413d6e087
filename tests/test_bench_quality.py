"""bench/quality.py's smoke mode, which CI runs: a tiny recipe trained, its shipped and raw
generators measured, kept in the results file and not measured again; a row of an earlier
version completed from its run folder."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from quality import summarize, table  # noqa: E402
from quality_data import IDX_LIMIT, metrics_data, read_idx, write_classes  # noqa: E402


def test_quality_benchmark_smoke_trains_measures_resumes_and_tabulates(tmp_path):
    """bench/quality.py --smoke: one tiny ADA run measured by SWD (shipped and raw), a row
    in the results; run again it measures nothing twice, and a row without the raw scores
    or the moving average (as earlier versions wrote) gets them from its run folder."""
    results = tmp_path / "q.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "quality.py"), "--smoke", "--work",
               str(tmp_path / "w"), "--results", str(results)]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| smoke-ada | half-life 10 kimg, ramp-up 0.5 | 1 |" in first.stdout
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
    assert "raw generator of smoke-ada seed 0 measured (swd)" in completed.stdout
    (row_again,) = [json.loads(line) for line in results.open()]
    assert row_again == row


def test_the_table_gives_each_seeds_shipped_minus_raw_fid():
    """Gaps -3 and +1: mean -1, standard deviation 2 sqrt(2), standard error 2; one seed
    has no standard error."""
    rows = [{"recipe": "r", "ema": "e", "seed": 0, "fid": 10.0, "raw_fid": 13.0},
            {"recipe": "r", "ema": "e", "seed": 1, "fid": 20.0, "raw_fid": 19.0},
            {"recipe": "r", "ema": "e", "seed": 2, "fid": 30.0}]
    line = table(summarize(rows)).splitlines()[-1]
    line = line.split(" | ")
    assert line[:7] == ["| r", "e", "3", "20.0 ± 10.0", "16.0 ± 4.2", "-1.0 ± 2.0",
                        "-3.0 / +1.0"], line
    alone = table(summarize(rows[:1])).splitlines()[-1]
    assert alone.startswith("| r | e | 1 | 10.0 ± 0.0 | 13.0 ± 0.0 | - | -3.0 |"), alone


def _idx(path: Path, header: bytes, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(header + payload))
    return path


def test_idx_files_are_read_as_they_claim_and_refused_otherwise(tmp_path):
    """Fashion-MNIST's IDX files: the shape the header gives, and a clear refusal for
    another format, a claim over the limit (nothing of it read) or a payload that does
    not match the claim."""
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = b"\0\0\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (2, 3, 4))
    assert np.array_equal(read_idx(_idx(tmp_path / "a.gz", header, images.tobytes())), images)
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(_idx(tmp_path / "b.gz", b"\0\0\x0d\x01" + (4).to_bytes(4, "big"), b"x" * 16))
    huge = b"\0\0\x08\x01" + (IDX_LIMIT + 1).to_bytes(4, "big")
    with pytest.raises(ValueError, match="over the"):
        read_idx(_idx(tmp_path / "c.gz", huge, b""))
    for payload in (images.tobytes()[:-1], images.tobytes() + b"!"):
        with pytest.raises(ValueError, match="claims 24 bytes"):
            read_idx(_idx(tmp_path / "d.gz", header, payload))


def test_a_data_set_folder_is_one_subfolder_a_class_and_held_out_images_measure_it(tmp_path):
    folder = write_classes(tmp_path / "set", np.zeros((3, 28, 28), np.uint8),
                           np.array([0, 1, 1]), 32)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == [
        "0/00000.png", "1/00001.png", "1/00002.png"]
    assert not (tmp_path / "set.partial").exists()
    assert metrics_data(["--data", "@digits"], tmp_path) == ["--data",
                                                              str(tmp_path / "data/digits")]
    assert metrics_data(["--arch", "progan"], tmp_path) == []


def test_averages_side_by_side_follow_the_run_as_the_shipped_one_does(faces, tmp_path):
    """bench/ema_study.py's premise: an average carried beside the shipped one, with the
    same settings, ends bit for bit equal to it; one ramping from the phase start differs."""
    import torch
    from ema_study import SideBySide
    from helpers import tiny

    from fastpgan.train.ema import EMA
    from fastpgan.train.loop import Trainer

    trainer = Trainer(tiny(faces, tmp_path / "run", ema_kimg=0.01, ema_rampup=0.5))
    same = EMA(trainer.G, half_life_kimg=0.01, rampup=0.5)
    phase = EMA(trainer.G, half_life_kimg=0.01, rampup=0.5)
    trainer.ema = SideBySide(trainer.ema, {"same": same, "ramp-up of the phase": phase},
                             trainer)
    trainer.run()
    shipped = trainer.ema.model.state_dict()
    assert all(torch.equal(v, same.model.state_dict()[k]) for k, v in shipped.items())
    assert not all(torch.equal(v, phase.model.state_dict()[k]) for k, v in shipped.items())


def test_ema_study_names_the_averages_when_asked_for_an_unknown_one(capsys):
    """bench/ema_study.py --averages: a name it does not carry stops it before any training,
    with the names it does carry."""
    from ema_study import AVERAGES, main

    with pytest.raises(SystemExit) as stopped:
        main(["--averages", "half-life 10 kimg, ramp-up 0.002;ramp-up 0.003"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "no average named 'ramp-up 0.003'" in error
    assert all(name in error for name in AVERAGES)


def test_ema_study_trains_a_recipe_as_long_as_the_benchmark_unless_told(tmp_path):
    """Without --kimg the study's run is the benchmark's: 18 kimg for the demo's faces (set
    by the demo, not the recipe's arguments), 12 for the digits."""
    from ema_study import recipe_kimg

    assert recipe_kimg("progan-none", tmp_path) == 18.0
    assert recipe_kimg("digits-progan-none", tmp_path) == 12.0
