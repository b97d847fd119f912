import pytest

from incidents.classification import (
    Prediction,
    classify,
    confident_rule_category,
    decide_category,
    severity_for,
    structural_names,
)
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


# --- confident rules and the decision order ---------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["database", "timeout_count"], Category.DATABASE),  # the seed's metadata keys
        (["mem", "used_percent"], Category.MEMORY),
        (["disk", "path"], Category.STORAGE),
        (["alertname:NodeHighCPU", "cpu"], Category.COMPUTE),
        (["database", "http_status"], None),  # two categories: not confident
        (["service", "team", "timeout"], None),  # generic names only
        ([], None),
    ],
)
def test_confident_rules_need_exactly_one_category(names, expected):
    assert confident_rule_category(names) is expected


def test_structural_names_leave_out_metadata_values_and_identity_tags():
    names = structural_names(
        measurement="cpu",
        tags={"host": "db-1", "path": "/var"},
        labels=["prod"],
        metadata={"database": "primary"},
    )
    assert sorted(names) == sorted(["cpu", "prod", "host", "path", "/var", "database"])


class Fixed:
    def __init__(self, prediction: Prediction) -> None:
        self.prediction = prediction
        self.calls: list[tuple] = []

    def predict(self, title, description, labels):
        self.calls.append((title, description, list(labels)))
        return self.prediction


def test_a_remembered_correction_beats_the_rules():
    predictor = Fixed(Prediction(Category.NETWORK, 1.0, "correction"))
    decided = decide_category(title="x", metadata={"database": 1}, predictor=predictor)
    assert (decided.category, decided.method) == (Category.NETWORK, "correction")


def test_confident_rules_beat_the_model():
    predictor = Fixed(Prediction(Category.NETWORK, 0.99))
    decided = decide_category(
        title="Datenbank-Verbindungs-Timeout", metadata={"database": "primary"}, predictor=predictor
    )
    assert (decided.category, decided.method) == (Category.DATABASE, "rules")


def test_the_model_sees_tags_and_metadata_keys():
    predictor = Fixed(Prediction(Category.SECURITY, 0.8))
    decided = decide_category(
        title="Zertifikat läuft ab",
        description="d",
        tags=["prod"],
        metadata={"team": "x"},
        predictor=predictor,
    )
    assert (decided.category, decided.method, decided.confidence) == (
        Category.SECURITY,
        "model",
        0.8,
    )
    assert predictor.calls == [("Zertifikat läuft ab", "d", ["prod", "team"])]


def test_an_unsure_model_falls_back_to_keywords_then_other():
    unsure = Fixed(Prediction(Category.SECURITY, 0.1))
    by_keyword = decide_category(title="disk almost full", predictor=unsure, min_confidence=0.3)
    assert (by_keyword.category, by_keyword.method) == (Category.STORAGE, "keywords")
    nothing = decide_category(title="quarterly report", predictor=unsure, min_confidence=0.3)
    assert (nothing.category, nothing.method) == (Category.OTHER, "default")


def test_without_a_model_rules_and_keywords_decide():
    assert decide_category(title="x", metadata={"database": 1}).category is Category.DATABASE
    assert decide_category(title="SSH login burst").category is Category.SECURITY
    assert decide_category(title="quarterly report").category is Category.OTHER
