"""Contract 5: ``incidents score`` as a user runs it (the console script in .venv)."""

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from incidents.cli import build_parser


def incidents_cmd() -> list[str]:
    script = Path(sys.executable).with_name("incidents")
    return [str(script)] if script.exists() else [shutil.which("incidents") or "incidents"]


def write_series(path: Path, values: list[float]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        for i, v in enumerate(values):
            w.writerow([f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00", v])


def test_score_writes_one_score_in_0_1_per_row_and_flags_a_spike(tmp_path):
    values = [10 + 3 * math.sin(i / 8) + (i % 5) * 0.1 for i in range(400)]
    values[350] = 60.0
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src, values)
    done = subprocess.run(
        [*incidents_cmd(), "score", "--input", str(src), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == len(values)
    scores = [float(r["anomaly_score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[350] == max(scores) and scores[350] >= 0.95
    assert rows[10]["timestamp"] == "2024-01-01 00:10:00"


def test_score_reports_bad_input_clearly_and_fails(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("timestamp,value\n2024-01-01 00:00:00,abc\n")
    done = subprocess.run(
        [*incidents_cmd(), "score", "--input", str(src), "--output", str(tmp_path / "o.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "line 2" in done.stderr and "abc" in done.stderr


def test_missing_input_file_is_a_clear_error(tmp_path, capsys):
    from incidents.cli import main

    assert main(["score", "--input", str(tmp_path / "nope.csv"), "--output", "x.csv"]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_parser_knows_the_documented_subcommands():
    parser = build_parser()
    for argv in (
        ["run"],
        ["dataflow"],
        ["api"],
        ["automate"],
        ["migrate"],
        ["simulate", "--output", "x"],
    ):
        assert parser.parse_args(argv).command == argv[0]
    with pytest.raises(SystemExit):
        parser.parse_args(["score"])
