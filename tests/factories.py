"""Domain records for tests: the seed's incident, with any field changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from incidents.records import Incident
from incidents.schemas import Category, IncidentKind, IncidentStatus, Severity

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def seed_incident(**changes: Any) -> Incident:
    """The seed's "Datenbank-Verbindungs-Timeout" as a stored, open, critical incident."""
    values: dict[str, Any] = dict(
        id="inc-1",
        fingerprint="fp",
        tenant="acme",
        title="Datenbank-Verbindungs-Timeout",
        description="Mehrere Datenbank-Verbindungs-Timeouts erkannt",
        severity=Severity.CRITICAL,
        category=Category.DATABASE,
        status=IncidentStatus.OPEN,
        kind=IncidentKind.MANUAL,
        source="monitoring",
        series=None,
        metadata={"database": "primary"},
        score=None,
        peak_score=None,
        repeat_count=0,
        first_seen=NOW,
        last_seen=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    values.update(changes)
    return Incident(**values)
