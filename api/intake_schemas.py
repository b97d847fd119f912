"""Request and response models of silences, comments, the analytics summary and the alert
webhooks (kept apart from ``api.schemas`` so the features merge independently).

The webhook payloads are the senders' own JSON (camelCase) and ignore fields this API does not
use, so a newer Alertmanager or Grafana that adds fields keeps working; the fields used are
validated like every other request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from incidents.alerts import AlertStatus, ReceivedAlert
from incidents.silences import (
    MAX_COMMENT_LENGTH,
    MAX_MATCHERS,
    MAX_NAME_LENGTH,
    MAX_VALUE_LENGTH,
    Silence,
    SilenceState,
)
from incidents.summary import IncidentSummary

MAX_ALERTS = 1_000
MAX_LABELS = 100
MAX_LABEL_TEXT = 4_096
CommentText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)
]
Creator = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


def _both(snake: str, camel: str) -> AliasChoices:
    return AliasChoices(snake, camel)


class MatcherIn(BaseModel):
    """An Alertmanager matcher; ``isRegex``/``isEqual`` are accepted too."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    value: str = Field(max_length=MAX_VALUE_LENGTH)
    is_regex: bool = Field(default=False, validation_alias=_both("is_regex", "isRegex"))
    is_equal: bool = Field(default=True, validation_alias=_both("is_equal", "isEqual"))


class SilenceCreate(BaseModel):
    """A silence in Alertmanager's shape (snake_case or Alertmanager's camelCase names)."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[MatcherIn] = Field(min_length=1, max_length=MAX_MATCHERS)
    starts_at: datetime | None = Field(
        default=None,
        validation_alias=_both("starts_at", "startsAt"),
        description="Left out: now.",
    )
    ends_at: datetime = Field(validation_alias=_both("ends_at", "endsAt"))
    comment: str = Field(default="", max_length=MAX_COMMENT_LENGTH)
    created_by: Creator | None = Field(
        default=None,
        validation_alias=_both("created_by", "createdBy"),
        description="Left out: the caller's username.",
    )

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value


class MatcherOut(BaseModel):
    name: str
    value: str
    is_regex: bool
    is_equal: bool


class SilenceOut(BaseModel):
    id: str
    matchers: list[MatcherOut]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    state: SilenceState

    @classmethod
    def from_record(cls, silence: Silence, now: datetime) -> SilenceOut:
        return cls(
            id=silence.id,
            matchers=[MatcherOut(**m.as_dict()) for m in silence.matchers],
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            comment=silence.comment,
            created_by=silence.created_by,
            created_at=silence.created_at,
            updated_at=silence.updated_at,
            state=silence.state(now),
        )


class SilenceList(BaseModel):
    items: list[SilenceOut]
    count: int


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: CommentText


class DurationOut(BaseModel):
    count: int = Field(description="Incidents the mean is taken over.")
    mean_seconds: float | None


class SummaryOut(BaseModel):
    since: datetime | None
    until: datetime | None
    total: int = Field(description="Incidents recorded in the period.")
    by_status: dict[str, int]
    by_severity: dict[str, int]
    by_category: dict[str, int]
    by_kind: dict[str, int]
    mtta_seconds: float | None = Field(
        description="Mean time to acknowledge over the incidents acknowledged in the period."
    )
    mttr_seconds: float | None = Field(
        description="Mean time to resolve over the incidents resolved in the period."
    )
    acknowledged: DurationOut
    resolved: DurationOut

    @classmethod
    def from_summary(
        cls, summary: IncidentSummary, since: datetime | None, until: datetime | None
    ) -> SummaryOut:
        return cls(
            since=since,
            until=until,
            total=summary.total,
            by_status=summary.by_status,
            by_severity=summary.by_severity,
            by_category=summary.by_category,
            by_kind=summary.by_kind,
            mtta_seconds=summary.acknowledged.mean_seconds,
            mttr_seconds=summary.resolved.mean_seconds,
            acknowledged=DurationOut(
                count=summary.acknowledged.count, mean_seconds=summary.acknowledged.mean_seconds
            ),
            resolved=DurationOut(
                count=summary.resolved.count, mean_seconds=summary.resolved.mean_seconds
            ),
        )


# --- webhooks ---------------------------------------------------------------------------------


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WebhookAlert(Payload):
    """One alert, as both Alertmanager and Grafana send it."""

    status: AlertStatus
    labels: dict[str, str] = Field(max_length=MAX_LABELS)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)
    startsAt: datetime | None = None  # noqa: N815 (the sender's field names)
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str | None = Field(default=None, max_length=MAX_LABEL_TEXT)  # noqa: N815
    fingerprint: str | None = Field(default=None, max_length=128)

    @field_validator("labels", "annotations")
    @classmethod
    def _bounded_texts(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not key or len(key) > MAX_NAME_LENGTH:
                raise ValueError(f"label/annotation names have 1 to {MAX_NAME_LENGTH} characters")
            if len(text) > MAX_LABEL_TEXT:
                raise ValueError(f"the value of {key!r} is longer than {MAX_LABEL_TEXT} characters")
        return value

    def extra_fields(self) -> dict[str, Any]:
        return {}

    def to_domain(self) -> ReceivedAlert:
        return ReceivedAlert(
            status=self.status,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            starts_at=self.startsAt,
            ends_at=self.endsAt,
            fingerprint=self.fingerprint,
            generator_url=self.generatorURL,
            extra=self.extra_fields(),
        )


class AlertmanagerPayload(Payload):
    """Alertmanager's webhook payload, version 4."""

    version: Literal["4"] = Field(description="Only version 4 exists (Alertmanager 0.x).")
    status: AlertStatus
    receiver: str = Field(default="", max_length=MAX_LABEL_TEXT)
    groupKey: str = Field(default="", max_length=MAX_LABEL_TEXT)  # noqa: N815
    truncatedAlerts: int = Field(default=0, ge=0)  # noqa: N815
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = Field(default="", max_length=MAX_LABEL_TEXT)  # noqa: N815
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)

    def context(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "group_key": self.groupKey,
            "external_url": self.externalURL,
        }


