"""The NAB scorer: a detector's anomaly scores on labelled streams -> normalised NAB scores.

Follows ``/work/shared/nab/README.md`` and, where that is silent, Numenta's NAB scorer
(``nab/sweeper.py``, ``nab/optimizer.py``, ``nab/runner.py``):

- A file's first ``min(floor(0.15 * n), 750)`` rows are probationary: they are never scored.
  A window with no row after that period is not scored either (no reward, no cost).
- A row with ``score >= t`` is a detection. In a window only the earliest detection counts,
  ``A_TP * sigma(p) / sigma(-1)`` with ``p = -(right - i + 1) / width``; a window without one
  costs ``-A_FN``. A detection outside every window costs ``A_FP * sigma(p)``,
  ``p = (i - right_prev) / (width_prev - 1)`` past the preceding window, or ``-A_FP`` when no
  window precedes it, when ``p > 3`` or when the preceding window is one row wide.
- One threshold for the whole corpus, chosen among "nothing fires" and the distinct scores of
  scored rows to maximise the summed raw score; ties go to the higher threshold (as NAB's
  stable sort of its descending sweep does). The sweep sorts the scores once and accumulates
  the score changes, so all thresholds cost one pass.
- Normalised score ``100 * (S - S_null) / (S_perfect - S_null)``: the null detector never fires
  (``-A_FN`` per scored window), the perfect one detects each scored window at its first scored
  row (``A_TP`` per window that starts after the probationary period).

Window bounds are row timestamps, matched exactly and in order, as NAB's sweeper does (some
NAB files repeat timestamps around a DST change, so a search by time would be ambiguous).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.detector import DetectorConfig
from models.scoring import parse_timestamp_ns, parse_value, read_rows, score_values

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750
FP_FAR_POSITION = 3.0
"""Past this many window widths behind the preceding window a false positive costs ``A_FP``."""
NOTHING_FIRES = 1.1
"""NAB's threshold for "no row is a detection" when every score is at most 1."""
SCORE_COLUMN = "anomaly_score"
DEFAULT_WORKERS = 2


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelledFile:
    """One data file: its rows and its labelled windows as inclusive row-index ranges."""

    name: str
    """``<category>/<file>.csv``, the key in the labels file."""
    timestamps_ns: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]

    @property
    def rows(self) -> int:
        return len(self.values)

    @property
    def probation(self) -> int:
        return probation_length(self.rows)


@dataclass(frozen=True)
class Profile:
    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class ScoreSeries:
    """A result file of a detector: its timestamps and anomaly scores."""

    path: Path
    timestamps_ns: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class FileResult:
    """One file at the chosen threshold: windows detected (TP) and missed (FN), detections
    outside every window (FP; probationary rows not counted), and the file's raw score."""

    name: str
    tp: int
    fp: int
    fn: int
    score: float


@dataclass(frozen=True)
class ProfileScore:
    profile: Profile
    threshold: float
    raw: float
    null: float
    perfect: float
    normalised: float
    files: tuple[FileResult, ...]

    @property
    def tp(self) -> int:
        return sum(f.tp for f in self.files)

    @property
    def fp(self) -> int:
        return sum(f.fp for f in self.files)

    @property
    def fn(self) -> int:
        return sum(f.fn for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": {
                "tp": self.profile.tp_weight,
                "fp": self.profile.fp_weight,
                "fn": self.profile.fn_weight,
            },
            "threshold": self.threshold,
            "score": self.normalised,
            "raw": self.raw,
            "null": self.null,
            "perfect": self.perfect,
            "totals": {"tp": self.tp, "fp": self.fp, "fn": self.fn},
            "files": {
                f.name: {"tp": f.tp, "fp": f.fp, "fn": f.fn, "score": f.score} for f in self.files
            },
        }


@dataclass(frozen=True)
class CorpusScore:
    profiles: dict[str, ProfileScore]
    files: int
    rows: int
    windows: int
    scored_windows: int

    def __getitem__(self, profile: str) -> ProfileScore:
        return self.profiles[profile]

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {
            **extra,
            "files": self.files,
            "rows": self.rows,
            "windows": self.windows,
            "scored_windows": self.scored_windows,
            "profiles": {name: score.to_dict() for name, score in self.profiles.items()},
        }


