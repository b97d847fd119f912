"""Detected-incident lifecycle per series: open, update while anomalous, auto-resolve.

``IncidentBuilder`` is pure: it turns scored windows into ``IncidentUpdate`` events and keeps a
small state per series. The store applies the updates idempotently (dedup by fingerprint).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from incidents.classification import classify, severity_for
from incidents.fingerprint import fingerprint
from incidents.records import higher_severity
from incidents.schemas import (
    AnomalyScore,
    IncidentEventType,
    IncidentUpdate,
    Severity,
    WindowAggregate,
)

DETECTOR_SOURCE = "detector"


def detected_fingerprint(tenant: str, series: str) -> str:
    """Fingerprint of the incident of one series: one open incident per series and tenant."""
    return fingerprint(tenant, DETECTOR_SOURCE, series, {})


def severity_score(score: float, threshold: float) -> float:
    """How far above the threshold a score lies, rescaled to [0, 1].

    Detector scores that cross ``ANOMALY_THRESHOLD`` all sit near 1; rescaling the part above the
    threshold spreads them over the seed's severity bands (critical 0.9, high 0.7, ...).
    """
    if threshold >= 1.0:
        return 1.0 if score >= 1.0 else 0.0
    return min(max((score - threshold) / (1.0 - threshold), 0.0), 1.0)


def incident_title(aggregate: WindowAggregate) -> str:
    measurement, tags, field_name = (aggregate.measurement, aggregate.tags, aggregate.field)
    where = tags.get("host") or tags.get("service") or tags.get("instance")
    subject = f"{measurement}.{field_name}"
    return f"Anomalous {subject} on {where}" if where else f"Anomalous {subject}"


@dataclass(slots=True)
class SeriesIncident:
    fingerprint: str
    peak_score: float
    severity: Severity
    normal_streak: int = 0


class IncidentBuilder:
    """Per-series incident state machine over scored windows (one instance per shard)."""

    def __init__(
        self,
        *,
        threshold: float,
        resolve_after_windows: int,
        severity_thresholds: Mapping[str, float],
    ) -> None:
        if resolve_after_windows < 1:
            raise ValueError("resolve_after_windows must be at least 1")
        self.threshold = threshold
        self.resolve_after_windows = resolve_after_windows
        self.severity_thresholds = dict(severity_thresholds)
        self.open: dict[tuple[str, str], SeriesIncident] = {}

    def step(self, scored: AnomalyScore) -> IncidentUpdate | None:
        agg = scored.aggregate
        key = (agg.tenant, agg.series)
        current = self.open.get(key)
        if scored.is_anomaly:
            severity = severity_for(
                severity_score(scored.score, self.threshold), self.severity_thresholds
            )
            if current is None:
                current = SeriesIncident(
                    detected_fingerprint(agg.tenant, agg.series), scored.score, severity
                )
                self.open[key] = current
                return self._update(IncidentEventType.OPENED, current, scored)
            current.normal_streak = 0
            if scored.score > current.peak_score:
                current.peak_score = scored.score
            current.severity = higher_severity(current.severity, severity)
            return self._update(IncidentEventType.UPDATED, current, scored)
        if current is None:
            return None
        current.normal_streak += 1
        if current.normal_streak < self.resolve_after_windows:
            return None
        del self.open[key]
        return self._update(
            IncidentEventType.RESOLVED,
            current,
            scored,
            {"resolution": f"auto-resolved after {current.normal_streak} normal windows"},
        )

    def run(self, scored: Iterable[AnomalyScore]) -> list[IncidentUpdate]:
        return [u for s in scored if (u := self.step(s)) is not None]

    def _update(
        self,
        kind: IncidentEventType,
        state: SeriesIncident,
        scored: AnomalyScore,
        extra: Mapping[str, object] | None = None,
    ) -> IncidentUpdate:
        agg = scored.aggregate
        measurement, tags, field_name = agg.measurement, agg.tags, agg.field
        metadata: dict[str, object] = {
            "measurement": measurement,
            "field": field_name,
            "tags": tags,
            "window_mean": agg.mean,
            "window_max": agg.maximum,
            "window_min": agg.minimum,
            "components": dict(scored.components),
        }
        if extra:
            metadata.update(extra)
        return IncidentUpdate(
            type=kind,
            fingerprint=state.fingerprint,
            tenant=agg.tenant,
            series=agg.series,
            title=incident_title(agg),
            category=classify(measurement=measurement, field=field_name, tags=tags),
            severity=state.severity,
            score=scored.score,
            peak_score=state.peak_score,
            window_start_ns=agg.window_start_ns,
            window_end_ns=agg.window_end_ns,
            observed=agg.mean,
            metadata=metadata,
        )
