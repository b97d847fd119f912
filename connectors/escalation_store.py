"""Escalation tables on the Store's engine: policies, running escalations, the scheduler's jobs.

Schema: migration ``0005_escalation``. ``escalation_jobs`` is APScheduler's
``SQLAlchemyJobStore`` table (its own layout; APScheduler reads and writes it), created by the
migration so the schema has one owner.

Every level fires at most once: ``claim_levels`` moves ``next_level`` forward inside a write
transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the row is locked ``FOR UPDATE``), so two
schedulers over the same database — or a job replayed after a restart — cannot fire a level twice.
Cancelling is the same kind of claim on ``status``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from connectors.automation_store import (
    AUTOMATION_ACTOR,
    automation_action_results_table,
)
from connectors.store import (
    SealedActionsJSON,
    Store,
    StoreError,
    UTCDateTime,
    incident_id_column,
    insert_timeline_entry,
    metadata,
    name_taken,
)
from incidents.automation import ActionResult, PlannedAction
from incidents.escalation import (
    Escalation,
    EscalationLevel,
    EscalationPolicy,
    EscalationStatus,
    describe_levels,
    levels_from_json,
    levels_to_json,
)
from incidents.records import Incident, TimelineType, utc_now

ESCALATION_JOBS_TABLE = "escalation_jobs"

escalation_policies_table = sa.Table(
    "escalation_policies",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("levels", SealedActionsJSON("levels"), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("tenant", "name", name="uq_escalation_policies_tenant_name"),
)

escalations_table = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    incident_id_column(),
    sa.Column("policy_id", sa.String(36), nullable=True),
    sa.Column("policy", sa.String(128), nullable=False),
    sa.Column("levels", SealedActionsJSON("levels"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("next_level", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("cancelled_by", sa.String(128), nullable=True),
    sa.Column("reason", sa.String(256), nullable=True),
    sa.Index("ix_escalations_incident_status", "incident_id", "status"),
    sa.Index("ix_escalations_status", "status"),
)

escalation_jobs_table = sa.Table(
    ESCALATION_JOBS_TABLE,
    metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25), index=True),
    sa.Column("job_state", sa.LargeBinary, nullable=False),
)
"""APScheduler 3's job table layout (``apscheduler.jobstores.sqlalchemy``)."""


class PolicyNameTaken(StoreError, ValueError):
    """Another escalation policy of the tenant has this name."""