def probation_length(rows: int) -> int:
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_MAX_ROWS)


def sigma(position: np.ndarray | float) -> np.ndarray:
    """NAB's scaled sigmoid ``2 / (1 + exp(5p)) - 1``: about 1 at p = -1, 0 at 0, -1 at 1."""
    p = np.clip(np.asarray(position, dtype=np.float64), -100.0, 100.0)
    return 2.0 / (1.0 + np.exp(5.0 * p)) - 1.0


_SIGMA_START = float(sigma(-1.0))


# --- reading --------------------------------------------------------------------------------


def _parse_timestamp(text: str, where: str) -> int:
    ns = parse_timestamp_ns(text)
    if ns is None:
        raise ValueError(f"{where}: timestamp {text!r} is not ISO 8601")
    return ns


def read_data_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps_ns, values)`` of a ``timestamp,value`` CSV; ValueError naming the line."""
    timestamps: list[int] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8-sig") as source:
        try:
            for line, ts_text, value_text in read_rows(source):
                timestamps.append(_parse_timestamp(ts_text, f"line {line}"))
                values.append(parse_value(value_text, line))
        except (ValueError, csv.Error) as exc:
            raise ValueError(f"{path}: {exc}") from None
    if not values:
        raise ValueError(f"{path}: no data rows")
    return np.array(timestamps, dtype=np.int64), np.array(values, dtype=np.float64)


def _window_rows(
    name: str, timestamps_ns: np.ndarray, windows: object
) -> tuple[tuple[int, int], ...]:
    """Inclusive row ranges of the labelled windows, bounds matched exactly and in order."""
    if not isinstance(windows, list):
        raise ValueError(f"labels entry {name!r} is not a list of [start, end] pairs")
    rows: list[tuple[int, int]] = []
    after = 0
    for window in windows:
        if not (
            isinstance(window, list | tuple)
            and len(window) == 2
            and all(isinstance(bound, str) for bound in window)
        ):
            raise ValueError(f"labels entry {name!r}: window {window!r} is not [start, end]")
        start_ns = _parse_timestamp(window[0], f"labels entry {name!r}")
        end_ns = _parse_timestamp(window[1], f"labels entry {name!r}")
        starts = np.flatnonzero(timestamps_ns[after:] == start_ns)
        if not len(starts):
            raise ValueError(
                f"labels entry {name!r}: window start {window[0]!r} is not a timestamp of the"
                " file after the previous window (windows must be in order, must not overlap)"
            )
        left = after + int(starts[0])
        ends = np.flatnonzero(timestamps_ns[left:] == end_ns)
        if not len(ends):
            raise ValueError(
                f"labels entry {name!r}: window end {window[1]!r} is not a timestamp of the"
                f" file at or after its start {window[0]!r}"
            )
        right = left + int(ends[0])
        rows.append((left, right))
        after = right + 1
    return tuple(rows)


def _csv_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.csv") if p.is_file())


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def load_corpus(data_dir: Path, labels_file: Path) -> list[LabelledFile]:
    """Every ``*.csv`` under ``data_dir`` (named by its path relative to it) with its windows.

    Each data file needs an entry in ``labels_file``; entries without a data file are ignored,
    so a folder holding part of the corpus can be scored.
    """
    data_dir, labels_file = Path(data_dir), Path(labels_file)
    if not data_dir.is_dir():
        raise ValueError(f"data directory {data_dir} does not exist")
    labels = _read_json(labels_file, "labels file")
    if not isinstance(labels, dict):
        raise ValueError(f"{labels_file}: expected an object of '<category>/<file>.csv' keys")
    paths = _csv_files(data_dir)
    if not paths:
        raise ValueError(f"no CSV files under {data_dir}")
    corpus = []
    for path in paths:
        name = path.relative_to(data_dir).as_posix()
        if name not in labels:
            raise ValueError(f"data file {name} has no entry in {labels_file}")
        timestamps_ns, values = read_data_csv(path)
        windows = _window_rows(name, timestamps_ns, labels[name])
        corpus.append(LabelledFile(name, timestamps_ns, values, windows))
    return corpus


def load_profiles(path: Path) -> list[Profile]:
    """NAB's ``profiles.json``: ``{name: {"CostMatrix": {"tpWeight", "fpWeight", "fnWeight"}}}``."""
    path = Path(path)
    raw = _read_json(path, "profiles file")
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected an object of profiles")
    profiles = []
    for name, body in raw.items():
        matrix = body.get("CostMatrix") if isinstance(body, dict) else None
        if not isinstance(matrix, dict):
            raise ValueError(f"{path}: profile {name!r} has no CostMatrix")
        weights = []
        for key in ("tpWeight", "fpWeight", "fnWeight"):
            weight = matrix.get(key)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"{path}: profile {name!r} lacks a numeric {key}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"{path}: profile {name!r}: {key} must be finite and >= 0")
            weights.append(float(weight))
        profiles.append(Profile(name, *weights))
    return profiles


