"""Domain types shared by every room: metric points, window aggregates, anomalies, incidents.

These are plain dataclasses (cheap to build on the hot path, picklable for Bytewax snapshots).
Pydantic models live only at the API edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DEFAULT_TENANT = "default"
TENANT_TAG = "tenant"

Tags = tuple[tuple[str, str], ...]
"""Tags as a tuple of (key, value) pairs sorted by key: hashable and canonical."""


def series_key(measurement: str, tags: Tags, field_name: str) -> str:
    """Canonical series identity: measurement + sorted tags + field name.

    Written like a line-protocol series key with the field appended after a space,
    e.g. ``cpu,host=a,region=eu usage_user``.
    """
    if tags:
        tag_part = ",".join(f"{k}={v}" for k, v in tags)
        return f"{measurement},{tag_part} {field_name}"
    return f"{measurement} {field_name}"


def tenant_of(tags: Tags) -> str:
    for k, v in tags:
        if k == TENANT_TAG:
            return v or DEFAULT_TENANT
    return DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One numeric observation of one series. String fields never become points."""

    measurement: str
    tags: Tags
    field: str
    value: float
    timestamp_ns: int

    @property
    def series(self) -> str:
        return series_key(self.measurement, self.tags, self.field)

    @property
    def tenant(self) -> str:
        return tenant_of(self.tags)

    @property
    def timestamp_s(self) -> float:
        return self.timestamp_ns / 1e9


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (or part of one) that could not be parsed: kept byte for byte with the reason."""

    raw: bytes
    reason: str
    source: str = "metrics"


@dataclass(slots=True)
class PartialAggregate:
    """Mergeable summary of the points of one series inside one window (the combiner's output).

    ``merge`` is associative and commutative except for ``last``, which follows the newest
    timestamp, so partials can be combined in any order.
    """

    series: str
    window_start_ns: int
    count: int
    total: float
    total_sq: float
    minimum: float
    maximum: float
    last: float
    last_ts_ns: int
    first_ts_ns: int

    @classmethod
    def of_point(cls, series: str, window_start_ns: int, value: float, ts_ns: int) -> PartialAggregate:
        return cls(series, window_start_ns, 1, value, value * value, value, value, value, ts_ns, ts_ns)

    def add(self, value: float, ts_ns: int) -> None:
        self.count += 1
        self.total += value
        self.total_sq += value * value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        if ts_ns >= self.last_ts_ns:
            self.last = value
            self.last_ts_ns = ts_ns
        if ts_ns < self.first_ts_ns:
            self.first_ts_ns = ts_ns

    def merge(self, other: PartialAggregate) -> None:
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if other.last_ts_ns >= self.last_ts_ns:
            self.last = other.last
            self.last_ts_ns = other.last_ts_ns
        self.first_ts_ns = min(self.first_ts_ns, other.first_ts_ns)


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """The closed summary of one series over one event-time tumbling window."""

    series: str
    tenant: str
    window_start_ns: int
    window_end_ns: int
    count: int
    mean: float
    minimum: float
    maximum: float
    std: float
    last: float

    @classmethod
    def from_partial(
        cls, partial: PartialAggregate, tenant: str, window_ns: int
    ) -> WindowAggregate:
        n = partial.count
        mean = partial.total / n
        var = max(partial.total_sq / n - mean * mean, 0.0)
        std = math.sqrt(var * n / (n - 1)) if n > 1 else 0.0
        return cls(
            series=partial.series,
            tenant=tenant,
            window_start_ns=partial.window_start_ns,
            window_end_ns=partial.window_start_ns + window_ns,
            count=n,
            mean=mean,
            minimum=partial.minimum,
            maximum=partial.maximum,
            std=std,
            last=partial.last,
        )

    @property
    def measurement(self) -> str:
        return self.series.split(",", 1)[0].split(" ", 1)[0]

    @property
    def field(self) -> str:
        return self.series.rsplit(" ", 1)[-1]

    @property
    def tags(self) -> dict[str, str]:
        head = self.series.rsplit(" ", 1)[0]
        parts = head.split(",")[1:]
        return dict(p.split("=", 1) for p in parts if "=" in p)


@dataclass(frozen=True, slots=True)
class AnomalyScore:
    """A detector's verdict on one window: ``score`` in [0, 1]; ``components`` per ensemble member."""

    aggregate: WindowAggregate
    score: float
    is_anomaly: bool
    components: dict[str, float] = field(default_factory=dict)


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class Category(StrEnum):
    DATABASE = "database"
    NETWORK = "network"
    COMPUTE = "compute"
    MEMORY = "memory"
    STORAGE = "storage"
    APPLICATION = "application"
    SECURITY = "security"
    OTHER = "other"


class IncidentKind(StrEnum):
    DETECTED = "detected"
    MANUAL = "manual"
    PREDICTED = "predicted"


class IncidentEventType(StrEnum):
    """What the incident builder says happened to a series' incident."""

    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """One step of a detected incident's life, emitted by the incident builder.

    The store applies these idempotently: ``OPENED`` for a fingerprint that already has an open
    incident updates it (counts a repeat) instead of creating a second one.
    """

    type: IncidentEventType
    fingerprint: str
    tenant: str
    series: str
    title: str
    category: Category
    severity: Severity
    score: float
    peak_score: float
    window_start_ns: int
    window_end_ns: int
    observed: float
    metadata: dict[str, Any] = field(default_factory=dict)
