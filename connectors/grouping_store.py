"""Silences and grouping applied to every new incident, inside the transaction that inserts it.

``IntakeRules`` is the store's ``intake`` hook (``Store.from_settings`` installs it), so
incidents from the API, from the webhooks and from the dataflow are treated alike:

* a new incident that an active silence of its tenant matches gets ``metadata["silenced"] =
  true`` and ``metadata["silenced_by"] = <silence id>`` and a ``silenced`` timeline entry; the
  automation engine fires no actions for it.
* a new incident whose group (``incidents.grouping``) already has a root within the window gets
  ``parent_id`` = that root, the root's ``child_count`` goes up by one, and both get a
  ``grouped`` timeline entry.

The decisions are the pure functions of ``incidents.silences`` / ``incidents.grouping``; this
module only reads the candidates and writes the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.store import (
    AUTO_ACTOR,
    TimelineWriter,
    _advisory_key,
    incidents_table,
    insert_timeline_entry,
    silences_table,
)
from incidents.grouping import GroupCandidate, GroupingPolicy, choose_parent, group_key
from incidents.labels import FIELD_NAMES, Labels, incident_labels
from incidents.records import Incident, TimelineType, utc_now
from incidents.silences import Matcher, Silence, SilenceError, matching_silence

SILENCED = "silenced"
SILENCED_BY = "silenced_by"


def row_labels(row: Mapping[str, Any]) -> Labels:
    """Labels of an incident row about to be inserted (attribute names, as ``Store._insert``)."""
    return incident_labels(
        tags=row.get("tags") or (),
        metadata=row.get("metadata") or {},
        fields={name: row.get(name) for name in FIELD_NAMES},
    )


def silence_from_row(row: sa.Row[Any]) -> Silence | None:
    """The stored silence, or None if its matchers no longer validate (never raised at intake)."""
    m = row._mapping
    try:
        matchers = tuple(Matcher.from_mapping(raw) for raw in m["matchers"] or ())
    except (SilenceError, KeyError, TypeError):
        return None
    return Silence(
        id=m["id"],
        tenant=m["tenant"],
        matchers=matchers,
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        comment=m["comment"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def active_silences(conn: Connection, tenant: str, now: datetime) -> list[Silence]:
    """The tenant's silences active at ``now``, oldest first."""
    s = silences_table
    rows = conn.execute(
        sa.select(s)
        .where(s.c.tenant == tenant, s.c.starts_at <= now, s.c.ends_at > now)
        .order_by(s.c.created_at, s.c.id)
    )
    return [silence for r in rows if (silence := silence_from_row(r)) is not None]


class IntakeRules:
    """The ``IncidentIntake`` of ``connectors.store``: silences, then grouping."""

    def __init__(self, grouping: GroupingPolicy | None = None) -> None:
        self.grouping = grouping or GroupingPolicy()

    def prepare(self, conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
        labels = row_labels(row)
        now = row.get("created_at") or utc_now()
        silence = matching_silence(active_silences(conn, row["tenant"], now), labels, now)
        if silence is not None:
            row["metadata"] = {
                **(row.get("metadata") or {}),
                SILENCED: True,
                SILENCED_BY: silence.id,
            }
        key = group_key(self.grouping, labels)
        if key is None:
            return row
        row["group_key"] = key
        if conn.dialect.name == "postgresql":  # two roots of one group must not race
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": _advisory_key(row["tenant"], "group", key)},
            )
        parent_id = choose_parent(
            self.grouping,
            self._roots(conn, row["tenant"], key, row["first_seen"]),
            row["first_seen"],
        )
        if parent_id is not None:
            row["parent_id"] = parent_id
            t = incidents_table
            conn.execute(
                sa.update(t).where(t.c.id == parent_id).values(child_count=t.c.child_count + 1)
            )
        return row

    def _roots(
        self, conn: Connection, tenant: str, key: str, first_seen: datetime
    ) -> list[GroupCandidate]:
        t = incidents_table
        rows = conn.execute(
            sa.select(t.c.id, t.c.first_seen).where(
                t.c.tenant == tenant,
                t.c.group_key == key,
                t.c.parent_id.is_(None),
                t.c.first_seen >= first_seen - self.grouping.window,
                t.c.first_seen <= first_seen,
            )
        )
        return [GroupCandidate(id=r.id, first_seen=r.first_seen) for r in rows]

    def record(self, conn: Connection, incident: Incident, add_timeline: TimelineWriter) -> None:
        now = incident.created_at
        silence_id = incident.metadata.get(SILENCED_BY) if incident.metadata.get(SILENCED) else None
        if silence_id is not None:
            add_timeline(
                conn, incident, TimelineType.SILENCED, AUTO_ACTOR, {"silence_id": silence_id}, now
            )
        if incident.parent_id is not None:
            details = {"parent_id": incident.parent_id}
            add_timeline(conn, incident, TimelineType.GROUPED, AUTO_ACTOR, details, now)
            # the parent is of the same tenant (roots are looked up per tenant)
            insert_timeline_entry(
                conn,
                incident.tenant,
                incident.parent_id,
                TimelineType.GROUPED,
                AUTO_ACTOR,
                {"child_id": incident.id},
                now,
            )
