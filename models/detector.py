"""The online detector: ECOD on window features plus an ARIMA forecast residual, for many series.

``DetectorBank`` keeps the detectors of many series as rows of a few arrays, so the windows of a
few hundred series that close together are scored in one vectorised pass (about 100x cheaper per
window than one PyOD model and one statsmodels ARIMA per series). Per series it holds a float32
ring of the last ``history`` feature rows, the rows ECOD was last fitted on (sorted per column,
so a score is a binary search), each member's calibration sample and a few coefficients (25 KB),
and for the ``knn`` member the last ``neighbour_span + max(neighbour_dims)`` window means and
its last ``neighbour_calibration`` distances per sub-sequence length (12 KB): about 37 KB.

Protocol: ``score_batch(windows)`` scores each window, then learns it, in order. A score uses only
learned windows plus the scored one. ``SingleSeriesDetector`` offers the one-series
``score_one``/``learn_one`` protocol (``incidents.interfaces.SeriesDetector``) on top.

Each member reports ``q``, the estimated probability of a window at least this unusual given its
history (``models.calibration``):

- ``ecod``: the ECOD score of the window's features against the rows it was last fitted on
  (refitted every ``refit_every`` windows), calibrated on the in-sample scores of those rows.
- ``knn``: the distance from the newest sub-sequences of window means (lengths
  ``neighbour_dims``) to their nearest earlier ones (``models.neighbours``), calibrated on the
  member's own past distances: an unusual *pattern*, even within the usual range of values.
- ``arima``: the absolute one-step residual of the window mean, calibrated on in-sample
  residuals (refitted every ``forecast_refit_every`` windows); a robust z-score when ARIMA is
  unusable.

The ensemble score is the members' weighted surprisal ``sum_k w_k log10(1 / q_k)`` over
``score_decades``, capped at 1.0 (``models.calibration.weighted_surprisal``): ``knn`` counts fully,
``ecod`` and ``arima`` with weight 0.3 (``DetectorConfig.member_weights``, scaled so that the
strongest configured member has weight 1). A pattern change alone can raise an alarm; a value or
forecast surprise needs to be extreme, or to come with an unusual pattern. The score is damped
unless it exceeds the series' recent scores (see ``DetectorConfig.onset_window``); the per-member
components are ``1 - q``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from incidents.schemas import WindowAggregate
from models.calibration import (
    DEFAULT_TAIL_FRACTION,
    TailTable,
    confidence,
    fit_tail,
    tail_probability_of,
    weighted_surprisal,
)
from models.ecod import ecod_scores, ecod_training_scores
from models.features import FEATURE_DTYPE, FEATURE_NAMES, MEAN, window_features
from models.forecast import (
    BURN_IN,
    MAX_COEFFICIENT,
    MIN_FIT_VALUES,
    arma_residuals,
    hannan_rissanen,
    resolution,
    robust_level,
    two_sided_normal_tail,
)
from models.neighbours import nearest_distances

MEMBERS = ("knn", "ecod", "arima")
MEMBER_WEIGHTS: tuple[tuple[str, float], ...] = (("knn", 1.0), ("ecod", 0.3), ("arima", 0.3))
MIN_ECOD_SCALE = 1e-6
NO_FORECAST, ARIMA, ROBUST_LEVEL = 0, 1, 2

Scored = tuple[float, dict[str, float]]
"""A window's ensemble score in [0, 1] and each member's ``1 - q``."""


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Knobs of the detector; the defaults keep about 37 KB of state per series (25 KB without
    the ``knn`` member).

    ARIMA is refitted less often than ECOD: its calibration sample changes more slowly.
    """

    history: int = 512
    """Feature rows ECOD is fitted on and ARIMA residuals are calibrated on: with 256, a daily
    cycle of 5-minute data (288 windows) did not fit, and every day's regular peak was news."""
    refit_every: int = 32
    forecast_refit_every: int = 64
    min_history: int = 24
    members: tuple[str, ...] = MEMBERS
    tail_fraction: float = DEFAULT_TAIL_FRACTION
    member_weights: tuple[tuple[str, float], ...] = MEMBER_WEIGHTS
    """Each member's weight in the ensemble's surprisal sum (see the module docstring)."""
    score_decades: float = 4.0
    neighbour_dims: tuple[int, ...] = (5, 20)
    """Sub-sequence lengths of the ``knn`` member (one calibrated distance each)."""
    neighbour_span: int = 1000
    """How far back the ``knn`` member looks for a similar sub-sequence, in windows."""
    neighbour_calibration: int = 1000
    """How many of its own past distances the ``knn`` member calibrates against."""
    onset_window: int = 30
    onset_damping: float = 0.3
    """A score that does not exceed the series' highest score of the last ``onset_window``
    windows is multiplied by ``onset_damping``: an anomaly is reported at its onset, not again
    for every window it lasts (each repeat would be another alarm)."""

    def __post_init__(self) -> None:
        problems = [
            f"unknown member {m!r} (known: {sorted(MEMBERS)})"
            for m in self.members
            if m not in MEMBERS
        ]
        if not self.members:
            problems.append("members must not be empty")
        if len(set(self.members)) != len(self.members):
            problems.append("members must be distinct")
        if self.min_history < 2:
            problems.append("min_history must be >= 2")
        if self.history < self.min_history:
            problems.append("history must be >= min_history")
        if self.refit_every < 1 or self.forecast_refit_every < 1:
            problems.append("refit intervals must be >= 1")
        if not 0.0 < self.tail_fraction < 1.0:
            problems.append("tail_fraction must be in (0, 1)")
        weights = dict(self.member_weights)
        missing = [m for m in self.members if m in MEMBERS and m not in weights]
        if missing:
            problems.append(f"member_weights lacks {missing}")
        elif self.members and not max((weights.get(m, 0.0) for m in self.members), default=0) > 0:
            problems.append("member_weights must give some member a positive weight")
        if any(w < 0 for w in weights.values()):
            problems.append("member_weights must not be negative")
        if self.score_decades <= 0.0:
            problems.append("score_decades must be > 0")
        if not self.neighbour_dims or min(self.neighbour_dims) < 1:
            problems.append("neighbour_dims must be positive lengths")
        if self.neighbour_span < 2 * max(self.neighbour_dims or (1,)):
            problems.append("neighbour_span must be at least twice the longest neighbour_dims")
        if self.neighbour_calibration < 2:
            problems.append("neighbour_calibration must be >= 2")
        if self.onset_window < 0 or not 0.0 <= self.onset_damping <= 1.0:
            problems.append("onset_window must be >= 0 and onset_damping in [0, 1]")
        if problems:
            raise ValueError("invalid DetectorConfig: " + "; ".join(problems))


