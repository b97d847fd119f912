"""The seed README's analysis API, backed by the product's own models::

    from incidents.analyzers import AnomalyDetector, PredictiveAnalyzer

    detector = AnomalyDetector()
    anomalies = await detector.detect_anomalies(metrics_data)

    predictor = PredictiveAnalyzer()
    predictions = await predictor.predict_incidents(historical_data)

``data`` is a sequence of numbers, a sequence of ``(timestamp, value)`` pairs (or of
``{"timestamp": ..., "value": ...}`` records), or a mapping ``series name -> such a sequence``.
Timestamps are ``datetime`` (naive = UTC), ISO 8601 text, or epoch numbers (seconds,
milliseconds, microseconds or nanoseconds, told apart by size). ``None``/NaN values are missing.

- ``detect_anomalies`` scores every point with the dataflow's online detector, strictly in order
  (each point scored before it is learned, one point per window, as ``incidents score`` does) and
  returns the points whose score reaches ``threshold`` (every point with ``all_points=True``).
- ``predict_incidents`` fits a per-series ARIMA to each history and returns a predicted incident
  for every limit whose prediction interval the forecast reaches within ``horizon`` steps, with
  the predicted time of the breach. A series' limits come from ``limits`` (a name or an
  ``fnmatch`` pattern -> a number, meaning "above", or a ``Limit``); a series with none is held
  to its own historical envelope: median +- ``envelope_sigmas`` robust standard deviations.

``incidents`` imports nothing from ``models``: the models come in through ``AnalysisBackend``,
found under the entry-point group ``incidents.analyzers`` (this package registers
``models.analysis:ModelBackend`` as ``default``), or passed in as ``backend=``. The work runs in a
thread (``asyncio.to_thread``), so the event loop is not blocked.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

ENTRY_POINT_GROUP = "incidents.analyzers"
DEFAULT_BACKEND = "default"
DEFAULT_SERIES = "series"
DEFAULT_THRESHOLD = 0.95
"""``ANOMALY_THRESHOLD``'s default: the score at which the dataflow opens an incident."""
DEFAULT_HORIZON = 12
DEFAULT_LEVEL = 0.95
DEFAULT_ENVELOPE_SIGMAS = 4.0
MAD_TO_SIGMA = 1.4826

Direction = Literal["above", "below"]
Timestamp = datetime | float | int | None


# --- the backend interface ---------------------------------------------------------------------


