from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models.detector import DetectorConfig
from models.scoring import (
    parse_timestamp_ns,
    read_rows,
    score_csv,
    score_series,
)


def series_values(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    values = 20.0 + 5.0 * np.sin(np.arange(n) / 9.0) + rng.normal(0.0, 0.5, n)
    values[n - 20] += 15.0
    return [repr(float(v)) for v in values]


def write_input(path: Path, rows: list[tuple[str, str]], header: str = "timestamp,value") -> Path:
    lines = [header, *(f"{ts},{v}" for ts, v in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def nab_rows(n: int) -> list[tuple[str, str]]:
    values = series_values(n)
    return [
        (f"2014-04-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00", values[i])
        for i in range(n)
    ]


def read_output(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def scored_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    folder = tmp_path_factory.mktemp("score")
    rows = nab_rows(400)
    source = write_input(folder / "in.csv", rows)
    target = folder / "out.csv"
    return source, target, score_csv(source, target)


def test_round_trip_copies_fields_and_formats_scores(scored_file: tuple[Path, Path, int]) -> None:
    source, target, written = scored_file
    assert written == 400
    out = read_output(target)
    assert out[0] == ["timestamp", "value", "anomaly_score"]
    source_rows = read_output(source)[1:]
    assert [r[:2] for r in out[1:]] == source_rows
    for _, _, score in out[1:]:
        assert len(score.split(".")[1]) == 6
        assert 0.0 <= float(score) <= 1.0
    assert target.read_text().startswith("timestamp,value,anomaly_score\n2014-04-01 00:00:00,")


def test_output_flags_the_injected_spike(scored_file: tuple[Path, Path, int]) -> None:
    _, target, _ = scored_file
    scores = [float(r[2]) for r in read_output(target)[1:]]
    assert scores[380] >= 0.95
    assert scores[380] == max(scores)


@pytest.mark.parametrize("k", [1, 30, 57, 250])
def test_prefix_of_the_input_gives_the_same_scores(
    scored_file: tuple[Path, Path, int], tmp_path: Path, k: int
) -> None:
    source, target, _ = scored_file
    lines = source.read_text().splitlines(keepends=True)
    prefix = tmp_path / "prefix.csv"
    prefix.write_text("".join(lines[: k + 1]))
    assert score_csv(prefix, tmp_path / "prefix_out.csv") == k
    assert read_output(tmp_path / "prefix_out.csv") == read_output(target)[: k + 1]


def test_score_series_matches_score_csv(scored_file: tuple[Path, Path, int]) -> None:
    source, target, _ = scored_file
    values = [float(r[1]) for r in read_output(source)[1:]]
    expected = [float(r[2]) for r in read_output(target)[1:]]
    assert [round(s, 6) for s in score_series(values)] == pytest.approx(expected, abs=1e-12)


def test_score_series_accepts_a_config() -> None:
    config = DetectorConfig(min_history=5, members=("arima",))
    scores = score_series([1.0] * 20 + [9.0], config)
    assert scores[:5] == [0.0] * 5
    assert scores[-1] >= 0.95


def test_any_timestamp_text_and_extra_columns_are_accepted(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    lines = ["value,host,timestamp"] + [f"{v},a,t{i}" for i, v in enumerate(series_values(40))]
    source.write_text("\r\n".join(lines) + "\r\n")
    target = tmp_path / "out.csv"
    assert score_csv(source, target) == 40
    out = read_output(target)
    assert out[1][:2] == ["t0", series_values(40)[0]]


def test_header_only_and_blank_lines(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("timestamp,value\n\n2020-01-01T00:00:00Z,1.5\n\n")
    target = tmp_path / "out.csv"
    assert score_csv(source, target) == 1
    assert read_output(target) == [
        ["timestamp", "value", "anomaly_score"],
        ["2020-01-01T00:00:00Z", "1.5", "0.000000"],
    ]
    source.write_text("timestamp,value\n")
    assert score_csv(source, target) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "line 1: empty input"),
        ("time,value\n2020-01-01,1\n", "lacks column\\(s\\) timestamp"),
        ("timestamp,val\n2020-01-01,1\n", "lacks column\\(s\\) value"),
        ("timestamp,value\n2020-01-01,1\n2020-01-02,abc\n", "line 3: value 'abc' is not a number"),
        ("timestamp,value\n2020-01-01,\n", "line 2: empty value"),
        ("timestamp,value\n2020-01-01,1\n2020-01-02,nan\n", "line 3: .*not a finite number"),
        ("timestamp,value\n2020-01-01,inf\n", "line 2: .*not a finite number"),
        ("timestamp,value\n2020-01-01\n", "line 2: expected at least 2 fields, got 1"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(
    tmp_path: Path, content: str, message: str
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    target = tmp_path / "out.csv"
    with pytest.raises(ValueError, match=message):
        score_csv(source, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [source]


def test_failed_run_keeps_a_previous_output(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("previous\n")
    source = write_input(tmp_path / "in.csv", [("a", "1"), ("b", "x")])
    with pytest.raises(ValueError, match="line 3"):
        score_csv(source, target)
    assert target.read_text() == "previous\n"


def test_missing_input_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        score_csv(tmp_path / "missing.csv", tmp_path / "out.csv")


def test_parse_timestamp_ns() -> None:
    assert parse_timestamp_ns("1970-01-01 00:00:01") == 1_000_000_000
    assert parse_timestamp_ns("2014-04-01 00:00:00") == 1_396_310_400_000_000_000
    assert parse_timestamp_ns("1970-01-01T01:00:00+01:00") == 0
    assert parse_timestamp_ns("yesterday") is None


def test_read_rows_reports_line_numbers() -> None:
    rows = list(read_rows(["timestamp,value", "a,1", "", "b,2"]))
    assert rows == [(2, "a", "1"), (4, "b", "2")]
