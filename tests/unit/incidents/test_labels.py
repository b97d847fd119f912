"""Incident labels: tags, metadata, alert labels, series tags and fields, most specific first."""

import pytest

from incidents.labels import first_value, incident_labels, parse_tag


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("service=db", ("service", "db")),
        ("service:db", ("service", "db")),
        ("url:http://x=1", ("url", "http://x=1")),
        ("k=v:w", ("k", "v:w")),
        ("primary", ("primary", "true")),
        ("=odd", ("=odd", "true")),
    ],
)
def test_parse_tag(tag, expected):
    assert parse_tag(tag) == expected


def test_all_sources_are_collected_most_specific_first():
    labels = incident_labels(
        tags=["service=checkout", "team:payments", "db"],
        metadata={
            "labels": {"severity": "warning", "alertname": "HighLatency"},
            "tags": {"host": "web-1"},
            "database": "primary",
            "timeout_count": 15,
            "flag": True,
            "nested": {"not": "a label"},
            "service": "from-metadata",
        },
        fields={"severity": "medium", "source": "alertmanager", "series": None},
    )
    assert labels["service"] == ("checkout", "from-metadata")
    assert labels["team"] == ("payments",)
    assert labels["db"] == ("true",)
    assert labels["severity"] == ("warning", "medium")
    assert labels["alertname"] == ("HighLatency",)
    assert labels["host"] == ("web-1",)
    assert labels["database"] == ("primary",)
    assert labels["timeout_count"] == ("15",)
    assert labels["flag"] == ("true",)
    assert labels["source"] == ("alertmanager",)
    assert "nested" not in labels and "series" not in labels
    assert first_value(labels, "service") == "checkout"
    assert first_value(labels, "absent") is None


def test_series_tags_measurement_and_field_are_labels():
    labels = incident_labels(fields={"series": "cpu,host=a,service=api usage_user"})
    assert labels["host"] == ("a",)
    assert labels["service"] == ("api",)
    assert labels["measurement"] == ("cpu",)
    assert labels["field"] == ("usage_user",)
    assert labels["series"] == ("cpu,host=a,service=api usage_user",)


def test_empty_values_and_huge_metadata_are_not_labels():
    labels = incident_labels(tags=["team="], metadata={"blob": "x" * 10_000, "empty": ""})
    assert labels == {}
