"""Domain types shared by every room: metric points, window aggregates, anomalies, incidents.

These are plain dataclasses (cheap to build on the hot path, picklable for Bytewax snapshots).
Pydantic models live only at the API edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

DEFAULT_TENANT = "default"
TENANT_TAG = "tenant"

Tags = tuple[tuple[str, str], ...]
"""Tags as a tuple of (key, value) pairs sorted by key: hashable and canonical."""


def _escape(text: str, specials: str) -> str:
    if "\\" not in text and not any(c in text for c in specials):
        return text
    out = text.replace("\\", "\\\\")
    for c in specials:
        out = out.replace(c, "\\" + c)
    return out


@lru_cache(maxsize=1 << 17)
def series_key(measurement: str, tags: Tags, field_name: str) -> str:
    """Canonical series identity: measurement + sorted tags + field name.

    Written like a line-protocol series key (same escaping) with the field appended after a
    space, e.g. ``cpu,host=a,region=eu usage_user``; ``split_series`` reverses it exactly.
    Cached: agents repeat the same series forever, and this runs once per point.
    """
    return f"{series_head(measurement, tags)} {_escape(field_name, ',= ')}"


@lru_cache(maxsize=1 << 16)
def series_head(measurement: str, tags: Tags) -> str:
    """The ``measurement,tag=value,...`` part of ``series_key`` (escaped)."""
    head = _escape(measurement, ", ")
    if tags:
        head += "," + ",".join(f"{_escape(k, ',= ')}={_escape(v, ',= ')}" for k, v in tags)
    return head


def _split_unescaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if c == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return _split_unescaped(text, "\0", 0)[0] if "\\" in text else text


def split_series(series: str) -> tuple[str, dict[str, str], str]:
    """Inverse of ``series_key``: (measurement, tags, field)."""
    if "\\" not in series:
        head, _, field_name = series.rpartition(" ")
        measurement, *tag_parts = head.split(",")
        tags = dict(p.split("=", 1) for p in tag_parts)
        return measurement, tags, field_name
    # Slow path: escaped separators. Find the last unescaped space, then unescaped commas.
    i, cut = 0, -1
    while i < len(series):
        if series[i] == "\\":
            i += 2
            continue
        if series[i] == " ":
            cut = i
        i += 1
    head, field_raw = series[:cut], series[cut + 1 :]
    raw_parts: list[str] = []
    start, i = 0, 0
    while i < len(head):
        if head[i] == "\\":
            i += 2
            continue
        if head[i] == ",":
            raw_parts.append(head[start:i])
            start = i + 1
        i += 1
    raw_parts.append(head[start:])
    measurement = _unescape(raw_parts[0])
    tags = {}
    for raw in raw_parts[1:]:
        k, v = _split_unescaped(raw, "=", 1)
        tags[k] = v
    return measurement, tags, _unescape(field_raw)


@lru_cache(maxsize=1 << 16)
def tenant_of(tags: Tags) -> str:
    for k, v in tags:
        if k == TENANT_TAG:
            return v or DEFAULT_TENANT
    return DEFAULT_TENANT


@dataclass(slots=True)
class MetricPoint:
    """One numeric observation of one series. String fields never become points.

    Not frozen: the parser builds hundreds of thousands per second, and a frozen dataclass's
    ``__init__`` costs about twice as much.
    """

    measurement: str
    tags: Tags
    field: str
    value: float
    timestamp_ns: int
    known_series: str | None = field(default=None, compare=False, repr=False)
    """``series``, when the parser already has it (it caches it per line head)."""
    known_tenant: str | None = field(default=None, compare=False, repr=False)

    @property
    def series(self) -> str:
        return self.known_series or series_key(self.measurement, self.tags, self.field)

    @property
    def tenant(self) -> str:
        return self.known_tenant or tenant_of(self.tags)

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

    Mean and variance use Welford's update and Chan's merge, which stay exact for large values
    (byte counters) where a sum of squares would cancel. ``merge`` is order-independent except
    for ``last``, which follows the newest timestamp.
    """

    series: str
    tenant: str
    window_start_ns: int
    count: int
    mean: float
    m2: float
    minimum: float
    maximum: float
    last: float
    last_ts_ns: int

    @classmethod
    def of_point(
        cls, series: str, tenant: str, window_start_ns: int, value: float, ts_ns: int
    ) -> PartialAggregate:
        return cls(series, tenant, window_start_ns, 1, value, 0.0, value, value, value, ts_ns)

    def add(self, value: float, ts_ns: int) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        if ts_ns >= self.last_ts_ns:
            self.last = value
            self.last_ts_ns = ts_ns

    def merge(self, other: PartialAggregate) -> None:
        n = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.mean += delta * other.count / n
        self.count = n
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if other.last_ts_ns >= self.last_ts_ns:
            self.last = other.last
            self.last_ts_ns = other.last_ts_ns


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
    def from_partial(cls, partial: PartialAggregate, window_ns: int) -> WindowAggregate:
        n = partial.count
        std = math.sqrt(max(partial.m2, 0.0) / (n - 1)) if n > 1 else 0.0
        return cls(
            series=partial.series,
            tenant=partial.tenant,
            window_start_ns=partial.window_start_ns,
            window_end_ns=partial.window_start_ns + window_ns,
            count=n,
            mean=partial.mean,
            minimum=partial.minimum,
            maximum=partial.maximum,
            std=std,
            last=partial.last,
        )

    @property
    def measurement(self) -> str:
        return split_series(self.series)[0]

    @property
    def tags(self) -> dict[str, str]:
        return split_series(self.series)[1]

    @property
    def field(self) -> str:
        return split_series(self.series)[2]


@dataclass(frozen=True, slots=True)
class AnomalyScore:
    """A detector's verdict on one window: ``score`` in [0, 1]; ``components`` per member."""

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
