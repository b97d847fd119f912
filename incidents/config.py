"""Configuration per environment, read from environment variables (contract 3 of ARCHITECTURE.md).

Everything is optional in ``local`` mode: the embedded default is simulator + SQLite.
Secrets are ``SecretStr`` so they never show up in reprs, logs or ``/api/v1/admin/config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from incidents.grouping import GroupingPolicy, parse_group_by
from incidents.prediction import ForecastLimit, parse_forecast_limits

Environment = Literal["local", "development", "staging", "production", "test"]

DEFAULT_SEVERITY_THRESHOLDS: dict[str, float] = {
    "critical": 0.9,
    "high": 0.7,
    "medium": 0.5,
    "low": 0.3,
}

VAR_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Environment = "local"
    database_url: str = f"sqlite:///{VAR_DIR / 'incidents.db'}"

    kafka_bootstrap_servers: str | None = None
    kafka_metrics_topic: str = "metrics"
    kafka_metrics_partitions: int = Field(default=1, ge=1, le=10_000)
    kafka_dlq_topic: str = "metrics.dlq"
    kafka_incidents_topic: str = "incidents"

    influx_url: str | None = None
    influx_token: SecretStr | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None

    window_seconds: int = Field(default=60, ge=1, le=86_400)
    allowed_lateness_seconds: int = Field(default=30, ge=0, le=86_400)
    anomaly_threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    resolve_after_windows: int = Field(default=3, ge=1, le=10_000)
    detector_members: str = "knn,ecod,arima"
    """Ensemble members of the dataflow's detector, comma-separated."""
    severity_thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_THRESHOLDS)
    )
    forecast_limits: str = "disk.used_percent>95"
    """Predicted incidents: ``measurement.field>value`` / ``<value``, comma-separated."""
    forecast_horizon_windows: int = Field(default=60, ge=1, le=10_000)
    forecast_level: float = Field(default=0.95, gt=0.0, lt=1.0)

    secret_key: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    encryption_key: SecretStr | None = None
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    access_token_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65_535)

    ml_model_path: str | None = None
    enable_ml_prediction: bool = True
    log_level: str = "INFO"

    simulator_hosts: int = Field(default=8, ge=1, le=100_000)
    simulator_speed: float = Field(default=60.0, gt=0.0)
    simulator_seed: int = 7
    simulator_filling_disks: int = Field(default=1, ge=0, le=100_000)
    """Hosts whose root disk fills up and is cleaned, again and again (predicted incidents)."""
    replay_file: str | None = None

    max_request_bytes: int = Field(default=1_000_000, ge=1_024)

    incident_group_by: str = "service"
    """Comma-separated labels (tag keys, metadata keys, series tags) incidents are grouped by;
    empty switches grouping off (see ``incidents.grouping``)."""
    incident_group_window_seconds: int = Field(default=300, ge=0, le=7 * 86_400)

    automation_enabled: bool = True
    """Run the automation engine inside the API process (local mode's in-process engine)."""
    automation_poll_seconds: float = Field(default=1.0, gt=0.0, le=3_600.0)
    automation_action_timeout_seconds: float = Field(default=10.0, gt=0.0, le=300.0)
    automation_actions: str | None = None
    """Named action definitions: a JSON object ``{"notify_dba": {"type": "email", …}}`` or the
    path of a file holding one."""

    remediations: str | None = None
    """Named remediations (``incidents.remediation``): a JSON object
    ``{"allowed_commands": [...], "remediations": {name: {...}}}`` or the path of a file."""

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "incidents@localhost"
    smtp_starttls: bool = True

    @field_validator("severity_thresholds")
    @classmethod
    def _known_severities(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(DEFAULT_SEVERITY_THRESHOLDS)
        if unknown:
            raise ValueError(f"unknown severities {sorted(unknown)}; use critical/high/medium/low")
        if any(not 0.0 <= x <= 1.0 for x in v.values()):
            raise ValueError("severity thresholds must lie in [0, 1]")
        return {**DEFAULT_SEVERITY_THRESHOLDS, **v}

    @field_validator("detector_members")
    @classmethod
    def _known_members(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        known = {"knn", "ecod", "arima"}
        if not names or set(names) - known or len(set(names)) != len(names):
            raise ValueError(
                f"DETECTOR_MEMBERS must list distinct members of {sorted(known)}, got {value!r}"
            )
        return ",".join(names)

    @field_validator("automation_actions")
    @classmethod
    def _valid_named_actions(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            load_named_actions(value)  # refuses a bad definition at start, with its reason
        return value

    @property
    def named_actions(self) -> dict[str, Any]:
        """The parsed ``AUTOMATION_ACTIONS`` (name -> concrete action)."""
        if not self.automation_actions or not self.automation_actions.strip():
            return {}
        return load_named_actions(self.automation_actions)

    @field_validator("remediations")
    @classmethod
    def _valid_remediations(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            load_remediations(value)  # refuses a bad definition at start, with its reason
        return value

    @property
    def remediation_catalogue(self) -> dict[str, Any]:
        """The parsed ``REMEDIATIONS`` (name -> ``incidents.remediation.Remediation``)."""
        if not self.remediations or not self.remediations.strip():
            return {}
        return load_remediations(self.remediations)

    @property
    def detector_member_names(self) -> tuple[str, ...]:
        return tuple(self.detector_members.split(","))

    @field_validator("forecast_limits")
    @classmethod
    def _valid_limits(cls, value: str) -> str:
        parse_forecast_limits(value)
        return value

    @property
    def forecast_limit_rules(self) -> tuple[ForecastLimit, ...]:
        return parse_forecast_limits(self.forecast_limits)

    @field_validator("log_level")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @property
    def grouping_policy(self) -> GroupingPolicy:
        return GroupingPolicy(
            group_by=parse_group_by(self.incident_group_by),
            window_seconds=self.incident_group_window_seconds,
        )

    @property
    def window_ns(self) -> int:
        return self.window_seconds * 1_000_000_000

    @property
    def allowed_lateness_ns(self) -> int:
        return self.allowed_lateness_seconds * 1_000_000_000

    @property
    def uses_kafka(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def uses_influx(self) -> bool:
        return all((self.influx_url, self.influx_token, self.influx_org, self.influx_bucket))

    def public_view(self) -> dict[str, Any]:
        """What ``/api/v1/admin/config`` may show: no secret, no password inside a URL."""
        from incidents.security import redact_url

        secret_names = {
            "secret_key",
            "jwt_secret",
            "encryption_key",
            "admin_password",
            "influx_token",
            "smtp_password",
        }
        view: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in secret_names:
                view[name] = "set" if value else "unset"
            elif name == "database_url":
                view[name] = redact_url(value)
            elif name == "automation_actions":
                # Definitions may hold webhook tokens: show only each name's action type.
                view[name] = {n: str(a.type) for n, a in self.named_actions.items()}
            elif name == "remediations":
                # Header values may be tokens: show only each remediation's kind.
                view[name] = {n: r.kind for n, r in self.remediation_catalogue.items()}
            else:
                view[name] = value
        return view


def load_named_actions(value: str) -> dict[str, Any]:
    """``AUTOMATION_ACTIONS``: inline JSON (starts with ``{``) or the path of a JSON file."""
    import json

    from incidents.automation import parse_named_actions

    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"AUTOMATION_ACTIONS file cannot be read: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"AUTOMATION_ACTIONS is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("AUTOMATION_ACTIONS must be a JSON object of name -> action")
    return parse_named_actions(raw)


def _json_setting(value: str, setting: str) -> Any:
    """Inline JSON (starts with ``{``) or the path of a JSON file, as a JSON object."""
    import json

    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{setting} file cannot be read: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{setting} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{setting} must be a JSON object")
    return raw


def is_executable_file(path: str) -> bool:
    """An allowed remediation command must exist as a regular file we may execute."""
    import os

    return os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def load_remediations(value: str) -> dict[str, Any]:
    """``REMEDIATIONS``: inline JSON or the path of a JSON file (see ``incidents.remediation``)."""
    from incidents.remediation import parse_remediations

    return parse_remediations(_json_setting(value, "REMEDIATIONS"), is_executable_file)


@dataclass
class IncidentConfig:
    """Incident thresholds; the seed's names (``config.incident_config.severity_thresholds``)."""

    severity_thresholds: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_THRESHOLDS)
    )
    resolve_after_windows: int = 3


@dataclass
class AdvancedConfiguration:
    """The seed's entry point: ``AdvancedConfiguration.from_environment("production")``."""

    settings: Settings
    incident_config: IncidentConfig

    @classmethod
    def from_environment(cls, environment: str | None = None) -> AdvancedConfiguration:
        settings = Settings() if environment is None else Settings(environment=environment)
        return cls(
            settings=settings,
            incident_config=IncidentConfig(
                severity_thresholds=dict(settings.severity_thresholds),
                resolve_after_windows=settings.resolve_after_windows,
            ),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
