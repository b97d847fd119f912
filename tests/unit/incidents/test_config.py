import pytest
from pydantic import ValidationError

from incidents.config import DEFAULT_SEVERITY_THRESHOLDS, AdvancedConfiguration, Settings


def test_defaults_are_the_local_embedded_mode(monkeypatch):
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "INFLUX_URL", "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.environment == "local" and s.database_url.startswith("sqlite:///")
    assert not s.uses_kafka and not s.uses_influx
    assert s.window_ns == 60_000_000_000 and s.anomaly_threshold == 0.95


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("WINDOW_SECONDS", "10")
    monkeypatch.setenv("ANOMALY_THRESHOLD", "0.9")
    monkeypatch.setenv("SEVERITY_THRESHOLDS", '{"critical": 0.8}')
    s = Settings()
    assert s.window_seconds == 10 and s.anomaly_threshold == 0.9
    assert s.severity_thresholds == {**DEFAULT_SEVERITY_THRESHOLDS, "critical": 0.8}


@pytest.mark.parametrize(
    "env",
    [
        {"WINDOW_SECONDS": "0"},
        {"ANOMALY_THRESHOLD": "1.5"},
        {"SEVERITY_THRESHOLDS": '{"urgent": 0.5}'},
        {"SEVERITY_THRESHOLDS": '{"high": 2}'},
        {"API_PORT": "70000"},
    ],
)
def test_bad_values_are_refused_with_the_variable_named(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert next(iter(env)).lower() in str(err.value).lower()


def test_public_view_hides_secrets_and_url_passwords():
    s = Settings(
        database_url="postgresql://app:hunter2@db/incidents",
        jwt_secret="s3cret-jwt",
        admin_password="pw-123456",
        influx_token="tok-abc",
    )
    view = s.public_view()
    text = repr(view)
    for secret in ("hunter2", "s3cret-jwt", "pw-123456", "tok-abc"):
        assert secret not in text
    assert view["jwt_secret"] == "set" and view["encryption_key"] == "unset"


def test_seed_advanced_configuration_entry_point():
    config = AdvancedConfiguration.from_environment("production")
    assert config.settings.environment == "production"
    assert config.incident_config.severity_thresholds == DEFAULT_SEVERITY_THRESHOLDS
