"""Automation tables on the Store's engine: rules, firings, action results, engine cursors.

Schema: migration ``0003_automation_rules``. The same transaction conventions as
``connectors.store`` (SQLite: BEGIN IMMEDIATE for writes; PostgreSQL: plain transactions).

Firing once. ``claim_firing`` inserts (rule, incident, firing key) with ON CONFLICT DO NOTHING and
writes the ``rule_fired`` timeline entry only when its row went in, so whichever worker claims a
firing first is the only one that runs its actions (at most once: a crash after the claim loses
that firing's actions rather than running them twice).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from connectors.store import (
    SealedActionsJSON,
    Store,
    StoreError,
    UTCDateTime,
    incident_events_table,
    incident_id_column,
    insert_timeline_entry,
    metadata,
    name_taken,
    serial_id_column,
)
from incidents.automation import (
    FIRST_FIRING,
    TRIGGERING_TYPES,
    ActionResult,
    ActionSpec,
    AutomationRule,
    PlannedAction,
    action_to_json,
    parse_action,
)
from incidents.records import Incident, TimelineType, utc_now

AUTOMATION_ACTOR = "automation"

automation_rules_table = sa.Table(
    "automation_rules",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("condition", sa.Text, nullable=False),
    sa.Column("actions", SealedActionsJSON("actions"), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("fire_on_repeat", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("tenant", "name", name="uq_automation_rules_tenant_name"),
)

automation_firings_table = sa.Table(
    "automation_firings",
    metadata,
    serial_id_column(),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column(
        "rule_id",
        sa.String(36),
        sa.ForeignKey("automation_rules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    incident_id_column(),
    sa.Column("firing_key", sa.String(64), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=True),
    sa.Column("fired_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("rule_id", "incident_id", "firing_key", name="uq_automation_firings_once"),
    sa.Index("ix_automation_firings_incident", "incident_id"),
)

automation_action_results_table = sa.Table(
    "automation_action_results",
    metadata,
    serial_id_column(),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(36), nullable=True),
    sa.Column("incident_id", sa.String(36), nullable=False),
    sa.Column("action_type", sa.String(32), nullable=False),
    sa.Column("action_name", sa.String(128), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_automation_action_results_type_outcome", "action_type", "outcome"),
)

automation_cursors_table = sa.Table(
    "automation_cursors",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


class RuleNameTaken(StoreError, ValueError):
    """Another rule of the tenant has this name."""


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """A timeline entry that may trigger rules."""

    event_id: int
    tenant: str
    incident_id: str
    type: TimelineType


def _rule_from_row(row: sa.Row[Any]) -> AutomationRule:
    m = row._mapping
    return AutomationRule(
        id=m["id"],
        tenant=m["tenant"],
        name=m["name"],
        condition=m["condition"],
        actions=tuple(parse_action(a) for a in (m["actions"] or [])),
        enabled=bool(m["enabled"]),
        fire_on_repeat=bool(m["fire_on_repeat"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        created_by=m["created_by"],
    )


def _insert_ignoring_conflicts(conn: Connection, table: sa.Table) -> Any:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


class AutomationStore:
    """Rules and engine state, sharing ``store``'s engine and transaction conventions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- rules -------------------------------------------------------------------------------

    def create_rule(
        self,
        tenant: str,
        *,
        name: str,
        condition: str,
        actions: Sequence[ActionSpec],
        enabled: bool = True,
        fire_on_repeat: bool = False,
        actor: str | None = None,
    ) -> AutomationRule:
        now = utc_now()
        row = {
            "id": str(uuid.uuid4()),
            "tenant": tenant,
            "name": name,
            "condition": condition,
            "actions": [action_to_json(a) for a in actions],
            "enabled": bool(enabled),
            "fire_on_repeat": bool(fire_on_repeat),
            "created_by": actor,
            "created_at": now,
            "updated_at": now,
        }
        r = automation_rules_table
        with self.store._write() as conn:
            if self._name_taken(conn, tenant, name, except_id=None):
                raise RuleNameTaken(f"a rule named {name!r} already exists")
            try:
                conn.execute(sa.insert(r), [row])
            except IntegrityError as exc:  # a concurrent create won the race
                raise RuleNameTaken(f"a rule named {name!r} already exists") from exc
        return _rule_from_row_dict(row)

    def _name_taken(self, conn: Connection, tenant: str, name: str, except_id: str | None) -> bool:
        return name_taken(conn, automation_rules_table, tenant, name, except_id)

    def get_rule(self, tenant: str, rule_id: str) -> AutomationRule | None:
        r = automation_rules_table
        with self.store._read() as conn:
            row = conn.execute(sa.select(r).where(r.c.tenant == tenant, r.c.id == rule_id)).first()
            return None if row is None else _rule_from_row(row)

    def list_rules(
        self, tenant: str | None = None, *, enabled_only: bool = False
    ) -> list[AutomationRule]:
        """The tenant's rules by name (all tenants' with ``tenant=None``)."""
        r = automation_rules_table
        stmt = sa.select(r).order_by(r.c.tenant, r.c.name)
        if tenant is not None:
            stmt = stmt.where(r.c.tenant == tenant)
        if enabled_only:
            stmt = stmt.where(r.c.enabled.is_(True))
        with self.store._read() as conn:
            return [_rule_from_row(row) for row in conn.execute(stmt)]

    def replace_rule(
        self,
        tenant: str,
        rule_id: str,
        *,
        name: str,
        condition: str,
        actions: Sequence[ActionSpec],
        enabled: bool,
        fire_on_repeat: bool,
    ) -> AutomationRule | None:
        """PUT semantics: every field is replaced. ``None`` if there is no such rule."""
        r = automation_rules_table
        with self.store._write() as conn:
            exists = conn.execute(
                sa.select(r.c.id).where(r.c.tenant == tenant, r.c.id == rule_id)
            ).first()
            if exists is None:
                return None
            if self._name_taken(conn, tenant, name, except_id=rule_id):
                raise RuleNameTaken(f"a rule named {name!r} already exists")
            conn.execute(
                sa.update(r)
                .where(r.c.id == rule_id)
                .values(
                    name=name,
                    condition=condition,
                    actions=[action_to_json(a) for a in actions],
                    enabled=bool(enabled),
                    fire_on_repeat=bool(fire_on_repeat),
                    updated_at=utc_now(),
                )
            )
        return self.get_rule(tenant, rule_id)

    def delete_rule(self, tenant: str, rule_id: str) -> bool:
        r = automation_rules_table
        f = automation_firings_table
        with self.store._write() as conn:
            # Firings go explicitly: SQLite enforces the cascade only with foreign keys on.
            conn.execute(sa.delete(f).where(f.c.rule_id == rule_id, f.c.tenant == tenant))
            result = conn.execute(sa.delete(r).where(r.c.tenant == tenant, r.c.id == rule_id))
            return result.rowcount > 0

    # -- engine state ------------------------------------------------------------------------

    def last_event_id(self) -> int:
        e = incident_events_table
        with self.store._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0)

    def cursor(self, name: str) -> int | None:
        c = automation_cursors_table
        with self.store._read() as conn:
            value = conn.execute(
                sa.select(c.c.last_event_id).where(c.c.name == name)
            ).scalar_one_or_none()
            return None if value is None else int(value)

    def set_cursor(self, name: str, event_id: int) -> None:
        c = automation_cursors_table
        row = {"name": name, "last_event_id": int(event_id), "updated_at": utc_now()}
        with self.store._write() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(c)
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "last_event_id": stmt.excluded.last_event_id,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            conn.execute(stmt, [row])

    def changes_after(self, event_id: int, limit: int = 500) -> list[IncidentChange]:
        """Triggering timeline entries with an id above ``event_id``, oldest first."""
        e = incident_events_table
        types = sorted(str(t) for t in TRIGGERING_TYPES)
        stmt = (
            sa.select(e.c.id, e.c.tenant, e.c.incident_id, e.c.type)
            .where(e.c.id > event_id, e.c.type.in_(types))
            .order_by(e.c.id)
            .limit(limit)
        )
        with self.store._read() as conn:
            return [
                IncidentChange(int(i), tenant, incident_id, TimelineType(kind))
                for i, tenant, incident_id, kind in conn.execute(stmt)
            ]

    def fired_rule_ids(self, incident_id: str) -> set[str]:
        f = automation_firings_table
        with self.store._read() as conn:
            rows = conn.execute(
                sa.select(f.c.rule_id).where(
                    f.c.incident_id == incident_id, f.c.firing_key == FIRST_FIRING
                )
            )
            return {rule_id for (rule_id,) in rows}

    def claim_firing(
        self,
        incident: Incident,
        rule: AutomationRule,
        key: str,
        event_id: int,
        planned: Sequence[PlannedAction],
    ) -> bool:
        """Record the firing and its ``rule_fired`` timeline entry; False if already fired."""
        now = utc_now()
        with self.store._write() as conn:
            # One row, RETURNING: an executemany's rowcount is not reliable on PostgreSQL (it
            # said 1 for a conflicting insert, and the rule fired twice).
            stmt = _insert_ignoring_conflicts(conn, automation_firings_table).values(
                tenant=incident.tenant,
                rule_id=rule.id,
                incident_id=incident.id,
                firing_key=key,
                event_id=event_id,
                fired_at=now,
            )
            inserted = conn.execute(stmt.returning(automation_firings_table.c.rule_id)).first()
            if inserted is None:
                return False
            details = {
                "rule_id": rule.id,
                "rule": rule.name,
                "condition": rule.condition,
                "firing": key,
                "actions": [p.describe() for p in planned],
            }
            _add_timeline(conn, incident, TimelineType.RULE_FIRED, details, now)
            return True

    def record_action_result(
        self,
        incident: Incident,
        rule: AutomationRule,
        planned: PlannedAction,
        result: ActionResult,
    ) -> None:
        """The result row (for ``automation_success_rate``) and the timeline entry, together."""
        now = utc_now()
        with self.store._write() as conn:
            conn.execute(
                sa.insert(automation_action_results_table),
                [
                    {
                        "tenant": incident.tenant,
                        "rule_id": rule.id,
                        "incident_id": incident.id,
                        "action_type": planned.type,
                        "action_name": planned.name,
                        "outcome": str(result.outcome),
                        "status_code": result.status_code,
                        "error": result.error,
                        "duration_ms": result.duration_ms,
                        "at": now,
                    }
                ],
            )
            details: dict[str, Any] = {
                "rule_id": rule.id,
                "rule": rule.name,
                **planned.describe(),
                "outcome": str(result.outcome),
                "status_code": result.status_code,
                "error": result.error,
                "duration_ms": result.duration_ms,
            }
            _add_timeline(conn, incident, TimelineType.ACTION, details, now)

    def action_counts(self) -> list[tuple[str, str, int]]:
        """(action type, outcome, count) over all tenants, for the Prometheus collector."""
        a = automation_action_results_table
        with self.store._read() as conn:
            rows = conn.execute(
                sa.select(a.c.action_type, a.c.outcome, sa.func.count())
                .group_by(a.c.action_type, a.c.outcome)
                .order_by(a.c.action_type, a.c.outcome)
            )
            return [(kind, outcome, int(n)) for kind, outcome, n in rows]


def _rule_from_row_dict(row: Mapping[str, Any]) -> AutomationRule:
    return AutomationRule(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        condition=row["condition"],
        actions=tuple(parse_action(a) for a in row["actions"]),
        enabled=row["enabled"],
        fire_on_repeat=row["fire_on_repeat"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
    )


def _add_timeline(
    conn: Connection,
    incident: Incident,
    entry_type: TimelineType,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    insert_timeline_entry(
        conn, incident.tenant, incident.id, entry_type, AUTOMATION_ACTOR, details, now
    )


__all__ = [
    "AUTOMATION_ACTOR",
    "AutomationStore",
    "IncidentChange",
    "RuleNameTaken",
]