def read_scores_csv(path: Path) -> ScoreSeries:
    """A ``timestamp,...,anomaly_score`` result CSV; ValueError naming the line."""
    timestamps: list[int] = []
    scores: list[float] = []
    with path.open(newline="", encoding="utf-8-sig") as source:
        reader = csv.reader(source)
        try:
            header = [column.strip() for column in next(reader, [])]
            missing = [c for c in ("timestamp", SCORE_COLUMN) if c not in header]
            if missing:
                raise ValueError(
                    f"line 1: header lacks column(s) {', '.join(missing)};"
                    f" expected 'timestamp,value,{SCORE_COLUMN}'"
                )
            ts_at, score_at = header.index("timestamp"), header.index(SCORE_COLUMN)
            width = max(ts_at, score_at) + 1
            for fields in reader:
                if not fields:
                    continue
                line = reader.line_num
                if len(fields) < width:
                    raise ValueError(
                        f"line {line}: expected at least {width} fields, got {len(fields)}"
                    )
                timestamps.append(_parse_timestamp(fields[ts_at], f"line {line}"))
                try:
                    score = float(fields[score_at])
                except ValueError:
                    score = math.nan
                if not math.isfinite(score):
                    raise ValueError(
                        f"line {line}: {SCORE_COLUMN} {fields[score_at]!r} is not a finite number"
                    )
                scores.append(score)
        except (ValueError, csv.Error) as exc:
            raise ValueError(f"{path}: {exc}") from None
    return ScoreSeries(path, np.array(timestamps, dtype=np.int64), np.array(scores))


