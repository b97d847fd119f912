"""Predicted incidents: a forecast's interval reaching a configured limit, before it happens.

``FORECAST_LIMITS`` names the limits (``disk.used_percent>95,mem.available_percent<5``: the series
of that measurement and field, whatever their tags). The dataflow forecasts only those series; for
each closed window it hands ``PredictionBuilder`` the first step at which the forecast's interval
reaches the limit (or none). The builder is pure and keeps one small state per series:

* no incident, breach predicted          -> OPENED, ``kind: predicted``, predicted time of breach
* predicted, breach predicted elsewhen   -> UPDATED with the new predicted time
* predicted, the window itself is past   -> UPDATED, ``kind: detected``: the prediction came true
* predicted, no breach predicted for ``resolve_after_windows`` windows -> RESOLVED (the predicted
  time passed without a breach, or the forecast no longer reaches the limit)
* breached, back within the limit for ``resolve_after_windows`` windows -> RESOLVED

A window already past the limit with no predicted incident open is left to the anomaly detector:
a prediction made after the fact is no prediction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from incidents.classification import classify
from incidents.fingerprint import fingerprint
from incidents.records import ns_to_datetime
from incidents.schemas import (
    IncidentEventType,
    IncidentKind,
    IncidentUpdate,
    Severity,
    WindowAggregate,
)

FORECAST_SOURCE = "forecast"
Direction = Literal["above", "below"]

_LIMIT = re.compile(
    r"^\s*(?P<measurement>[^\s.<>=]+)\.(?P<field>[^\s<>=]+)\s*(?P<op>[<>])\s*"
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True, slots=True)
class ForecastLimit:
    """``measurement.field > value`` (``above``) or ``< value`` (``below``)."""

    measurement: str
    field: str
    direction: Direction
    value: float

    def applies_to(self, aggregate: WindowAggregate) -> bool:
        return aggregate.measurement == self.measurement and aggregate.field == self.field

    def is_past(self, observed: float) -> bool:
        """Whether an observed value has reached the limit (NaN never has)."""
        return observed >= self.value if self.direction == "above" else observed <= self.value

    def __str__(self) -> str:
        op = ">" if self.direction == "above" else "<"
        return f"{self.measurement}.{self.field} {op} {self.value:g}"


def parse_forecast_limits(text: str) -> tuple[ForecastLimit, ...]:
    """Parse ``FORECAST_LIMITS``: comma-separated ``measurement.field>value`` / ``<value``.

    Raises ``ValueError`` naming the bad entry; one limit per measurement and field.
    """
    limits: dict[tuple[str, str], ForecastLimit] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        match = _LIMIT.match(entry)
        if match is None:
            raise ValueError(
                f"bad forecast limit {entry.strip()!r}: expected measurement.field>value "
                "or measurement.field<value, e.g. disk.used_percent>95"
            )
        value = float(match["value"])
        direction: Direction = "above" if match["op"] == ">" else "below"
        limit = ForecastLimit(match["measurement"], match["field"], direction, value)
        key = (limit.measurement, limit.field)
        if key in limits:
            raise ValueError(f"two forecast limits for {key[0]}.{key[1]}")
        limits[key] = limit
    return tuple(limits.values())


def limit_for(
    limits: tuple[ForecastLimit, ...], aggregate: WindowAggregate
) -> ForecastLimit | None:
    for limit in limits:
        if limit.applies_to(aggregate):
            return limit
    return None


@dataclass(frozen=True, slots=True)
class PredictedBreach:
    """The forecast's first step whose interval bound reaches the limit."""

    steps_ahead: int
    time_ns: int
    forecast_value: float
    bound: float
    probability: float
    """The forecast's probability of being past the limit at that step."""
    max_probability: float
    """Its highest over the horizon: the incident's score."""


def predicted_fingerprint(tenant: str, series: str, limit: ForecastLimit) -> str:
    return fingerprint(tenant, FORECAST_SOURCE, series, {"limit": str(limit)})


class Phase(StrEnum):
    PREDICTED = "predicted"
    BREACHED = "breached"


@dataclass(slots=True)
class SeriesPrediction:
    fingerprint: str
    phase: Phase
    predicted_time_ns: int
    peak_score: float
    quiet_windows: int = 0


