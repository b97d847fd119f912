"""Domain records for stored things: incidents, their timeline, windows, users.

Plain dataclasses like ``incidents.schemas``: the store (``connectors.store``) returns them and
the API maps them to pydantic models at its edge. Values that come from outside (strings for
enums, naive datetimes) are normalised in ``__post_init__`` so every record in memory is typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from incidents.schemas import Category, IncidentKind, IncidentStatus, Severity

IncidentOrder = Literal["newest", "oldest"]

SEVERITY_RANK: dict[Severity, int] = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


def higher_severity(a: Severity, b: Severity) -> Severity:
    """The more severe of two severities (severity of an incident only ever goes up on its own)."""
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_to_datetime(ns: int) -> datetime:
    """Nanoseconds since the epoch to an aware UTC datetime (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: datetime) -> int:
    """Exact inverse of ``ns_to_datetime`` down to the microsecond (no float rounding)."""
    return (utc(value) - _EPOCH) // timedelta(microseconds=1) * 1000


class Role(StrEnum):
    """API roles; ``incidents.security.has_role`` orders them viewer < responder < admin."""

    VIEWER = "viewer"
    RESPONDER = "responder"
    ADMIN = "admin"


class TimelineType(StrEnum):
    """What happened to an incident (one timeline entry each)."""

    CREATED = "created"
    REPEATED = "repeated"
    SCORE_UPDATED = "score_updated"
    EDITED = "edited"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    BREACHED = "breached"
    """A predicted incident's limit was reached: it became a detected incident."""
    COMMENT = "comment"
    SILENCED = "silenced"
    GROUPED = "grouped"
    RULE_FIRED = "rule_fired"
    """An automation rule matched; ``details`` name the rule and the planned actions."""
    ACTION = "action"
    """One automated action ran (or could not); ``details.outcome`` is ok/error/not_configured."""
    REMEDIATION_REQUESTED = "remediation_requested"
    """A remediation run was asked for (``details``: run id, remediation, plan, dry_run)."""
    REMEDIATION_APPROVED = "remediation_approved"
    REMEDIATION_REJECTED = "remediation_rejected"
    REMEDIATION_STARTED = "remediation_started"
    REMEDIATION_SUCCEEDED = "remediation_succeeded"
    REMEDIATION_FAILED = "remediation_failed"
    REMEDIATION_REFUSED = "remediation_refused"
    """Not run: the circuit breaker was open or a substituted value was refused."""
    ESCALATION_STARTED = "escalation_started"
    """An escalation policy started for the incident; ``details`` name it and its levels."""
    ESCALATION_LEVEL = "escalation_level"
    """A level of an escalation fired (its actions follow as ``action`` entries)."""
    ESCALATION_CANCELLED = "escalation_cancelled"
    """Acknowledging or resolving stopped an escalation before its last level."""
    ESCALATION_COMPLETED = "escalation_completed"
    """The last level of an escalation fired."""


@dataclass(slots=True)
class IncidentEvent:
    """Input to create an incident (the seed's ``IncidentEvent(title=…, severity="high", …)``).

    ``category`` left empty is filled by rule-based classification; ``fingerprint`` left empty is
    computed from tenant, source and title (see ``incidents.fingerprint``).
    """

    title: str
    description: str = ""
    severity: Severity = Severity.MEDIUM
    source: str = "manual"
    metadata: dict[str, Any] = field(default_factory=dict)
    category: Category | None = None
    fingerprint: str | None = None
    tags: tuple[str, ...] = ()
    tenant: str | None = None
    kind: IncidentKind = IncidentKind.MANUAL

    def __post_init__(self) -> None:
        self.severity = Severity(self.severity)
        self.kind = IncidentKind(self.kind)
        if self.category is not None:
            self.category = Category(self.category)
        self.tags = tuple(self.tags)
        self.metadata = dict(self.metadata)


@dataclass(slots=True)
class Incident:
    """A stored incident. ``first_seen``/``last_seen`` are event time, ``*_at`` wall-clock time."""

    id: str
    fingerprint: str
    tenant: str
    title: str
    description: str
    severity: Severity
    category: Category
    status: IncidentStatus
    kind: IncidentKind
    source: str
    series: str | None
    metadata: dict[str, Any]
    score: float | None
    peak_score: float | None
    repeat_count: int
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    updated_at: datetime
    tags: tuple[str, ...] = ()
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    parent_id: str | None = None
    """The first incident of this one's group (see ``incidents.grouping``); None for a root."""
    group_key: str | None = None
    child_count: int = 0

    def __post_init__(self) -> None:
        self.severity = Severity(self.severity)
        self.category = Category(self.category)
        self.status = IncidentStatus(self.status)
        self.kind = IncidentKind(self.kind)
        self.tags = tuple(self.tags)

    @property
    def is_resolved(self) -> bool:
        return self.status is IncidentStatus.RESOLVED


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One state change of an incident, with who did it (``auto`` for the detector)."""

    incident_id: str
    at: datetime
    type: TimelineType
    actor: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Filters for listing incidents of one tenant.

    ``since``/``until`` select incidents whose [first_seen, last_seen] overlaps the interval, so an
    incident that started earlier and is still going on counts as "since".
    """

    status: IncidentStatus | None = None
    severity: Severity | None = None
    category: Category | None = None
    kind: IncidentKind | None = None
    series: str | None = None
    parent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0
    order: IncidentOrder = "newest"

    def __post_init__(self) -> None:
        if self.limit < 0 or self.offset < 0:
            raise ValueError("limit and offset must not be negative")
        if self.order not in ("newest", "oldest"):
            raise ValueError(f"order must be 'newest' or 'oldest', not {self.order!r}")


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """A stored window aggregate of one series together with its anomaly score."""

    tenant: str
    series: str
    measurement: str
    field: str
    window_start_ns: int
    window_end_ns: int
    count: int
    mean: float | None
    minimum: float | None
    maximum: float | None
    std: float | None
    last: float | None
    anomaly_score: float | None
    is_anomaly: bool
    components: dict[str, float] = field(default_factory=dict)

    @property
    def window_start(self) -> datetime:
        return ns_to_datetime(self.window_start_ns)

    @property
    def window_end(self) -> datetime:
        return ns_to_datetime(self.window_end_ns)


@dataclass(slots=True)
class User:
    """An API account. ``password_hash`` is an argon2 hash, never the password."""

    username: str
    password_hash: str
    role: Role
    tenant: str
    disabled: bool = False

    def __post_init__(self) -> None:
        self.role = Role(self.role)

    def __repr__(self) -> str:  # keep the hash out of logs and tracebacks
        return (
            f"User(username={self.username!r}, role={self.role.value!r}, "
            f"tenant={self.tenant!r}, disabled={self.disabled!r})"
        )
