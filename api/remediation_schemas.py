"""Request and response models of the remediation endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from incidents.remediation import RemediationRun

RemediationName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]


class RemediateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remediation: RemediationName = Field(description="The name of a configured remediation.")
    dry_run: bool = Field(
        default=False,
        description="Plan and validate only; record the run, run nothing. A remediation "
        "configured as dry_run stays dry whatever this says.",
    )


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(max_length=1000)] | None = None


class RunOut(BaseModel):
    id: str
    incident_id: str
    remediation: str
    kind: str
    state: str
    dry_run: bool
    requested_by: str
    requested_at: datetime
    rule_id: str | None
    decided_by: str | None
    decided_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    exit_code: int | None
    status_code: int | None
    output: str | None
    reason: str | None
    plan: dict[str, Any] | None

    @classmethod
    def from_record(cls, run: RemediationRun) -> RunOut:
        return cls(
            id=run.id,
            incident_id=run.incident_id,
            remediation=run.remediation,
            kind=run.kind,
            state=str(run.state),
            dry_run=run.dry_run,
            requested_by=run.requested_by,
            requested_at=run.requested_at,
            rule_id=run.rule_id,
            decided_by=run.decided_by,
            decided_at=run.decided_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            attempts=run.attempts,
            exit_code=run.exit_code,
            status_code=run.status_code,
            output=run.output,
            reason=run.reason,
            plan=run.plan,
        )


class RunList(BaseModel):
    items: list[RunOut]
    total: int


class RemediationList(BaseModel):
    items: list[dict[str, Any]]
    total: int