class GrafanaAlert(WebhookAlert):
    silenceURL: str | None = Field(default=None, max_length=MAX_LABEL_TEXT)  # noqa: N815
    dashboardURL: str | None = Field(default=None, max_length=MAX_LABEL_TEXT)  # noqa: N815
    panelURL: str | None = Field(default=None, max_length=MAX_LABEL_TEXT)  # noqa: N815
    values: dict[str, float | None] | None = Field(default=None, max_length=MAX_LABELS)
    valueString: str | None = Field(default=None, max_length=MAX_LABEL_TEXT)  # noqa: N815

    def extra_fields(self) -> dict[str, Any]:
        return {
            "silence_url": self.silenceURL,
            "dashboard_url": self.dashboardURL,
            "panel_url": self.panelURL,
            "values": self.values,
            "value_string": self.valueString,
        }


class GrafanaPayload(Payload):
    """Grafana alerting's webhook payload (its ``version`` is "1")."""

    status: AlertStatus
    receiver: str = Field(default="", max_length=MAX_LABEL_TEXT)
    orgId: int | None = None  # noqa: N815
    groupKey: str = Field(default="", max_length=MAX_LABEL_TEXT)  # noqa: N815
    externalURL: str = Field(default="", max_length=MAX_LABEL_TEXT)  # noqa: N815
    title: str = Field(default="", max_length=MAX_LABEL_TEXT)
    state: str = Field(default="", max_length=64)
    version: str = Field(default="1", max_length=16)
    alerts: list[GrafanaAlert] = Field(max_length=MAX_ALERTS)

    def context(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "group_key": self.groupKey,
            "external_url": self.externalURL,
            "org_id": self.orgId,
        }


class WebhookOutcome(BaseModel):
    fingerprint: str
    status: AlertStatus
    action: Literal["opened", "repeated", "resolved", "not_open"]
    incident_id: str | None


class WebhookResult(BaseModel):
    received: int
    items: list[WebhookOutcome]