class BreachLike(Protocol):
    """A forecast's first step past a limit (``models.forecasting.Breach`` is one)."""

    @property
    def step(self) -> int: ...
    @property
    def limit(self) -> float: ...
    @property
    def direction(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def bound(self) -> float: ...
    @property
    def probability(self) -> float: ...


@runtime_checkable
class AnalysisBackend(Protocol):
    """What the analyzers need from the models room."""

    def anomaly_scores(self, values: Sequence[float], times_ns: Sequence[int]) -> Sequence[float]:
        """One score in [0, 1] per value, in order, each before the value is learned."""
        ...

    def forecast_breaches(
        self,
        values: Sequence[float],
        limits: Sequence[tuple[float, str]],
        horizon: int,
        level: float,
    ) -> Sequence[BreachLike]:
        """Fit a forecaster to ``values`` (evenly spaced, NaN = missing) and return, for each
        ``(limit, direction)`` whose ``level`` prediction interval reaches it within ``horizon``
        steps, the first such step."""
        ...


class BackendNotFoundError(LookupError):
    """No analysis backend is installed under the ``incidents.analyzers`` entry-point group."""


def load_backend(name: str | None = None) -> AnalysisBackend:
    """The backend registered as ``name`` (default: ``default``, else the only one) under the
    ``incidents.analyzers`` entry-point group, instantiated."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name is None:
        name = DEFAULT_BACKEND if DEFAULT_BACKEND in found or len(found) != 1 else next(iter(found))
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise BackendNotFoundError(
            f"no analysis backend {name!r} in the entry-point group {ENTRY_POINT_GROUP!r}"
            f" (installed: {installed}). Install the package with its models"
            " (`pip install -e .` registers models.analysis:ModelBackend as 'default'),"
            " or pass backend=... to AnomalyDetector/PredictiveAnalyzer."
        )
    factory = found[name].load()
    backend = factory()
    if not isinstance(backend, AnalysisBackend):
        raise BackendNotFoundError(
            f"entry point {name!r} of {ENTRY_POINT_GROUP!r} ({found[name].value}) did not give an"
            " AnalysisBackend (anomaly_scores, forecast_breaches)"
        )
    return backend


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnomalyResult:
    """One scored point: ``index`` in its series, its timestamp as given (None without)."""

    series: str
    index: int
    timestamp: Any
    value: float
    score: float
    is_anomaly: bool


@dataclass(frozen=True, slots=True)
class Limit:
    value: float
    direction: Direction = "above"

    def __post_init__(self) -> None:
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', not {self.direction!r}")
        if not math.isfinite(self.value):
            raise ValueError("a limit must be a finite number")


@dataclass(frozen=True, slots=True)
class PredictedIncident:
    """A forecast breach: ``series`` is predicted past ``limit`` ``steps_ahead`` steps after its
    last point, at ``predicted_time`` (same kind as the input's timestamps: ``datetime`` for
    datetimes and ISO text, a number in the input's unit for epoch numbers; None without
    timestamps) and at position ``predicted_index`` of the series.

    ``forecast_value`` is the forecast mean there and ``bound`` the interval bound that reached
    the limit; ``probability`` the forecast's probability of being past the limit at that step.
    ``limit_source`` is ``configured`` or ``envelope``.
    """

    series: str
    limit: float
    direction: Direction
    steps_ahead: int
    predicted_index: int
    predicted_time: Any
    forecast_value: float
    bound: float
    probability: float
    limit_source: str


# --- input shapes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Series:
    values: list[float]
    stamps: list[Any]  # as given
    seconds: list[float] | None  # epoch seconds, when every point has a timestamp
    kind: str  # "datetime" | "number" | "none"
    unit: float  # seconds per unit of numeric timestamps


def _normalise(data: Any) -> dict[str, _Series]:
    if isinstance(data, Mapping):
        if not data:
            return {}
        if not all(isinstance(name, str) for name in data):
            raise TypeError("a mapping of series must have str keys (series names)")
        return {name: _series(name, points) for name, points in data.items()}
    return {DEFAULT_SERIES: _series(DEFAULT_SERIES, data)}


def _series(name: str, points: Any) -> _Series:
    if isinstance(points, str | bytes) or not isinstance(points, Iterable):
        raise TypeError(
            f"series {name!r}: expected a sequence of numbers or (timestamp, value) pairs,"
            f" got {type(points).__name__}"
        )
    items = list(points)
    values: list[float] = []
    stamps: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            if "value" not in item:
                raise TypeError(f"series {name!r} item {i}: a record needs a 'value' key")
            stamps.append(item.get("timestamp", item.get("time")))
            values.append(_value(item["value"], name, i))
        elif isinstance(item, tuple | list):
            if len(item) != 2:
                raise TypeError(
                    f"series {name!r} item {i}: expected a (timestamp, value) pair,"
                    f" got {len(item)} elements"
                )
            stamps.append(item[0])
            values.append(_value(item[1], name, i))
        else:
            stamps.append(None)
            values.append(_value(item, name, i))
    return _with_times(name, values, stamps)


def _value(raw: Any, name: str, i: int) -> float:
    if raw is None:
        return math.nan
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"series {name!r} item {i}: value {raw!r} is not a number") from None
    return value if math.isfinite(value) else math.nan


def _with_times(name: str, values: list[float], stamps: list[Any]) -> _Series:
    if not stamps or all(stamp is None for stamp in stamps):
        return _Series(values, stamps, None, "none", 1.0)
    if any(stamp is None for stamp in stamps):
        raise ValueError(f"series {name!r}: some points have a timestamp and some do not")
    if all(_is_number(stamp) for stamp in stamps):
        unit = _epoch_unit(max(abs(float(stamp)) for stamp in stamps))
        return _Series(values, stamps, [float(s) * unit for s in stamps], "number", unit)
    seconds = [_epoch_seconds(stamp, name, i) for i, stamp in enumerate(stamps)]
    return _Series(values, stamps, seconds, "datetime", 1.0)


def _is_number(stamp: Any) -> bool:
    return isinstance(stamp, int | float) and not isinstance(stamp, bool)


def _epoch_unit(biggest: float) -> float:
    """Seconds per unit of epoch numbers of this size (ns, us, ms or s)."""
    for threshold, unit in ((1e17, 1e-9), (1e14, 1e-6), (1e11, 1e-3)):
        if biggest >= threshold:
            return unit
    return 1.0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_seconds(stamp: Any, name: str, i: int) -> float:
    moment = stamp
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp.strip())
        except ValueError:
            raise ValueError(
                f"series {name!r} item {i}: timestamp {stamp!r} is not ISO 8601"
            ) from None
    if not isinstance(moment, datetime):
        raise TypeError(
            f"series {name!r} item {i}: timestamp {stamp!r} must be a datetime, ISO 8601 text or"
            " an epoch number (all points of a series alike)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH).total_seconds()


def _step_seconds(seconds: list[float]) -> float | None:
    steps = sorted(b - a for a, b in zip(seconds, seconds[1:], strict=False) if b > a)
    return steps[len(steps) // 2] if steps else None


# --- the analyzers -----------------------------------------------------------------------------


class AnomalyDetector:
    """Anomalies of metric series with the dataflow's detector (see the module docstring)."""

    def __init__(
        self, threshold: float = DEFAULT_THRESHOLD, backend: AnalysisBackend | None = None
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.backend = backend if backend is not None else load_backend()

    async def detect_anomalies(self, data: Any, *, all_points: bool = False) -> list[AnomalyResult]:
        """The anomalous points of ``data`` (every scored point with ``all_points``), per series
        in input order."""
        series = _normalise(data)
        return await asyncio.to_thread(self._detect, series, all_points)

    def _detect(self, series: dict[str, _Series], all_points: bool) -> list[AnomalyResult]:
        results: list[AnomalyResult] = []
        for name, s in series.items():
            if s.seconds is None:
                starts = list(range(len(s.values)))
            else:
                starts = [round(seconds * 1e9) for seconds in s.seconds]
            scores = self.backend.anomaly_scores(s.values, starts)
            for i, (value, score) in enumerate(zip(s.values, scores, strict=True)):
                flagged = score >= self.threshold
                if flagged or all_points:
                    results.append(AnomalyResult(name, i, s.stamps[i], value, score, flagged))
        return results


class PredictiveAnalyzer:
    """Predicted limit breaches of metric series from per-series ARIMA forecasts."""

    def __init__(
        self,
        limits: Mapping[str, float | Limit] | None = None,
        *,
        horizon: int = DEFAULT_HORIZON,
        level: float = DEFAULT_LEVEL,
        envelope_sigmas: float = DEFAULT_ENVELOPE_SIGMAS,
        backend: AnalysisBackend | None = None,
    ) -> None:
        _check(horizon, level)
        self.limits = dict(limits or {})
        self.horizon = horizon
        self.level = level
        self.envelope_sigmas = envelope_sigmas
        self.backend = backend if backend is not None else load_backend()

    async def predict_incidents(
        self,
        history: Any,
        limits: Mapping[str, float | Limit] | None = None,
        horizon: int | None = None,
        level: float | None = None,
    ) -> list[PredictedIncident]:
        """Predicted breaches within ``horizon`` steps after each series' last point, soonest
        first. ``limits`` (added to the analyzer's own) map a series name or ``fnmatch``
        pattern to a limit."""
        horizon = self.horizon if horizon is None else horizon
        level = self.level if level is None else level
        _check(horizon, level)
        merged = {**self.limits, **(limits or {})}
        series = _normalise(history)
        return await asyncio.to_thread(self._predict, series, merged, horizon, level)

    def limits_for(
        self, name: str, values: Sequence[float], limits: Mapping[str, float | Limit]
    ) -> tuple[list[Limit], str]:
        """The limits a series is held to and where they come from."""
        if name in limits:
            return [_as_limit(limits[name])], "configured"
        matching = [_as_limit(v) for k, v in limits.items() if fnmatch.fnmatchcase(name, k)]
        if matching:
            return matching, "configured"
        return self._envelope(values), "envelope"

    def _envelope(self, values: Sequence[float]) -> list[Limit]:
        finite = sorted(v for v in values if math.isfinite(v))
        if len(finite) < 2:
            return []
        median = _median(finite)
        sigma = MAD_TO_SIGMA * _median(sorted(abs(v - median) for v in finite))
        if not sigma > 0.0:
            mean = sum(finite) / len(finite)
            sigma = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        if not sigma > 0.0:
            return []
        reach = self.envelope_sigmas * sigma
        return [Limit(median + reach, "above"), Limit(median - reach, "below")]

    def _predict(
        self,
        series: dict[str, _Series],
        limits: Mapping[str, float | Limit],
        horizon: int,
        level: float,
    ) -> list[PredictedIncident]:
        out: list[PredictedIncident] = []
        for name, s in series.items():
            chosen, source = self.limits_for(name, s.values, limits)
            if not chosen or not s.values:
                continue
            pairs = [(limit.value, limit.direction) for limit in chosen]
            for breach in self.backend.forecast_breaches(s.values, pairs, horizon, level):
                out.append(
                    PredictedIncident(
                        series=name,
                        limit=float(breach.limit),
                        direction="below" if breach.direction == "below" else "above",
                        steps_ahead=int(breach.step),
                        predicted_index=len(s.values) - 1 + int(breach.step),
                        predicted_time=_predicted_time(s, int(breach.step)),
                        forecast_value=float(breach.value),
                        bound=float(breach.bound),
                        probability=float(breach.probability),
                        limit_source=source,
                    )
                )
        out.sort(key=lambda p: (p.steps_ahead, p.series))
        return out


def _check(horizon: int, level: float) -> None:
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")


def _as_limit(limit: float | Limit) -> Limit:
    return limit if isinstance(limit, Limit) else Limit(float(limit))


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def _predicted_time(s: _Series, step: int) -> Timestamp:
    if s.seconds is None:
        return None
    spacing = _step_seconds(s.seconds)
    if spacing is None:
        return None
    seconds = s.seconds[-1] + step * spacing
    if s.kind == "number":
        return seconds / s.unit
    return _EPOCH + timedelta(seconds=seconds)
