"""Remediation runs on the Store's engine (migration ``0006_remediation``).

Every change of a run writes its timeline entry in the same transaction. ``open_run`` counts the
runs the circuit breaker looks at and inserts the new run in one write transaction (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock per remediation name), so two requests at once
cannot both slip under the limit. Approve and reject move a run only from ``pending_approval``
(compare-and-set), so a run is approved or rejected once.

A run's outcome also goes to ``automation_action_results`` (action type ``remediate``) when the
caller asks for it: always for runs the API starts and for approved runs; not for a rule's
immediate run, whose result the automation engine records itself (it would count twice).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.automation_store import automation_action_results_table
from connectors.store import (
    Store,
    UTCDateTime,
    incident_id_column,
    insert_timeline_entry,
    json_safe,
    metadata,
)
from incidents.records import Incident, TimelineType
from incidents.remediation import (
    COUNTED_STATES,
    Remediation,
    RemediationRun,
    RunState,
    breaker_refusal,
    hour_window_start,
)

REMEDIATION_ACTOR = "remediation"

remediation_runs_table = sa.Table(
    "remediation_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "tenant",
        sa.String(128),
        nullable=False,
    ),
    incident_id_column(),
    sa.Column("remediation", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(36), nullable=True),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("plan", sa.JSON, nullable=True),
    sa.Index("ix_remediation_runs_incident", "incident_id", "remediation"),
    sa.Index("ix_remediation_runs_remediation_time", "remediation", "requested_at"),
)

_OUTCOMES: dict[RunState, str] = {
    RunState.SUCCEEDED: "ok",
    RunState.FAILED: "error",
    RunState.CIRCUIT_OPEN: "error",
    RunState.INVALID: "error",
    RunState.DRY_RUN: "dry_run",
    RunState.PENDING_APPROVAL: "pending_approval",
}
"""A run's state as an automation action outcome (``automation_success_rate`` counts ok/error)."""

_TIMELINE_OF: dict[RunState, TimelineType] = {
    RunState.SUCCEEDED: TimelineType.REMEDIATION_SUCCEEDED,
    RunState.FAILED: TimelineType.REMEDIATION_FAILED,
}


