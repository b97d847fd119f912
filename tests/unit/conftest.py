"""Unit tests never see the real services: ``./deploy.sh test`` exports their settings for the
integration tests, and a unit test must not start reading from Kafka or InfluxDB because of it."""

import pytest

SERVICE_VARIABLES = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_METRICS_TOPIC",
    "KAFKA_DLQ_TOPIC",
    "KAFKA_INCIDENTS_TOPIC",
    "INFLUX_URL",
    "INFLUX_TOKEN",
    "INFLUX_ORG",
    "INFLUX_BUCKET",
    "ENVIRONMENT",
)


@pytest.fixture(autouse=True)
def _no_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
