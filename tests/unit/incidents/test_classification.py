import pytest

from incidents.classification import classify, severity_for
from incidents.config import DEFAULT_SEVERITY_THRESHOLDS
from incidents.schemas import Category, Severity


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"measurement": "postgresql", "field": "connections"}, Category.DATABASE),
        ({"measurement": "mem", "field": "used_percent"}, Category.MEMORY),
        ({"measurement": "disk", "field": "used_percent", "tags": {"path": "/"}}, Category.STORAGE),
        ({"measurement": "net", "field": "bytes_recv"}, Category.NETWORK),
        ({"measurement": "cpu", "field": "usage_user"}, Category.COMPUTE),
        ({"measurement": "http", "field": "latency_ms"}, Category.APPLICATION),
        ({"title": "Failed SSH login burst"}, Category.SECURITY),
        (
            {"title": "Datenbank-Verbindungs-Timeout", "metadata": {"database": "primary"}},
            Category.DATABASE,
        ),
        ({"measurement": "widgets", "field": "count"}, Category.OTHER),
    ],
)
def test_rule_based_category(kwargs, expected):
    assert classify(**kwargs) is expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.95, Severity.CRITICAL),
        (0.9, Severity.CRITICAL),
        (0.75, Severity.HIGH),
        (0.5, Severity.MEDIUM),
        (0.31, Severity.LOW),
        (0.1, Severity.INFO),
    ],
)
def test_severity_from_the_seed_thresholds(score, expected):
    assert severity_for(score, DEFAULT_SEVERITY_THRESHOLDS) is expected


def test_severity_thresholds_are_configurable():
    assert severity_for(0.6, {"critical": 0.55}) is Severity.CRITICAL