def _policy_from_row(m: Mapping[str, Any]) -> EscalationPolicy:
    return EscalationPolicy(
        id=m["id"],
        tenant=m["tenant"],
        name=m["name"],
        levels=levels_from_json(m["levels"]),
        created_by=m["created_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _escalation_from_row(m: Mapping[str, Any]) -> Escalation:
    return Escalation(
        id=m["id"],
        tenant=m["tenant"],
        incident_id=m["incident_id"],
        policy_id=m["policy_id"],
        policy=m["policy"],
        levels=levels_from_json(m["levels"]),
        started_at=m["started_at"],
        status=EscalationStatus(m["status"]),
        next_level=int(m["next_level"]),
        finished_at=m["finished_at"],
        cancelled_by=m["cancelled_by"],
        reason=m["reason"],
    )


def _add_timeline(
    conn: Connection,
    tenant: str,
    incident_id: str,
    entry_type: TimelineType,
    details: Mapping[str, Any],
    now: datetime,
    actor: str = AUTOMATION_ACTOR,
) -> None:
    insert_timeline_entry(conn, tenant, incident_id, entry_type, actor, details, now)


class EscalationStore:
    """Policies and escalations, sharing ``store``'s engine and transaction conventions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- policies ----------------------------------------------------------------------------

    def create_policy(
        self,
        tenant: str,
        *,
        name: str,
        levels: Sequence[EscalationLevel],
        actor: str | None = None,
    ) -> EscalationPolicy:
        now = utc_now()
        row = {
            "id": str(uuid.uuid4()),
            "tenant": tenant,
            "name": name,
            "levels": levels_to_json(levels),
            "created_by": actor,
            "created_at": now,
            "updated_at": now,
        }
        with self.store._write() as conn:
            if self._name_taken(conn, tenant, name, except_id=None):
                raise PolicyNameTaken(f"an escalation policy named {name!r} already exists")
            try:
                conn.execute(sa.insert(escalation_policies_table), [row])
            except IntegrityError as exc:  # a concurrent create won the race
                raise PolicyNameTaken(
                    f"an escalation policy named {name!r} already exists"
                ) from exc
        return _policy_from_row(row)

    def _name_taken(self, conn: Connection, tenant: str, name: str, except_id: str | None) -> bool:
        return name_taken(conn, escalation_policies_table, tenant, name, except_id)

    def find_policy(self, tenant: str, id_or_name: str) -> EscalationPolicy | None:
        """By id, else by name (names are unique per tenant)."""
        p = escalation_policies_table
        with self.store._read() as conn:
            for column in (p.c.id, p.c.name):
                row = conn.execute(
                    sa.select(p).where(p.c.tenant == tenant, column == id_or_name)
                ).first()
                if row is not None:
                    return _policy_from_row(row._mapping)
        return None

    def list_policies(self, tenant: str) -> list[EscalationPolicy]:
        p = escalation_policies_table
        with self.store._read() as conn:
            rows = conn.execute(sa.select(p).where(p.c.tenant == tenant).order_by(p.c.name))
            return [_policy_from_row(r._mapping) for r in rows]

    def replace_policy(
        self, tenant: str, policy_id: str, *, name: str, levels: Sequence[EscalationLevel]
    ) -> EscalationPolicy | None:
        """PUT semantics. Escalations already running keep the levels they started with."""
        p = escalation_policies_table
        with self.store._write() as conn:
            exists = conn.execute(
                sa.select(p.c.id).where(p.c.tenant == tenant, p.c.id == policy_id)
            ).first()
            if exists is None:
                return None
            if self._name_taken(conn, tenant, name, except_id=policy_id):
                raise PolicyNameTaken(f"an escalation policy named {name!r} already exists")
            conn.execute(
                sa.update(p)
                .where(p.c.id == policy_id)
                .values(name=name, levels=levels_to_json(levels), updated_at=utc_now())
            )
        return self.find_policy(tenant, policy_id)

    def delete_policy(self, tenant: str, policy_id: str) -> bool:
        p = escalation_policies_table
        with self.store._write() as conn:
            result = conn.execute(sa.delete(p).where(p.c.tenant == tenant, p.c.id == policy_id))
            return result.rowcount > 0

    # -- escalations -------------------------------------------------------------------------

    def start(
        self, incident: Incident, policy: EscalationPolicy, *, source: Mapping[str, Any]
    ) -> Escalation | None:
        """Record a new escalation and its ``escalation_started`` entry; ``None`` when this
        policy is already escalating the incident (a second start changes nothing)."""
        e = escalations_table
        now = utc_now()
        row = {
            "id": str(uuid.uuid4()),
            "tenant": incident.tenant,
            "incident_id": incident.id,
            "policy_id": policy.id,
            "policy": policy.name,
            "levels": levels_to_json(policy.levels),
            "status": str(EscalationStatus.ACTIVE),
            "next_level": 0,
            "started_at": now,
            "finished_at": None,
            "cancelled_by": None,
            "reason": None,
        }
        with self.store._write() as conn:
            self.store._lock(conn, incident.tenant, f"escalation:{incident.id}")
            running = conn.execute(
                sa.select(e.c.id).where(
                    e.c.incident_id == incident.id,
                    e.c.policy == policy.name,
                    e.c.status == str(EscalationStatus.ACTIVE),
                )
            ).first()
            if running is not None:
                return None
            conn.execute(sa.insert(e), [row])
            details = {
                "escalation_id": row["id"],
                "policy": policy.name,
                "policy_id": policy.id,
                "levels": describe_levels(policy.levels),
                **dict(source),
            }
            _add_timeline(
                conn, incident.tenant, incident.id, TimelineType.ESCALATION_STARTED, details, now
            )
        return _escalation_from_row(row)

    def get(self, escalation_id: str) -> Escalation | None:
        e = escalations_table
        with self.store._read() as conn:
            row = conn.execute(sa.select(e).where(e.c.id == escalation_id)).first()
            return None if row is None else _escalation_from_row(row._mapping)

    def for_incident(self, tenant: str, incident_id: str) -> list[Escalation]:
        e = escalations_table
        with self.store._read() as conn:
            rows = conn.execute(
                sa.select(e)
                .where(e.c.tenant == tenant, e.c.incident_id == incident_id)
                .order_by(e.c.started_at)
            )
            return [_escalation_from_row(r._mapping) for r in rows]

    def active(self) -> list[Escalation]:
        """Every running escalation (all tenants): the scheduler re-checks their jobs at start."""
        e = escalations_table
        with self.store._read() as conn:
            rows = conn.execute(
                sa.select(e).where(e.c.status == str(EscalationStatus.ACTIVE)).order_by(e.c.id)
            )
            return [_escalation_from_row(r._mapping) for r in rows]

    def _locked(self, conn: Connection, escalation_id: str) -> Escalation | None:
        e = escalations_table
        stmt = sa.select(e).where(e.c.id == escalation_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        return None if row is None else _escalation_from_row(row._mapping)

    def claim_levels(self, escalation_id: str, level: int) -> tuple[Escalation | None, list[int]]:
        """Claim every level up to ``level`` that has not fired, in order, and write one
        ``escalation_level`` entry each; the escalation completes with its last level.
        Returns the escalation (after the claim) and the claimed levels (empty: nothing to do)."""
        e = escalations_table
        now = utc_now()
        with self.store._write() as conn:
            current = self._locked(conn, escalation_id)
            if (
                current is None
                or current.status is not EscalationStatus.ACTIVE
                or level < current.next_level
                or level >= len(current.levels)
            ):
                return current, []
            claimed = list(range(current.next_level, level + 1))
            done = level + 1 == len(current.levels)
            values: dict[str, Any] = {"next_level": level + 1}
            if done:
                values.update(status=str(EscalationStatus.COMPLETED), finished_at=now)
            conn.execute(sa.update(e).where(e.c.id == escalation_id).values(**values))
            for index in claimed:
                step = current.levels[index]
                details = {
                    "escalation_id": current.id,
                    "policy": current.policy,
                    "level": index + 1,
                    "of": len(current.levels),
                    "after_seconds": step.after_seconds,
                    "due_at": current.due_at(index).isoformat(),
                }
                _add_timeline(
                    conn,
                    current.tenant,
                    current.incident_id,
                    TimelineType.ESCALATION_LEVEL,
                    details,
                    now,
                )
            after = replace(
                current,
                next_level=level + 1,
                status=EscalationStatus.COMPLETED if done else current.status,
                finished_at=now if done else None,
            )
            return after, claimed

    def record_completed(self, escalation: Escalation) -> None:
        now = utc_now()
        details = {
            "escalation_id": escalation.id,
            "policy": escalation.policy,
            "levels": len(escalation.levels),
        }
        with self.store._write() as conn:
            _add_timeline(
                conn,
                escalation.tenant,
                escalation.incident_id,
                TimelineType.ESCALATION_COMPLETED,
                details,
                now,
            )

    def cancel_active(
        self, tenant: str, incident_id: str, *, by: str | None, reason: str
    ) -> list[Escalation]:
        """Cancel the incident's running escalations with one ``escalation_cancelled`` entry
        each; returns those cancelled here (a second call finds none)."""
        e = escalations_table
        now = utc_now()
        cancelled = []
        with self.store._write() as conn:
            stmt = sa.select(e).where(
                e.c.tenant == tenant,
                e.c.incident_id == incident_id,
                e.c.status == str(EscalationStatus.ACTIVE),
            )
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            for row in conn.execute(stmt).all():
                current = _escalation_from_row(row._mapping)
                conn.execute(
                    sa.update(e)
                    .where(e.c.id == current.id)
                    .values(
                        status=str(EscalationStatus.CANCELLED),
                        finished_at=now,
                        cancelled_by=by,
                        reason=reason[:256],
                    )
                )
                details = {
                    "escalation_id": current.id,
                    "policy": current.policy,
                    "by": by,
                    "reason": reason,
                    "levels_fired": current.next_level,
                    "levels_cancelled": [i + 1 for i in current.remaining_levels],
                }
                _add_timeline(
                    conn, tenant, incident_id, TimelineType.ESCALATION_CANCELLED, details, now
                )
                cancelled.append(
                    replace(
                        current,
                        status=EscalationStatus.CANCELLED,
                        finished_at=now,
                        cancelled_by=by,
                        reason=reason,
                    )
                )
        return cancelled

    def record_action_result(
        self,
        escalation: Escalation,
        level: int,
        planned: PlannedAction,
        result: ActionResult,
    ) -> None:
        """Like a rule's action result: a row for ``automation_success_rate`` and an ``action``
        timeline entry, naming the escalation and level instead of a rule."""
        now = utc_now()
        with self.store._write() as conn:
            conn.execute(
                sa.insert(automation_action_results_table),
                [
                    {
                        "tenant": escalation.tenant,
                        "rule_id": None,
                        "incident_id": escalation.incident_id,
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
                "escalation_id": escalation.id,
                "policy": escalation.policy,
                "level": level + 1,
                **planned.describe(),
                "outcome": str(result.outcome),
                "status_code": result.status_code,
                "error": result.error,
                "duration_ms": result.duration_ms,
            }
            _add_timeline(
                conn,
                escalation.tenant,
                escalation.incident_id,
                TimelineType.ACTION,
                details,
                now,
            )


__all__ = [
    "ESCALATION_JOBS_TABLE",
    "EscalationStore",
    "PolicyNameTaken",
    "escalation_policies_table",
    "escalations_table",
]