def read_scores_dir(directory: Path, detector_name: str | None = None) -> dict[str, ScoreSeries]:
    """Result CSVs keyed by the data file they score, ``<category>/<file>.csv``.

    Accepts NAB's layout ``<detector>/<category>/<detector>_<file>.csv`` (``directory`` being
    the detector's folder, or its parent when ``detector_name`` names a subfolder) and plain
    ``<category>/<file>.csv``. The file prefix is ``detector_name``, else the folder's name.
    Top-level files (NAB's ``<detector>_<profile>_scores.csv`` summaries) are skipped.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"scores directory {directory} does not exist")
    if detector_name and (directory / detector_name).is_dir():
        directory = directory / detector_name
    prefix = f"{detector_name or directory.name}_"
    found: dict[str, ScoreSeries] = {}
    for path in _csv_files(directory):
        relative = path.relative_to(directory)
        if len(relative.parts) < 2:
            continue
        name = relative.with_name(relative.name.removeprefix(prefix)).as_posix()
        if name in found:
            raise ValueError(
                f"{directory}: both {found[name].path.name} and {path.name} score {name}"
            )
        found[name] = read_scores_csv(path)
    if not found:
        raise ValueError(f"no result CSVs under {directory}")
    return found


def match_scores(
    files: Sequence[LabelledFile], results: Mapping[str, ScoreSeries]
) -> dict[str, np.ndarray]:
    """The scores of each data file, checked row by row against its timestamps."""
    matched = {}
    for f in files:
        series = results.get(f.name)
        if series is None:
            raise ValueError(f"no result CSV for data file {f.name}")
        if len(series.scores) != f.rows:
            raise ValueError(
                f"{series.path}: {len(series.scores)} rows, but data file {f.name} has {f.rows}"
            )
        differ = np.flatnonzero(series.timestamps_ns != f.timestamps_ns)
        if len(differ):
            raise ValueError(
                f"{series.path}: data row {int(differ[0]) + 1} has another timestamp than in"
                f" data file {f.name}"
            )
        matched[f.name] = series.scores
    return matched


# --- running the project's detector ---------------------------------------------------------


def _detect(
    name: str, values: np.ndarray, timestamps_ns: np.ndarray, config: DetectorConfig | None
) -> tuple[str, np.ndarray, float]:
    """Scores of one file by a fresh detector (each row scored, then learned), as
    ``incidents score`` gives them."""
    started = time.perf_counter()
    pairs = zip(values.tolist(), timestamps_ns.tolist(), strict=True)
    scores = np.fromiter(score_values(pairs, config), dtype=np.float64, count=len(values))
    return name, scores, time.perf_counter() - started


def run_detector(
    files: Sequence[LabelledFile],
    config: DetectorConfig | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, np.ndarray]:
    """Each file scored by the project's online detector, ``workers`` files at a time."""
    total = len(files)
    scores: dict[str, np.ndarray] = {}

    def done(name: str, result: np.ndarray, seconds: float) -> None:
        scores[name] = result
        if progress is not None:
            progress(f"[{len(scores)}/{total}] {name}: {len(result)} rows in {seconds:.1f} s")

    # Largest first, so the two processes finish together.
    ordered = sorted(files, key=lambda f: f.rows, reverse=True)
    if workers <= 1 or total <= 1:
        for f in ordered:
            done(*_detect(f.name, f.values, f.timestamps_ns, config))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, total)) as pool:
            futures = [
                pool.submit(_detect, f.name, f.values, f.timestamps_ns, config) for f in ordered
            ]
            for future in as_completed(futures):
                done(*future.result())
    return {f.name: scores[f.name] for f in files}


# --- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """The scored (post-probation) rows of the corpus, concatenated, with per-row parts of the
    NAB score before weighting."""

    file_of_row: np.ndarray  # index into files
    window: np.ndarray  # global window id, -1 outside every window
    tp_part: np.ndarray  # sigma(p) / sigma(-1) inside a window, else 0
    fp_part: np.ndarray  # sigma(p) (or -1) outside every window, else 0
    scores: np.ndarray
    window_file: np.ndarray  # file index of each scored window
    window_best: np.ndarray  # tp_part of each scored window's first scored row


def _file_parts(f: LabelledFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``f``: local window index (-1 outside), tp part, fp part."""
    n = f.rows
    index = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    tp_part = np.zeros(n)
    fp_part = np.full(n, -1.0)
    if f.windows:
        lefts = np.array([w[0] for w in f.windows])
        rights = np.array([w[1] for w in f.windows])
        widths = rights - lefts + 1
        candidate = np.searchsorted(lefts, index, side="right") - 1
        inside = (candidate >= 0) & (index <= rights[np.maximum(candidate, 0)])
        window[inside] = candidate[inside]
        k = candidate[inside]
        tp_part[inside] = sigma(-(rights[k] - index[inside] + 1) / widths[k]) / _SIGMA_START
        fp_part[inside] = 0.0
        # The window that ended last before each row outside the windows.
        previous = np.searchsorted(rights, index, side="left") - 1
        after = ~inside & (previous >= 0)
        k = previous[after]
        span = (widths[k] - 1).astype(np.float64)
        with np.errstate(divide="ignore"):
            position = np.where(span > 0, (index[after] - rights[k]) / span, np.inf)
        fp_part[after] = np.where(position > FP_FAR_POSITION, -1.0, sigma(position))
    return window, tp_part, fp_part


