"""Offline scoring of a ``timestamp,value`` CSV with the online detector (ARCHITECTURE contract 5).

Rows are processed strictly in order, each one a single-point window: score it, then learn it.
Nothing looks ahead, so the scores of the first ``k`` rows never depend on the rows after them.
The timestamp and value strings are copied to the output unchanged.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from incidents.schemas import DEFAULT_TENANT, WindowAggregate
from models.detector import DetectorConfig, SingleSeriesDetector, build_detector

INPUT_COLUMNS = ("timestamp", "value")
OUTPUT_COLUMNS = ("timestamp", "value", "anomaly_score")
SERIES = "input"
SCORE_FORMAT = "{:.6f}"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)

Row = tuple[int, str, str]
"""A data row: (line number in the file, timestamp text, value text)."""


def point_window(value: float, window_start_ns: int) -> WindowAggregate:
    return WindowAggregate(
        series=SERIES,
        tenant=DEFAULT_TENANT,
        window_start_ns=window_start_ns,
        window_end_ns=window_start_ns + 1,
        count=1,
        mean=value,
        minimum=value,
        maximum=value,
        std=0.0,
        last=value,
    )


def parse_timestamp_ns(text: str) -> int | None:
    """ISO 8601 (NAB's ``2014-04-01 00:00:00`` included) in ns, naive read as UTC; else None."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MICROSECOND * 1000


def parse_value(text: str, line: int) -> float:
    if not text.strip():
        raise ValueError(f"line {line}: empty value")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"line {line}: value {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"line {line}: value {text!r} is not a finite number")
    return value


def clamp_score(score: float) -> float:
    return min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0


def score_then_learn(detector: SingleSeriesDetector, window: WindowAggregate) -> float:
    return clamp_score(detector.score_and_learn(window)[0])


def score_values(
    values: Iterable[tuple[float, int]], config: DetectorConfig | None = None
) -> Iterator[float]:
    """Scores of ``(value, window_start_ns)`` pairs, each scored before it is learned."""
    detector = build_detector(config)
    for value, start_ns in values:
        yield score_then_learn(detector, point_window(value, start_ns))


def score_series(values: Iterable[float], config: DetectorConfig | None = None) -> list[float]:
    """Scores of a plain sequence of values, one window per value (start = index)."""
    return list(score_values(((float(v), i) for i, v in enumerate(values)), config))


def read_rows(lines: Iterable[str]) -> Iterator[Row]:
    """Data rows of a ``timestamp,value`` CSV (extra columns ignored, blank lines skipped)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ValueError("line 1: empty input, expected a header 'timestamp,value'")
    names = [name.strip() for name in header]
    missing = [column for column in INPUT_COLUMNS if column not in names]
    if missing:
        raise ValueError(
            f"line 1: header {header!r} lacks column(s) {', '.join(missing)};"
            " expected 'timestamp,value'"
        )
    ts_at, value_at = names.index("timestamp"), names.index("value")
    width = max(ts_at, value_at) + 1
    for fields in reader:
        if not fields:
            continue
        if len(fields) < width:
            raise ValueError(
                f"line {reader.line_num}: expected at least {width} fields, got {len(fields)}"
            )
        yield reader.line_num, fields[ts_at], fields[value_at]


def score_rows(rows: Iterable[Row], config: DetectorConfig | None = None) -> Iterator[list[str]]:
    """Output records ``[timestamp, value, score]`` for the input rows, in order.

    A timestamp that does not parse as ISO 8601 gets the row's index as its window start.
    """
    detector = build_detector(config)
    for index, (line, ts_text, value_text) in enumerate(rows):
        value = parse_value(value_text, line)
        start_ns = parse_timestamp_ns(ts_text)
        window = point_window(value, index if start_ns is None else start_ns)
        yield [ts_text, value_text, SCORE_FORMAT.format(score_then_learn(detector, window))]


def score_csv(input_path: Path, output_path: Path, config: DetectorConfig | None = None) -> int:
    """Score ``input_path`` into ``output_path``; returns the number of data rows written.

    Raises ``ValueError`` naming the line for malformed input; the output is written to a
    temporary sibling and moved into place only on success, so a failed run leaves no half file.
    """
    partial = output_path.with_name(output_path.name + ".partial")
    written = 0
    try:
        with (
            input_path.open(newline="", encoding="utf-8-sig") as source,
            partial.open("w", newline="", encoding="utf-8") as sink,
        ):
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(OUTPUT_COLUMNS)
            try:
                for record in score_rows(read_rows(source), config):
                    writer.writerow(record)
                    written += 1
            except ValueError as exc:
                raise ValueError(f"{input_path}: {exc}") from None
        os.replace(partial, output_path)
    finally:
        partial.unlink(missing_ok=True)
    return written
