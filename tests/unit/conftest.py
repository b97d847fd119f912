"""Unit tests never see the real services: ``./deploy.sh test`` exports their settings for the
integration tests, and a unit test must not start reading from Kafka or InfluxDB because of it."""

import pytest

from tests.conftest import SERVICE_VARIABLES

SCRUBBED = (*SERVICE_VARIABLES, "ENVIRONMENT")


@pytest.fixture(autouse=True)
def _no_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