def _prepare(files: Sequence[LabelledFile], scores_by_file: Mapping[str, np.ndarray]) -> _Rows:
    file_of_row, windows, tp_parts, fp_parts, scores = [], [], [], [], []
    window_file, window_best = [], []
    for i, f in enumerate(files):
        if f.name not in scores_by_file:
            raise ValueError(f"no anomaly scores for data file {f.name}")
        file_scores = np.asarray(scores_by_file[f.name], dtype=np.float64)
        if file_scores.shape != (f.rows,):
            raise ValueError(f"{f.name}: {file_scores.size} anomaly scores for {f.rows} rows")
        if not np.isfinite(file_scores).all():
            raise ValueError(f"{f.name}: anomaly scores must be finite numbers")
        window, tp_part, fp_part = _file_parts(f)
        keep = slice(f.probation, None)
        window = window[keep]
        # Windows with a scored row, numbered across the corpus in order.
        local_ids, first = np.unique(window[window >= 0], return_index=True)
        remap = np.full(len(f.windows) + 1, -1, dtype=np.int64)
        remap[local_ids] = len(window_best) + np.arange(len(local_ids))
        window_best.extend(tp_part[keep][window >= 0][first].tolist())
        window_file.extend([i] * len(local_ids))
        windows.append(remap[window])  # -1 maps to the last (unused) slot: stays -1
        file_of_row.append(np.full(len(window), i, dtype=np.int64))
        tp_parts.append(tp_part[keep])
        fp_parts.append(fp_part[keep])
        scores.append(file_scores[keep])
    return _Rows(
        np.concatenate(file_of_row),
        np.concatenate(windows),
        np.concatenate(tp_parts),
        np.concatenate(fp_parts),
        np.concatenate(scores),
        np.array(window_file, dtype=np.int64),
        np.array(window_best, dtype=np.float64),
    )


def _nothing_fires(scores: np.ndarray) -> float:
    top = float(scores.max()) if len(scores) else 0.0
    return NOTHING_FIRES if top < NOTHING_FIRES else float(np.nextafter(top, np.inf))


@dataclass(frozen=True)
class _Sweep:
    order: np.ndarray  # rows by descending score
    ends: np.ndarray  # last position in ``order`` of each distinct score
    thresholds: np.ndarray  # "nothing fires", then the distinct scores, descending


def _sweep_order(rows: _Rows) -> _Sweep:
    order = np.argsort(-rows.scores, kind="stable")
    ordered = rows.scores[order]
    ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True)) if len(order) else order
    thresholds = np.concatenate(([_nothing_fires(rows.scores)], ordered[ends]))
    return _Sweep(order, ends, thresholds)


def _raw_by_threshold(rows: _Rows, sweep: _Sweep, profile: Profile) -> np.ndarray:
    """The corpus raw score at each threshold of ``sweep``.

    Walking the rows by descending score, a row outside the windows adds its FP cost; a row in
    a window adds the improvement of that window's best (earliest) detection so far, which is a
    running maximum per window, done for all windows at once: with the in-window rows grouped by
    descending window id, the running maximum of ``-row`` restarts at each group by itself.
    """
    null = -profile.fn_weight * len(rows.window_best)
    gain = np.zeros(len(sweep.order))
    window = rows.window[sweep.order]
    outside = window < 0
    gain[outside] = profile.fp_weight * rows.fp_part[sweep.order[outside]]
    at = np.flatnonzero(~outside)  # positions in the sweep of in-window rows
    if len(at):
        grouped = at[np.argsort(-window[at], kind="stable")]
        row = sweep.order[grouped]
        earliest = -np.maximum.accumulate(-row)
        best = profile.tp_weight * rows.tp_part[earliest]
        group = window[grouped]
        first = np.append(True, group[1:] != group[:-1])
        before = np.where(first, -profile.fn_weight, np.roll(best, 1))
        gain[grouped] = best - before
    return null + np.concatenate(([0.0], np.cumsum(gain)[sweep.ends]))


