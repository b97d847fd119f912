"""The per-series online detector: a PyOD member and a forecast member, combined.

Protocol (``incidents.interfaces.SeriesDetector``): ``score_one(window)`` then
``learn_one(window)``, one window at a time. A score uses only learned windows plus the scored
one. State per series is bounded: a float32 ring of the last ``history + refit_every`` feature
rows, each member's calibration sample, a few coefficients.

Each member reports ``q``, the estimated probability of a window at least this unusual given its
history (``models.calibration``). The ensemble score is ``surprisal_score`` of the
Bonferroni-combined ``q`` (1.0 = a 1-in-10^``score_decades`` window); the per-member components
are ``1 - q`` ("more extreme than this fraction of history").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from incidents.schemas import WindowAggregate
from models.calibration import (
    DEFAULT_TAIL_FRACTION,
    combine_tail_probabilities,
    confidence,
    surprisal_score,
)
from models.features import MEAN, FeatureRing, is_finite_features, window_features
from models.forecast import ArimaOrder, ForecastMember
from models.outlier import PYOD_MODELS, PyodMember

FORECAST_MEMBERS = frozenset({"arima"})


class Member(Protocol):
    name: str
    refit_every: int

    def refit(self, history: FeatureRing) -> None: ...

    def tail_probability(self, features: np.ndarray, history: FeatureRing) -> float: ...

    def observe(self, features: np.ndarray, history: FeatureRing) -> None: ...


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Knobs of one series' detector; the defaults target about 8 KB pickled per series.

    ``members`` names PyOD models (``ecod``, ``copod``, ``hbos``) and/or ``arima`` (the
    forecast-residual member, which falls back to a robust z-score when ARIMA is unusable).
    ARIMA is refitted less often than the PyOD model because its fit costs ~10 ms, not ~1 ms.
    """

    history: int = 256
    refit_every: int = 32
    forecast_refit_every: int = 64
    min_history: int = 24
    members: tuple[str, ...] = ("ecod", "arima")
    arima_order: ArimaOrder = (1, 1, 1)
    tail_fraction: float = DEFAULT_TAIL_FRACTION
    score_decades: float = 4.0

    def __post_init__(self) -> None:
        known = set(PYOD_MODELS) | FORECAST_MEMBERS
        problems = [
            f"unknown member {m!r} (known: {sorted(known)})" for m in self.members if m not in known
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
        if len(self.arima_order) != 3 or min(self.arima_order) < 0 or self.arima_order[1] > 2:
            problems.append("arima_order must be (p, d, q) with p, q >= 0 and 0 <= d <= 2")
        if not 0.0 < self.tail_fraction < 1.0:
            problems.append("tail_fraction must be in (0, 1)")
        if self.score_decades <= 0.0:
            problems.append("score_decades must be > 0")
        if problems:
            raise ValueError("invalid DetectorConfig: " + "; ".join(problems))


def build_member(name: str, config: DetectorConfig) -> Member:
    if name in FORECAST_MEMBERS:
        return ForecastMember(
            name,
            config.arima_order,
            config.history,
            config.forecast_refit_every,
            config.tail_fraction,
        )
    return PyodMember(name, config.history, config.refit_every)


class EnsembleDetector:
    """Online ensemble detector for one series (implements ``SeriesDetector``).

    Non-finite windows score 0.0 and are not learned, so one bad aggregate cannot poison the
    history.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.members: tuple[Member, ...] = tuple(build_member(m, config) for m in config.members)
        self._history = FeatureRing(config.history + config.refit_every)
        self._previous_mean: float | None = None
        self._memo: tuple[WindowAggregate, int, float, dict[str, float]] | None = None

    @property
    def learned(self) -> int:
        return self._history.total

    @property
    def warmed_up(self) -> bool:
        return self.learned >= self.config.min_history

    def score_one(self, aggregate: WindowAggregate) -> float:
        return self.score_with_components(aggregate)[0]

    def score_components(self, aggregate: WindowAggregate) -> dict[str, float]:
        return dict(self.score_with_components(aggregate)[1])

    def score_with_components(self, aggregate: WindowAggregate) -> tuple[float, dict[str, float]]:
        """Ensemble score and per-member ``1 - q``; memoised, so calling both APIs costs one."""
        memo = self._memo
        if memo is not None and memo[1] == self.learned and memo[0] == aggregate:
            return memo[2], memo[3]
        score, components = self._evaluate(aggregate)
        self._memo = (aggregate, self.learned, score, components)
        return score, components

    def learn_one(self, aggregate: WindowAggregate) -> None:
        features = window_features(aggregate, self._previous_mean)
        if not is_finite_features(features):
            return
        for member in self.members:
            member.observe(features, self._history)
        self._history.append(features)
        self._previous_mean = float(features[MEAN])
        for member in self.members:
            if self._refit_due(member):
                member.refit(self._history)

    def _evaluate(self, aggregate: WindowAggregate) -> tuple[float, dict[str, float]]:
        features = window_features(aggregate, self._previous_mean)
        if not self.warmed_up or not is_finite_features(features):
            return 0.0, {member.name: 0.0 for member in self.members}
        qs = {m.name: m.tail_probability(features, self._history) for m in self.members}
        score = surprisal_score(combine_tail_probabilities(qs.values()), self.config.score_decades)
        return score, {name: confidence(q) for name, q in qs.items()}

    def _refit_due(self, member: Member) -> bool:
        since = self.learned - self.config.min_history
        return since >= 0 and since % member.refit_every == 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_memo"] = None
        return state


def build_detector(config: DetectorConfig | None = None) -> EnsembleDetector:
    """A fresh detector for one series (a ``DetectorFactory`` when called without arguments)."""
    return EnsembleDetector(config or DetectorConfig())