def _run_from_mapping(m: Mapping[str, Any]) -> RemediationRun:
    return RemediationRun(
        id=m["id"],
        tenant=m["tenant"],
        incident_id=m["incident_id"],
        remediation=m["remediation"],
        kind=m["kind"],
        state=RunState(m["state"]),
        dry_run=bool(m["dry_run"]),
        requested_by=m["requested_by"],
        requested_at=m["requested_at"],
        rule_id=m["rule_id"],
        decided_by=m["decided_by"],
        decided_at=m["decided_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        attempts=int(m["attempts"] or 0),
        exit_code=m["exit_code"],
        status_code=m["status_code"],
        output=m["output"],
        reason=m["reason"],
        plan=m["plan"],
    )


def _lock_key(name: str) -> int:
    digest = hashlib.sha256(f"remediation\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def outcome_of(state: RunState) -> str | None:
    return _OUTCOMES.get(state)


class RemediationStore:
    """Runs of remediations, sharing ``store``'s engine and transaction conventions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reading -----------------------------------------------------------------------------

    def get_run(self, tenant: str, run_id: str) -> RemediationRun | None:
        r = remediation_runs_table
        with self.store._read() as conn:
            row = conn.execute(sa.select(r).where(r.c.tenant == tenant, r.c.id == run_id)).first()
            return None if row is None else _run_from_mapping(row._mapping)

    def list_runs(
        self,
        tenant: str,
        *,
        incident_id: str | None = None,
        state: RunState | None = None,
        limit: int = 100,
    ) -> list[RemediationRun]:
        """Newest first."""
        r = remediation_runs_table
        stmt = sa.select(r).where(r.c.tenant == tenant)
        if incident_id is not None:
            stmt = stmt.where(r.c.incident_id == incident_id)
        if state is not None:
            stmt = stmt.where(r.c.state == str(state))
        stmt = stmt.order_by(r.c.requested_at.desc(), r.c.id).limit(limit)
        with self.store._read() as conn:
            return [_run_from_mapping(row._mapping) for row in conn.execute(stmt)]

    def counted_runs(self, remediation: str, incident_id: str, now: datetime) -> tuple[int, int]:
        """(runs for the incident, runs in the hour before ``now``) the breaker counts."""
        with self.store._read() as conn:
            return self._counts(conn, remediation, incident_id, now)

    def _counts(
        self, conn: Connection, remediation: str, incident_id: str, now: datetime
    ) -> tuple[int, int]:
        r = remediation_runs_table
        counted = [str(s) for s in COUNTED_STATES]
        base = sa.select(sa.func.count()).where(
            r.c.remediation == remediation, r.c.state.in_(counted)
        )
        per_incident = conn.execute(base.where(r.c.incident_id == incident_id)).scalar_one()
        last_hour = conn.execute(
            base.where(r.c.requested_at > hour_window_start(now), r.c.requested_at <= now)
        ).scalar_one()
        return int(per_incident), int(last_hour)

    # -- writing -----------------------------------------------------------------------------

    def open_run(
        self,
        incident: Incident,
        remediation: Remediation,
        *,
        state: RunState,
        actor: str,
        now: datetime,
        dry_run: bool,
        plan: Mapping[str, Any] | None,
        rule_id: str | None = None,
        reason: str | None = None,
        record_result: bool = True,
    ) -> RemediationRun:
        """Insert a run in ``state`` — or in ``circuit_open`` when the breaker refuses it.

        ``state`` ``running`` or ``pending_approval`` goes through the breaker; ``dry_run`` and
        ``invalid`` (a refused value, ``reason``) are recorded as they are.
        """
        with self.store._write() as conn:
            if state in COUNTED_STATES:
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": _lock_key(remediation.name)},
                    )
                per_incident, last_hour = self._counts(conn, remediation.name, incident.id, now)
                refusal = breaker_refusal(remediation, per_incident, last_hour)
                if refusal is not None:
                    state, reason = RunState.CIRCUIT_OPEN, refusal
            run = RemediationRun(
                id=str(uuid.uuid4()),
                tenant=incident.tenant,
                incident_id=incident.id,
                remediation=remediation.name,
                kind=remediation.kind,
                state=state,
                dry_run=dry_run,
                requested_by=actor,
                requested_at=now,
                rule_id=rule_id,
                started_at=now if state is RunState.RUNNING else None,
                finished_at=now
                if state in (RunState.CIRCUIT_OPEN, RunState.INVALID, RunState.DRY_RUN)
                else None,
                reason=reason,
                plan=json_safe(dict(plan)) if plan is not None else None,
            )
            conn.execute(sa.insert(remediation_runs_table), [self._row(run)])
            self._timeline(
                conn,
                run,
                TimelineType.REMEDIATION_REQUESTED,
                actor,
                now,
                plan=run.plan,
                requires_approval=remediation.requires_approval,
            )
            if state in (RunState.CIRCUIT_OPEN, RunState.INVALID):
                self._timeline(conn, run, TimelineType.REMEDIATION_REFUSED, REMEDIATION_ACTOR, now)
            elif state is RunState.RUNNING:
                self._timeline(conn, run, TimelineType.REMEDIATION_STARTED, REMEDIATION_ACTOR, now)
            if record_result and state in (
                RunState.CIRCUIT_OPEN,
                RunState.INVALID,
                RunState.DRY_RUN,
            ):
                self._result(conn, run, now)
        return run

    def decide(
        self,
        tenant: str,
        run_id: str,
        *,
        approve: bool,
        actor: str,
        now: datetime,
        reason: str | None = None,
    ) -> RemediationRun | None:
        """``pending_approval`` -> ``approved`` / ``rejected``; ``None`` if the run is not pending
        (or not there: tell the two apart with ``get_run``)."""
        r = remediation_runs_table
        new_state = RunState.APPROVED if approve else RunState.REJECTED
        values: dict[str, Any] = {"state": str(new_state), "decided_by": actor, "decided_at": now}
        if not approve:
            values["finished_at"] = now
            values["reason"] = reason
        with self.store._write() as conn:
            result = conn.execute(
                sa.update(r)
                .where(
                    r.c.tenant == tenant,
                    r.c.id == run_id,
                    r.c.state == str(RunState.PENDING_APPROVAL),
                )
                .values(**values)
            )
            if result.rowcount == 0:
                return None
            run = self._get(conn, run_id)
            entry = (
                TimelineType.REMEDIATION_APPROVED if approve else TimelineType.REMEDIATION_REJECTED
            )
            self._timeline(conn, run, entry, actor, now)
            return run

    def start(
        self, run: RemediationRun, *, now: datetime, plan: Mapping[str, Any]
    ) -> RemediationRun | None:
        """``approved`` -> ``running`` (with the plan made at approval time)."""
        r = remediation_runs_table
        with self.store._write() as conn:
            result = conn.execute(
                sa.update(r)
                .where(r.c.id == run.id, r.c.state == str(RunState.APPROVED))
                .values(state=str(RunState.RUNNING), started_at=now, plan=json_safe(dict(plan)))
            )
            if result.rowcount == 0:
                return None
            started = self._get(conn, run.id)
            self._timeline(conn, started, TimelineType.REMEDIATION_STARTED, REMEDIATION_ACTOR, now)
            return started

    def refuse(
        self, run: RemediationRun, *, reason: str, now: datetime, record_result: bool = True
    ) -> RemediationRun:
        """A run that may not start after all (a value refused at approval time): ``invalid``."""
        r = remediation_runs_table
        with self.store._write() as conn:
            conn.execute(
                sa.update(r)
                .where(r.c.id == run.id)
                .values(state=str(RunState.INVALID), reason=reason, finished_at=now)
            )
            refused = self._get(conn, run.id)
            self._timeline(conn, refused, TimelineType.REMEDIATION_REFUSED, REMEDIATION_ACTOR, now)
            if record_result:
                self._result(conn, refused, now)
            return refused

    def finish(
        self,
        run: RemediationRun,
        *,
        succeeded: bool,
        attempts: int,
        now: datetime,
        exit_code: int | None = None,
        status_code: int | None = None,
        output: str | None = None,
        reason: str | None = None,
        duration_ms: float | None = None,
        record_result: bool = True,
    ) -> RemediationRun:
        r = remediation_runs_table
        state = RunState.SUCCEEDED if succeeded else RunState.FAILED
        with self.store._write() as conn:
            conn.execute(
                sa.update(r)
                .where(r.c.id == run.id)
                .values(
                    state=str(state),
                    attempts=attempts,
                    exit_code=exit_code,
                    status_code=status_code,
                    output=output,
                    reason=reason,
                    finished_at=now,
                )
            )
            done = self._get(conn, run.id)
            self._timeline(
                conn, done, _TIMELINE_OF[state], REMEDIATION_ACTOR, now, duration_ms=duration_ms
            )
            if record_result:
                self._result(conn, done, now, duration_ms)
            return done

    # -- helpers -----------------------------------------------------------------------------

    def _get(self, conn: Connection, run_id: str) -> RemediationRun:
        r = remediation_runs_table
        row = conn.execute(sa.select(r).where(r.c.id == run_id)).one()
        return _run_from_mapping(row._mapping)

    @staticmethod
    def _row(run: RemediationRun) -> dict[str, Any]:
        return {
            "id": run.id,
            "tenant": run.tenant,
            "incident_id": run.incident_id,
            "remediation": run.remediation,
            "kind": run.kind,
            "state": str(run.state),
            "dry_run": run.dry_run,
            "requested_by": run.requested_by,
            "rule_id": run.rule_id,
            "requested_at": run.requested_at,
            "decided_by": run.decided_by,
            "decided_at": run.decided_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "attempts": run.attempts,
            "exit_code": run.exit_code,
            "status_code": run.status_code,
            "output": run.output,
            "reason": run.reason,
            "plan": run.plan,
        }

    @staticmethod
    def _timeline(
        conn: Connection,
        run: RemediationRun,
        entry_type: TimelineType,
        actor: str,
        now: datetime,
        **extra: Any,
    ) -> None:
        details: dict[str, Any] = {
            "run_id": run.id,
            "remediation": run.remediation,
            "kind": run.kind,
            "state": str(run.state),
            "dry_run": run.dry_run,
        }
        if run.rule_id is not None:
            details["rule_id"] = run.rule_id
        if run.reason:
            details["reason"] = run.reason
        if run.state in (RunState.SUCCEEDED, RunState.FAILED):
            details.update(
                attempts=run.attempts, exit_code=run.exit_code, status_code=run.status_code
            )
        details.update({k: v for k, v in extra.items() if v is not None})
        insert_timeline_entry(conn, run.tenant, run.incident_id, entry_type, actor, details, now)

    @staticmethod
    def _result(
        conn: Connection, run: RemediationRun, now: datetime, duration_ms: float | None = None
    ) -> None:
        outcome = outcome_of(run.state)
        if outcome is None:
            return
        conn.execute(
            sa.insert(automation_action_results_table),
            [
                {
                    "tenant": run.tenant,
                    "rule_id": run.rule_id,
                    "incident_id": run.incident_id,
                    "action_type": "remediate",
                    "action_name": run.remediation,
                    "outcome": outcome,
                    "status_code": run.status_code
                    if run.status_code is not None
                    else run.exit_code,
                    "error": run.reason,
                    "duration_ms": duration_ms,
                    "at": now,
                }
            ],
        )


__all__ = ["REMEDIATION_ACTOR", "RemediationStore", "outcome_of", "remediation_runs_table"]