class PredictionBuilder:
    """Per-series state machine of predicted incidents (see the module docstring)."""

    def __init__(self, *, resolve_after_windows: int) -> None:
        if resolve_after_windows < 1:
            raise ValueError("resolve_after_windows must be at least 1")
        self.resolve_after_windows = resolve_after_windows
        self.open: dict[tuple[str, str], SeriesPrediction] = {}

    def step(
        self,
        aggregate: WindowAggregate,
        limit: ForecastLimit,
        breach: PredictedBreach | None,
    ) -> IncidentUpdate | None:
        key = (aggregate.tenant, aggregate.series)
        state = self.open.get(key)
        past = limit.is_past(aggregate.mean)
        if state is None:
            if breach is None or past:
                return None
            state = SeriesPrediction(
                predicted_fingerprint(aggregate.tenant, aggregate.series, limit),
                Phase.PREDICTED,
                breach.time_ns,
                breach.max_probability,
            )
            self.open[key] = state
            return _update(IncidentEventType.OPENED, state, aggregate, limit, breach)
        if past:
            state.quiet_windows = 0
            if state.phase is Phase.PREDICTED:
                state.phase = Phase.BREACHED
                state.peak_score = 1.0
                return _update(IncidentEventType.UPDATED, state, aggregate, limit, None)
            return None
        if state.phase is Phase.PREDICTED and breach is not None:
            state.quiet_windows = 0
            state.peak_score = max(state.peak_score, breach.max_probability)
            if breach.time_ns == state.predicted_time_ns:
                return None
            state.predicted_time_ns = breach.time_ns
            return _update(IncidentEventType.UPDATED, state, aggregate, limit, breach)
        state.quiet_windows += 1
        if state.quiet_windows < self.resolve_after_windows:
            return None
        del self.open[key]
        return _update(
            IncidentEventType.RESOLVED,
            state,
            aggregate,
            limit,
            None,
            resolution=_resolution(state, aggregate, limit),
        )


def _resolution(state: SeriesPrediction, aggregate: WindowAggregate, limit: ForecastLimit) -> str:
    if state.phase is Phase.BREACHED:
        return f"back within {limit} for {state.quiet_windows} windows"
    if aggregate.window_end_ns >= state.predicted_time_ns:
        when = ns_to_datetime(state.predicted_time_ns).isoformat()
        return f"predicted breach of {limit} at {when} did not happen"
    return f"the forecast no longer reaches {limit}"


def predicted_title(aggregate: WindowAggregate, limit: ForecastLimit, phase: Phase) -> str:
    where = aggregate.tags.get("host") or aggregate.tags.get("service")
    text = f"Predicted {limit}" if phase is Phase.PREDICTED else f"{limit}"
    return f"{text} on {where}" if where else text


def _update(
    event: IncidentEventType,
    state: SeriesPrediction,
    aggregate: WindowAggregate,
    limit: ForecastLimit,
    breach: PredictedBreach | None,
    *,
    resolution: str | None = None,
) -> IncidentUpdate:
    kind = IncidentKind.PREDICTED if state.phase is Phase.PREDICTED else IncidentKind.DETECTED
    metadata: dict[str, object] = {
        "kind": str(kind),
        "measurement": aggregate.measurement,
        "field": aggregate.field,
        "tags": aggregate.tags,
        "limit": limit.value,
        "limit_direction": limit.direction,
        "window_mean": aggregate.mean,
        "predicted_breach_time": ns_to_datetime(state.predicted_time_ns).isoformat(),
    }
    if breach is not None:
        metadata.update(
            steps_ahead=breach.steps_ahead,
            forecast_value=breach.forecast_value,
            interval_bound=breach.bound,
            breach_probability=breach.probability,
            description=(
                f"The forecast of {aggregate.series} reaches {limit} in {breach.steps_ahead} "
                f"windows (at {metadata['predicted_breach_time']}, probability "
                f"{breach.probability:.2f})"
            ),
        )
    elif state.phase is Phase.BREACHED and event is IncidentEventType.UPDATED:
        metadata["breached_at"] = ns_to_datetime(aggregate.window_end_ns).isoformat()
    if resolution is not None:
        metadata["resolution"] = resolution
    score = breach.max_probability if breach is not None else state.peak_score
    return IncidentUpdate(
        type=event,
        fingerprint=state.fingerprint,
        tenant=aggregate.tenant,
        series=aggregate.series,
        title=predicted_title(aggregate, limit, state.phase),
        category=classify(
            measurement=aggregate.measurement, field=aggregate.field, tags=aggregate.tags
        ),
        severity=Severity.HIGH if state.phase is Phase.PREDICTED else Severity.CRITICAL,
        score=score,
        peak_score=state.peak_score,
        window_start_ns=aggregate.window_start_ns,
        window_end_ns=aggregate.window_end_ns,
        observed=aggregate.mean,
        metadata=metadata,
    )
