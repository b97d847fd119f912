"""Incident operations added for intake and collaboration: comments on the timeline, and
resolving the open incident of a fingerprint (what a "resolved" alert from Alertmanager or
Grafana does). They run in the store's own transactions and dedup locks.
"""

from __future__ import annotations

from connectors.store import Store
from incidents.records import Incident, TimelineEntry, TimelineType, utc_now


def add_comment(
    store: Store, tenant: str, incident_id: str, *, actor: str, text: str
) -> TimelineEntry | None:
    """Append a ``comment`` entry to the incident's timeline; None when there is no incident."""
    now = utc_now()
    with store._write() as conn:
        incident = store._get(conn, tenant, incident_id)
        if incident is None:
            return None
        details = {"text": text}
        store._add_timeline(conn, incident, TimelineType.COMMENT, actor, details, now)
    return TimelineEntry(
        incident_id=incident_id, at=now, type=TimelineType.COMMENT, actor=actor, details=details
    )


def resolve_by_fingerprint(
    store: Store, tenant: str, fingerprint: str, *, actor: str, resolution: str
) -> Incident | None:
    """Resolve the unresolved incident with this fingerprint; None when none is unresolved."""
    now = utc_now()
    with store._write() as conn:
        store._lock(conn, tenant, fingerprint)
        current = store._open_incident(conn, tenant, fingerprint)
        if current is None:
            return None
        return store._resolve(conn, current, actor, resolution, now)