class DetectorBank:
    """The detectors of many series, one row each. Implements ``BatchDetector``.

    Non-finite windows score 0.0 and are not learned, so one bad aggregate cannot poison the
    history.
    """

    _PER_ROW = (
        "ring",
        "ordered",
        "total",
        "previous_mean",
        "fit_size",
        "forecast_mode",
        "drift",
        "phi",
        "theta",
        "last_difference",
        "innovation",
        "location",
        "spread",
        "values",
        "distances",
        "distance_tail",
        "recent_scores",
    )

    def __init__(self, config: DetectorConfig | None = None, capacity: int = 16) -> None:
        self.config = config or DetectorConfig()
        self.index: dict[str, int] = {}
        self.capacity = max(capacity, 1)
        rows, history, width = self.capacity, self.config.history, len(FEATURE_NAMES)
        self.ring = np.full((rows, history, width), np.nan, dtype=FEATURE_DTYPE)
        self.ordered = np.full((rows, history, width), np.nan, dtype=FEATURE_DTYPE)
        self.total = np.zeros(rows, dtype=np.int64)
        self.previous_mean = np.full(rows, np.nan, dtype=FEATURE_DTYPE)
        self.fit_size = np.zeros(rows, dtype=np.int64)
        self.forecast_mode = np.zeros(rows, dtype=np.int8)
        self.drift = np.zeros(rows)
        self.phi = np.zeros(rows)
        self.theta = np.zeros(rows)
        self.last_difference = np.zeros(rows)
        self.innovation = np.zeros(rows)
        self.location = np.zeros(rows)
        self.spread = np.ones(rows)
        config = self.config
        knn = "knn" in config.members
        dims = len(config.neighbour_dims)
        span = config.neighbour_span + max(config.neighbour_dims) if knn else 0
        self.values = np.zeros((rows, span), dtype=FEATURE_DTYPE)
        calibration = config.neighbour_calibration if knn else 0
        self.distances = np.full((rows, dims, calibration), np.nan, dtype=FEATURE_DTYPE)
        # per dim: sample size, threshold, its probability, scale, shape (calibration.fit_tail)
        self.distance_tail = np.zeros((rows, dims, 5))
        self.recent_scores = np.zeros((rows, config.onset_window), dtype=FEATURE_DTYPE)
        fraction = self.config.tail_fraction
        self.ecod_table = TailTable(rows, history, fraction)
        self.forecast_table = TailTable(rows, history, fraction)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def weights(self) -> np.ndarray:
        """The configured members' weights, the strongest scaled to 1."""
        given = dict(self.config.member_weights)
        weights = np.array([given[m] for m in self.config.members], dtype=np.float64)
        return weights / weights.max()

    def learned(self, series: str) -> int:
        row = self.index.get(series)
        return 0 if row is None else int(self.total[row])

    def score_batch(self, windows: Sequence[WindowAggregate]) -> list[Scored]:
        """Score each window, then learn it; windows of one series are taken in order."""
        out: list[Scored | None] = [None] * len(windows)
        for positions in self._rounds(windows):
            batch = [windows[i] for i in positions]
            rows = self._rows(batch)
            features = window_features(batch, self.previous_mean[rows])
            scored, learned = self._evaluate(rows, features)
            self._learn(rows, features, *learned)
            for i, result in zip(positions, scored, strict=True):
                out[i] = result
        return out  # type: ignore[return-value]

    def evaluate(self, windows: Sequence[WindowAggregate]) -> list[Scored]:
        """Scores against the current state, learning nothing (nor adding unseen series, which
        score 0.0 as in their warm-up)."""
        known = [i for i, w in enumerate(windows) if self._row_of(w) is not None]
        out: list[Scored] = [(0.0, dict.fromkeys(self.config.members, 0.0)) for _ in windows]
        if known:
            batch = [windows[i] for i in known]
            rows = self._rows(batch)
            features = window_features(batch, self.previous_mean[rows])
            for i, scored in zip(known, self._evaluate(rows, features)[0], strict=True):
                out[i] = scored
        return out

    def learn(self, windows: Sequence[WindowAggregate]) -> None:
        for positions in self._rounds(windows):
            batch = [windows[i] for i in positions]
            rows = self._rows(batch)
            features = window_features(batch, self.previous_mean[rows])
            self._learn(rows, features, *self._evaluate(rows, features)[1])

    def _evaluate(
        self, rows: np.ndarray, features: np.ndarray
    ) -> tuple[list[Scored], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Scores, and what learning these windows needs: the forecast residuals, the
        undamped scores and the neighbour distances."""
        config = self.config
        finite = np.isfinite(features).all(axis=1)
        warm = np.flatnonzero(finite & (self.total[rows] >= config.min_history))
        residual = self._forecast_residual(rows, features[:, MEAN])
        qs = np.ones((len(config.members), len(rows)))
        distances = np.full((len(rows), len(config.neighbour_dims)), np.nan)
        for k, member in enumerate(config.members):
            if member == "ecod":
                qs[k, warm] = self._ecod_q(rows[warm], features[warm])
            elif member == "knn":
                distances[finite] = self._neighbour_distances(rows[finite], features[finite, MEAN])
                qs[k, warm] = self._neighbour_q(rows[warm], distances[warm])
            else:
                qs[k, warm] = self._forecast_q(rows[warm], features[warm, MEAN], residual[warm])
        raw = weighted_surprisal(qs, self.weights, config.score_decades)
        scores = self._at_onset(rows, raw)
        components = np.zeros_like(qs)
        components[:, warm] = confidence(qs[:, warm])
        names = config.members
        scored = [
            (score, dict(zip(names, parts, strict=True)))
            for score, parts in zip(scores.tolist(), components.T.tolist(), strict=True)
        ]
        return scored, (residual, raw, distances)

    def _ecod_q(self, rows: np.ndarray, features: np.ndarray) -> np.ndarray:
        size = self.fit_size[rows]
        raw = ecod_scores(self.ordered, rows, size, features)
        return np.where(size > 0, self.ecod_table.tail_probability(rows, raw), 1.0)

    def _neighbour_distances(self, rows: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """(rows, dims): each series' nearest-neighbour distance at each sub-sequence length."""
        config = self.config
        length = self.values.shape[1]
        total = self.total[rows]
        slots = (total[:, None] - length + np.arange(length)[None, :]) % length
        history = self.values[rows[:, None], slots].astype(np.float64)
        return nearest_distances(
            history, total, mean.astype(np.float64), config.neighbour_dims, config.neighbour_span
        )

    def _neighbour_q(self, rows: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """The smaller tail probability of the distances, each against its own history."""
        qs = np.ones(distances.shape)
        for k in range(distances.shape[1]):
            size, threshold, probability, scale, shape = self.distance_tail[rows, k].T
            qs[:, k] = tail_probability_of(
                self.distances[rows, k], size, threshold, probability, scale, shape, distances[:, k]
            )
        return qs.min(axis=1)

    def _at_onset(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if not self.config.onset_window:
            return scores
        before = self.recent_scores[rows].max(axis=1)
        return np.where(scores > before, scores, scores * self.config.onset_damping)

    def _forecast_residual(self, rows: np.ndarray, mean: np.ndarray) -> np.ndarray:
        drift = self.drift[rows]
        with np.errstate(invalid="ignore", over="ignore"):
            difference = mean.astype(np.float64) - self.previous_mean[rows]
            return (
                difference
                - drift
                - self.phi[rows] * (self.last_difference[rows] - drift)
                - self.theta[rows] * self.innovation[rows]
            )

    def _forecast_q(self, rows: np.ndarray, mean: np.ndarray, residual: np.ndarray) -> np.ndarray:
        mode = self.forecast_mode[rows]
        arima = self.forecast_table.tail_probability(rows, np.abs(residual))
        z = (mean - self.location[rows]) / self.spread[rows]
        robust = two_sided_normal_tail(z)
        return np.where(mode == ARIMA, arima, np.where(mode == ROBUST_LEVEL, robust, 1.0))

    def _learn(
        self,
        rows: np.ndarray,
        features: np.ndarray,
        residual: np.ndarray,
        scores: np.ndarray,
        distances: np.ndarray,
    ) -> None:
        keep = np.isfinite(features).all(axis=1)
        rows, features, residual = rows[keep], features[keep], residual[keep]
        scores, distances = scores[keep], distances[keep]
        if not len(rows):
            return
        config = self.config
        if config.onset_window:
            self.recent_scores[rows, self.total[rows] % config.onset_window] = scores
        if "knn" in config.members:
            self.values[rows, self.total[rows] % self.values.shape[1]] = features[:, MEAN]
            slot = self.total[rows] % config.neighbour_calibration
            for k in range(distances.shape[1]):
                known = np.isfinite(distances[:, k])
                self.distances[rows[known], k, slot[known]] = distances[known, k]
        mean = features[:, MEAN]
        fitted = self.forecast_mode[rows] == ARIMA
        difference = np.where(np.isnan(self.previous_mean[rows]), 0.0, features[:, -1])
        self.innovation[rows] = np.where(fitted, residual, 0.0)
        self.last_difference[rows] = difference
        total = self.total[rows]
        self.ring[rows, total % self.config.history] = features
        self.total[rows] = total + 1
        self.previous_mean[rows] = mean
        self._refit(rows)

    def _refit(self, rows: np.ndarray) -> None:
        config = self.config
        since = self.total[rows] - config.min_history
        ecod = rows[(since >= 0) & (since % config.refit_every == 0)]
        arima = rows[(since >= 0) & (since % config.forecast_refit_every == 0)]
        if "ecod" in config.members and len(ecod):
            for group, training in self._training_groups(ecod):
                self.ecod_table.fit(group, ecod_training_scores(training), MIN_ECOD_SCALE)
                size = training.shape[1]
                self.ordered[group, :size] = np.sort(training, axis=1)
                self.ordered[group, size:] = np.nan
                self.fit_size[group] = size
        if "arima" in config.members and len(arima):
            for group, training in self._training_groups(arima):
                self._fit_forecast(group, training[:, :, MEAN].astype(np.float64))
        if "knn" in config.members and len(ecod):
            for k in range(len(config.neighbour_dims)):
                sample = self.distances[ecod, k]
                _, size, threshold, probability, scale, shape = fit_tail(
                    sample, resolution(np.nan_to_num(sample)), config.tail_fraction
                )
                tail = np.stack([size, threshold, probability, scale, shape], 1)
                self.distance_tail[ecod, k] = tail

    def _training_groups(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The last ``min(total, history)`` feature rows of each series, oldest first, grouped
        by that length (series that advance together form one group)."""
        ring = self.config.history
        total = self.total[rows]
        sizes = np.minimum(total, self.config.history)
        groups = []
        for size in np.unique(sizes).tolist():
            group = rows[sizes == size]
            start = self.total[group, None] - size
            slots = (start + np.arange(size)[None, :]) % ring
            groups.append((group, self.ring[group[:, None], slots]))
        return groups

    def _fit_forecast(self, rows: np.ndarray, means: np.ndarray) -> None:
        floor = resolution(means)
        usable = means.std(axis=1) > floor
        fitted = np.zeros(len(rows), dtype=bool)
        if means.shape[1] >= MIN_FIT_VALUES:
            differences = np.diff(means, axis=1)
            drift, phi, theta = hannan_rissanen(differences)
            fitted = usable & np.isfinite(phi) & np.isfinite(theta)
            if fitted.any():
                f = np.flatnonzero(fitted)
                phi = np.clip(phi[f], -MAX_COEFFICIENT, MAX_COEFFICIENT)
                theta = np.clip(theta[f], -MAX_COEFFICIENT, MAX_COEFFICIENT)
                residuals = arma_residuals(differences[f], drift[f], phi, theta)
                target = rows[f]
                self.forecast_table.fit(target, np.abs(residuals[:, BURN_IN:]), floor[f])
                self.drift[target], self.phi[target], self.theta[target] = drift[f], phi, theta
                self.innovation[target] = residuals[:, -1]
                self.last_difference[target] = differences[f, -1]
                self.forecast_mode[target] = ARIMA
        rest = np.flatnonzero(~fitted)
        if len(rest):
            target = rows[rest]
            self.location[target], self.spread[target] = robust_level(means[rest], floor[rest])
            self.forecast_mode[target] = ROBUST_LEVEL
            self.drift[target] = self.phi[target] = self.theta[target] = 0.0
            self.innovation[target] = 0.0

    def _row_of(self, window: WindowAggregate) -> int | None:
        return self.index.get(window.series)

    def _rounds(self, windows: Sequence[WindowAggregate]) -> list[list[int]]:
        return _rounds(windows)

    def _rows(self, windows: Sequence[WindowAggregate]) -> np.ndarray:
        index = self.index
        rows = [index.get(w.series, -1) for w in windows]
        if -1 in rows:
            for i, row in enumerate(rows):
                if row == -1:
                    series = windows[i].series
                    row = index.get(series, -1)
                    if row == -1:
                        row = index[series] = len(index)
                    rows[i] = row
            self._grow(len(index))
        return np.array(rows, dtype=np.int64)

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity)
        fresh = DetectorBank(self.config, capacity - self.capacity)
        for name in self._PER_ROW:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(fresh, name)]))
        self.ecod_table.grow(capacity)
        self.forecast_table.grow(capacity)
        self.capacity = capacity

    def __getstate__(self) -> dict[str, Any]:
        """Only the rows in use (a snapshot is taken at every epoch)."""
        used = len(self.index)
        state = dict(self.__dict__)
        for name in self._PER_ROW:
            state[name] = state[name][:used]
        state["ecod_table"] = self.ecod_table.head(used)
        state["forecast_table"] = self.forecast_table.head(used)
        state["capacity"] = used
        return state


def _rounds(windows: Sequence[WindowAggregate]) -> list[list[int]]:
    """Positions split so that each series occurs at most once per round, in order."""
    if len({w.series for w in windows}) == len(windows):
        return [list(range(len(windows)))]
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for i, window in enumerate(windows):
        k = seen.get(window.series, 0)
        seen[window.series] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


class _OneSeriesBank(DetectorBank):
    """A bank of exactly one series, whatever the windows' series names."""

    SERIES = "series"

    def _row_of(self, window: WindowAggregate) -> int | None:
        return self.index.get(self.SERIES)

    def _rounds(self, windows: Sequence[WindowAggregate]) -> list[list[int]]:
        return [[i] for i in range(len(windows))]

    def _rows(self, windows: Sequence[WindowAggregate]) -> np.ndarray:
        if not self.index:
            self.index[self.SERIES] = 0
        return np.zeros(len(windows), dtype=np.int64)


class SingleSeriesDetector:
    """One series on its own bank: the ``SeriesDetector`` protocol (score, then learn).

    Every window is taken as the same series, whatever its ``series`` name.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.bank = _OneSeriesBank(config, capacity=1)

    @property
    def config(self) -> DetectorConfig:
        return self.bank.config

    def score_one(self, aggregate: WindowAggregate) -> float:
        return self.bank.evaluate([aggregate])[0][0]

    def score_components(self, aggregate: WindowAggregate) -> Mapping[str, float]:
        return self.bank.evaluate([aggregate])[0][1]

    def learn_one(self, aggregate: WindowAggregate) -> None:
        self.bank.learn([aggregate])

    def score_and_learn(self, aggregate: WindowAggregate) -> Scored:
        return self.bank.score_batch([aggregate])[0]

    @property
    def learned(self) -> int:
        return int(self.bank.total[:1].sum())


def build_detector(config: DetectorConfig | None = None) -> SingleSeriesDetector:
    """A fresh one-series detector (a ``DetectorFactory`` when called without arguments)."""
    return SingleSeriesDetector(config)


def build_bank(config: DetectorConfig | None = None) -> DetectorBank:
    """A fresh detector bank for one shard of series."""
    return DetectorBank(config)
