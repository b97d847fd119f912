"""Alerts from the ecosystem (Prometheus Alertmanager, Grafana alerting) as incidents.

Both send the same kind of alert in their webhooks: ``status`` (firing/resolved), ``labels``,
``annotations``, ``startsAt``/``endsAt`` and a ``fingerprint`` (a hash of the labels) that stays
the same while the alert lasts. A firing alert opens an incident, or repeats the open one with
the same fingerprint; a resolved alert resolves it. The mapping is pure; the API validates the
payloads (``api.intake_schemas``) and the store does the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from incidents.fingerprint import fingerprint as compute_fingerprint
from incidents.records import IncidentEvent
from incidents.schemas import Severity

MAX_TITLE = 500
MAX_DESCRIPTION = 20_000
MAX_TAG = 64
MAX_TAGS = 50
MAX_FINGERPRINT = 128

SEVERITY_WORDS: dict[str, Severity] = {
    **dict.fromkeys(
        ("critical", "crit", "fatal", "emergency", "emerg", "alert", "page", "disaster"),
        Severity.CRITICAL,
    ),
    **dict.fromkeys(("high", "error", "err", "major"), Severity.HIGH),
    **dict.fromkeys(("warning", "warn", "medium", "average", "moderate"), Severity.MEDIUM),
    **dict.fromkeys(("low", "minor"), Severity.LOW),
    **dict.fromkeys(
        ("info", "informational", "information", "notice", "none", "ok"), Severity.INFO
    ),
    **{f"p{n}": s for n, s in enumerate(Severity, start=1)},
    **{f"sev{n}": s for n, s in enumerate(Severity, start=1)},
}
"""Severity label values in use (Prometheus mixins, PagerDuty/Opsgenie P1..P5, Zabbix words)."""

DEFAULT_SEVERITY = Severity.MEDIUM
_UNSAFE_FINGERPRINT = re.compile(r"[^A-Za-z0-9._:\-]")


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertSource(StrEnum):
    """Where an alert came from; also the incidents' ``source`` and the fingerprint prefix."""

    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"

    @property
    def display_name(self) -> str:
        return {"alertmanager": "Alertmanager", "grafana": "Grafana"}[self.value]


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    """One alert of a webhook payload, whatever its sender."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    fingerprint: str | None = None
    generator_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Sender-specific fields worth keeping (Grafana's values, dashboard and panel URLs...)."""


def is_set(moment: datetime | None) -> bool:
    """Alertmanager and Grafana send ``0001-01-01T00:00:00Z`` for "no time"."""
    return moment is not None and moment.year > 1


def severity_of(labels: Mapping[str, str]) -> Severity:
    """``labels.severity`` (or ``priority``) mapped to our severities; medium when unknown."""
    for name in ("severity", "priority"):
        word = labels.get(name, "").strip().lower()
        if word in SEVERITY_WORDS:
            return SEVERITY_WORDS[word]
    return DEFAULT_SEVERITY


def alert_fingerprint(source: AlertSource, tenant: str, alert: ReceivedAlert) -> str:
    """``<source>:<the alert's fingerprint>``; without one, a hash of the alert's labels.

    Both stay the same for the firing and the resolved notification of one alert, which is
    what lets "resolved" find the incident that "firing" opened.
    """
    given = _UNSAFE_FINGERPRINT.sub("", alert.fingerprint or "")
    if given:
        return f"{source}:{given}"[:MAX_FINGERPRINT]
    return compute_fingerprint(tenant, str(source), alert.labels.get("alertname", ""), alert.labels)


def alert_title(source: AlertSource, alert: ReceivedAlert) -> str:
    for text in (alert.annotations.get("summary"), alert.labels.get("alertname")):
        if text and text.strip():
            return text.strip()[:MAX_TITLE]
    return f"Alert from {source.display_name}"


def alert_description(alert: ReceivedAlert) -> str:
    for name in ("description", "message"):
        text = alert.annotations.get(name)
        if text and text.strip():
            return text.strip()[:MAX_DESCRIPTION]
    return ""


def label_tags(labels: Mapping[str, str]) -> tuple[str, ...]:
    """Labels as ``"k=v"`` tags, sorted; the ones too long for a tag stay in the metadata only."""
    tags = [f"{k}={v}" for k, v in sorted(labels.items()) if v and len(k) + len(v) < MAX_TAG]
    return tuple(tags[:MAX_TAGS])


def alert_event(
    source: AlertSource, tenant: str, alert: ReceivedAlert, context: Mapping[str, Any]
) -> IncidentEvent:
    """The incident a firing alert opens (or repeats). ``context``: payload-level facts."""
    metadata: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "alert_fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at.isoformat() if is_set(alert.starts_at) else None,
        "generator_url": alert.generator_url,
        **{k: v for k, v in context.items() if v not in (None, "", {}, [])},
        **{k: v for k, v in alert.extra.items() if v not in (None, "", {}, [])},
    }
    return IncidentEvent(
        title=alert_title(source, alert),
        description=alert_description(alert),
        severity=severity_of(alert.labels),
        source=str(source),
        metadata={k: v for k, v in metadata.items() if v is not None},
        fingerprint=alert_fingerprint(source, tenant, alert),
        tags=label_tags(alert.labels),
        tenant=tenant,
    )


def resolution_text(source: AlertSource, alert: ReceivedAlert) -> str:
    """What the incident's ``resolution`` says when the sender reports the alert resolved."""
    if is_set(alert.ends_at) and alert.ends_at is not None:
        return f"resolved by {source.display_name}: the alert ended at {alert.ends_at.isoformat()}"
    return f"resolved by {source.display_name}: the alert is no longer firing"
