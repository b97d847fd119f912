"""Request and response models of the HTTP API (pydantic at the edge, dataclasses inside).

Requests forbid unknown fields, so a typo is a 422 naming the field rather than silently
ignored. Responses are built from the domain records with ``from_record``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from incidents.records import Incident, Role, TimelineEntry, User, WindowRecord
from incidents.schemas import DEFAULT_TENANT, Category, IncidentKind, IncidentStatus, Severity

MAX_TAGS = 50
MAX_METADATA_DEPTH = 16

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Fingerprint = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
]
Resolution = Annotated[str, StringConstraints(max_length=5_000)]
Username = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@\-]*$")
]
Tenant = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once past ``limit``."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentCreate(Request):
    title: Title
    description: Description = ""
    severity: Severity = Severity.MEDIUM
    source: Source = "api"
    category: Category | None = Field(
        default=None, description="Left out: classified from title, description and metadata."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    fingerprint: Fingerprint | None = Field(
        default=None,
        description="Deduplication key; left out it is derived from tenant, source and title.",
    )

    @model_validator(mode="after")
    def _shallow_metadata(self) -> IncidentCreate:
        if _depth(self.metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        return self


class IncidentPatch(Request):
    """Partial update: only the fields sent change. ``status`` moves the workflow too."""

    title: Title | None = None
    description: Description | None = None
    severity: Severity | None = None
    category: Category | None = None
    metadata: dict[str, Any] | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    status: IncidentStatus | None = None
    resolution: Resolution | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> IncidentPatch:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if nulls:
            raise ValueError(f"fields cannot be null: {', '.join(nulls)}")
        if self.metadata is not None and _depth(self.metadata, MAX_METADATA_DEPTH) > (
            MAX_METADATA_DEPTH
        ):
            raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        return self

    def changes(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.model_fields_set}


class ResolveRequest(Request):
    resolution: Resolution | None = None


class UserCreate(Request):
    username: Username
    password: SecretStr = Field(min_length=8, max_length=1024)
    role: Role = Role.VIEWER
    tenant: Tenant = DEFAULT_TENANT


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the token expires.")


class UserOut(BaseModel):
    username: str
    role: Role
    tenant: str
    disabled: bool

    @classmethod
    def from_record(cls, user: User) -> UserOut:
        return cls(
            username=user.username, role=user.role, tenant=user.tenant, disabled=user.disabled
        )


class IncidentOut(BaseModel):
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
    tags: list[str]
    score: float | None
    peak_score: float | None
    repeat_count: int
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    updated_at: datetime
    window_start_ns: int | None
    window_end_ns: int | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    parent_id: str | None = Field(
        default=None, description="The first incident of this one's group; null for a root."
    )
    child_count: int = Field(default=0, description="Incidents grouped under this one.")

    @classmethod
    def from_record(cls, incident: Incident) -> IncidentOut:
        return cls.model_validate(incident, from_attributes=True)


class IncidentList(BaseModel):
    items: list[IncidentOut]
    total: int
    limit: int
    offset: int


class TimelineEntryOut(BaseModel):
    at: datetime
    type: str
    actor: str
    details: dict[str, Any]

    @classmethod
    def from_record(cls, entry: TimelineEntry) -> TimelineEntryOut:
        return cls(at=entry.at, type=str(entry.type), actor=entry.actor, details=entry.details)


class TimelineOut(BaseModel):
    incident_id: str
    items: list[TimelineEntryOut]


class WindowOut(BaseModel):
    series: str
    measurement: str
    field: str
    window_start: datetime
    window_end: datetime
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
    components: dict[str, float | None]

    @classmethod
    def from_record(cls, w: WindowRecord) -> WindowOut:
        return cls(
            series=w.series,
            measurement=w.measurement,
            field=w.field,
            window_start=w.window_start,
            window_end=w.window_end,
            window_start_ns=w.window_start_ns,
            window_end_ns=w.window_end_ns,
            count=w.count,
            mean=w.mean,
            minimum=w.minimum,
            maximum=w.maximum,
            std=w.std,
            last=w.last,
            anomaly_score=w.anomaly_score,
            is_anomaly=w.is_anomaly,
            components=w.components,
        )


class WindowList(BaseModel):
    items: list[WindowOut]
    count: int


class SeriesHistory(WindowList):
    series: str


class AnomalyList(WindowList):
    min_score: float
    since: datetime | None
    until: datetime | None


class HealthOut(BaseModel):
    status: Literal["ok"]


class DatabaseHealthOut(BaseModel):
    status: Literal["ok"]
    database: str


class AdminHealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["up", "down"]
    environment: str
    version: str
    uptime_seconds: float
    pipeline: dict[str, float]


class ForecastPoint(BaseModel):
    time: datetime | None
    mean: float | None
    lower: float | None
    upper: float | None


class PredictedBreach(BaseModel):
    limit: float
    direction: str
    steps_ahead: int
    predicted_time: datetime | None
    forecast_value: float | None
    probability: float | None


class SeriesForecast(BaseModel):
    series: str
    method: str
    level: float
    horizon: int
    history_windows: int
    points: list[ForecastPoint]
    breach: PredictedBreach | None
