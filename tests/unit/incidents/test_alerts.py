"""Alerts from Alertmanager and Grafana as incidents: fingerprint, title, severity, tags."""

from datetime import UTC, datetime

import pytest

from incidents.alerts import (
    AlertSource,
    AlertStatus,
    ReceivedAlert,
    alert_event,
    alert_fingerprint,
    label_tags,
    resolution_text,
    severity_of,
)
from incidents.schemas import Severity

LABELS = {"alertname": "ProbeFailure", "instance": "https://server.example.org", "job": "http"}


def alert(**kw) -> ReceivedAlert:
    values = {"status": AlertStatus.FIRING, "labels": dict(LABELS), **kw}
    return ReceivedAlert(**values)


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("critical", Severity.CRITICAL),
        ("Critical", Severity.CRITICAL),
        ("page", Severity.CRITICAL),
        ("error", Severity.HIGH),
        ("high", Severity.HIGH),
        ("warning", Severity.MEDIUM),
        ("low", Severity.LOW),
        ("info", Severity.INFO),
        ("none", Severity.INFO),
        ("P1", Severity.CRITICAL),
        ("p4", Severity.LOW),
        ("sev2", Severity.HIGH),
        ("banana", Severity.MEDIUM),
    ],
)
def test_severity_label_mapping(word, severity):
    assert severity_of({"severity": word}) is severity


def test_severity_falls_back_to_priority_then_medium():
    assert severity_of({"priority": "P2"}) is Severity.HIGH
    assert severity_of({}) is Severity.MEDIUM


def test_fingerprint_from_the_alert_else_from_its_labels():
    given = alert(fingerprint="1a30ba71cca2921f")
    assert alert_fingerprint(AlertSource.ALERTMANAGER, "acme", given) == (
        "alertmanager:1a30ba71cca2921f"
    )
    assert alert_fingerprint(AlertSource.GRAFANA, "acme", given) == "grafana:1a30ba71cca2921f"
    unsafe = alert(fingerprint="ab/../cd ef")
    assert alert_fingerprint(AlertSource.ALERTMANAGER, "acme", unsafe) == "alertmanager:ab..cdef"
    derived = alert_fingerprint(AlertSource.ALERTMANAGER, "acme", alert())
    reordered = alert(labels=dict(reversed(list(LABELS.items()))))
    assert derived == alert_fingerprint(AlertSource.ALERTMANAGER, "acme", reordered)
    other = alert(labels={**LABELS, "instance": "b"})
    assert derived != alert_fingerprint(AlertSource.ALERTMANAGER, "acme", other)
    resolved = alert(status=AlertStatus.RESOLVED)
    assert derived == alert_fingerprint(AlertSource.ALERTMANAGER, "acme", resolved)


def test_event_title_description_tags_metadata():
    starts = datetime(2023, 2, 6, 13, 8, 45, tzinfo=UTC)
    event = alert_event(
        AlertSource.ALERTMANAGER,
        "acme",
        alert(
            labels={**LABELS, "severity": "critical", "service": "web"},
            annotations={"summary": "Probe failed", "description": "down for 5m"},
            starts_at=starts,
            fingerprint="f1",
            generator_url="http://prometheus/graph",
        ),
        {"receiver": "incidents", "group_key": "{}:{}", "external_url": ""},
    )
    assert event.title == "Probe failed"
    assert event.description == "down for 5m"
    assert event.severity is Severity.CRITICAL
    assert event.source == "alertmanager"
    assert event.fingerprint == "alertmanager:f1"
    assert "service=web" in event.tags and "alertname=ProbeFailure" in event.tags
    assert event.metadata["labels"]["instance"] == "https://server.example.org"
    assert event.metadata["annotations"]["summary"] == "Probe failed"
    assert event.metadata["starts_at"] == starts.isoformat()
    assert event.metadata["receiver"] == "incidents"
    assert "external_url" not in event.metadata  # empty context values are left out


def test_title_falls_back_to_alertname_then_source():
    assert alert_event(AlertSource.GRAFANA, "t", alert(), {}).title == "ProbeFailure"
    nameless = alert(labels={"job": "x"})
    assert alert_event(AlertSource.GRAFANA, "t", nameless, {}).title == "Alert from Grafana"


def test_long_labels_stay_out_of_the_tags():
    tags = label_tags({"short": "v", "long": "x" * 100, "empty": ""})
    assert tags == ("short=v",)


def test_resolution_mentions_the_sender_and_the_end():
    ended = alert(status=AlertStatus.RESOLVED, ends_at=datetime(2024, 1, 1, 10, tzinfo=UTC))
    text = resolution_text(AlertSource.ALERTMANAGER, ended)
    assert "Alertmanager" in text and "2024-01-01T10:00:00+00:00" in text
    zero = alert(status=AlertStatus.RESOLVED, ends_at=datetime(1, 1, 1, tzinfo=UTC))
    assert "no longer firing" in resolution_text(AlertSource.GRAFANA, zero)