def _file_results(
    files: Sequence[LabelledFile], rows: _Rows, profile: Profile, threshold: float
) -> tuple[FileResult, ...]:
    fired = rows.scores >= threshold
    n = len(files)
    fp_rows = fired & (rows.window < 0)
    fp = np.bincount(rows.file_of_row[fp_rows], minlength=n)
    fp_cost = np.bincount(
        rows.file_of_row[fp_rows], weights=profile.fp_weight * rows.fp_part[fp_rows], minlength=n
    )
    windows = len(rows.window_best)
    # The best detection of each window: the largest tp part among its fired rows.
    best = np.full(windows, -np.inf)
    hit = fired & (rows.window >= 0)
    np.maximum.at(best, rows.window[hit], rows.tp_part[hit])
    detected = np.isfinite(best)
    window_score = np.where(detected, profile.tp_weight * best, -profile.fn_weight)
    tp = np.bincount(rows.window_file[detected], minlength=n)
    fn = np.bincount(rows.window_file[~detected], minlength=n)
    window_total = np.bincount(rows.window_file, weights=window_score, minlength=n)
    return tuple(
        FileResult(f.name, int(tp[i]), int(fp[i]), int(fn[i]), float(fp_cost[i] + window_total[i]))
        for i, f in enumerate(files)
    )


def score_corpus(
    files: Sequence[LabelledFile],
    scores_by_file: Mapping[str, np.ndarray],
    profiles: Iterable[Profile],
    threshold: float | None = None,
) -> CorpusScore:
    """NAB scores of a detector's per-row anomaly scores, per profile, at each profile's best
    corpus-wide threshold (or at ``threshold`` when given)."""
    if not files:
        raise ValueError("no data files to score")
    rows = _prepare(files, scores_by_file)
    windows = len(rows.window_best)
    if windows == 0:
        raise ValueError(
            "the corpus has no labelled window after the probationary periods;"
            " the normalised score is undefined"
        )
    sweep = _sweep_order(rows) if threshold is None else None
    results = {}
    for profile in profiles:
        if sweep is None:
            chosen = float(threshold or 0.0)
        else:
            raw_by_threshold = _raw_by_threshold(rows, sweep, profile)
            # The first maximum: the highest of tied thresholds.
            chosen = float(sweep.thresholds[int(np.argmax(raw_by_threshold))])
        per_file = _file_results(files, rows, profile, chosen)
        raw = math.fsum(f.score for f in per_file)
        null = -profile.fn_weight * windows
        perfect = profile.tp_weight * float(rows.window_best.sum())
        if perfect <= null:
            raise ValueError(f"profile {profile.name!r}: tpWeight + fnWeight must be > 0")
        results[profile.name] = ProfileScore(
            profile=profile,
            threshold=chosen,
            raw=raw,
            null=null,
            perfect=perfect,
            normalised=100.0 * (raw - null) / (perfect - null),
            files=per_file,
        )
    if not results:
        raise ValueError("no scoring profiles")
    return CorpusScore(
        profiles=results,
        files=len(files),
        rows=sum(f.rows for f in files),
        windows=sum(len(f.windows) for f in files),
        scored_windows=windows,
    )


# --- reporting ------------------------------------------------------------------------------


def format_report(result: CorpusScore, title: str = "") -> str:
    """A table of the normalised score and threshold per profile, then the standard profile's
    TP/FP/FN totals (the first profile's when there is no ``standard``)."""
    lines = [title] if title else []
    lines.append(
        f"{'profile':<22}{'score':>8}{'threshold':>17}{'raw':>10}{'null':>9}{'perfect':>9}"
    )
    for name, score in result.profiles.items():
        lines.append(
            f"{name:<22}{score.normalised:>8.2f}{score.threshold:>17.12g}"
            f"{score.raw:>10.3f}{score.null:>9.2f}{score.perfect:>9.2f}"
        )
    name = "standard" if "standard" in result.profiles else next(iter(result.profiles))
    main = result.profiles[name]
    lines.append(
        f"at the {name} threshold {main.threshold:.12g}: TP {main.tp} and FN {main.fn} of"
        f" {result.scored_windows} windows, FP {main.fp} detections outside windows"
        f" ({result.files} files, {result.rows} rows)"
    )
    return "\n".join(lines)


def write_json(result: CorpusScore, path: Path, **extra: Any) -> None:
    """``result`` as JSON, with ``extra`` keys first (e.g. the detector's name)."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(json.dumps(result.to_dict(**extra), indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
