"""Escalation: policies, running escalations, and APScheduler's job table for the level timers.

Revision ID: 0005
Revises: 0004
Create Date: 2024-06-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "escalation_policies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("tenant", "name", name="uq_escalation_policies_tenant_name"),
    )
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column(
            "incident_id",
            sa.String(36),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("policy_id", sa.String(36), nullable=True),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_level", sa.Integer, nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("cancelled_by", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(256), nullable=True),
    )
    op.create_index("ix_escalations_incident_status", "escalations", ["incident_id", "status"])
    op.create_index("ix_escalations_status", "escalations", ["status"])
    # APScheduler 3's SQLAlchemyJobStore layout (it would create the table itself; here the
    # schema has one owner).
    op.create_table(
        "escalation_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_escalation_jobs_next_run_time", "escalation_jobs", ["next_run_time"])


def downgrade() -> None:
    op.drop_index("ix_escalation_jobs_next_run_time", table_name="escalation_jobs")
    op.drop_table("escalation_jobs")
    op.drop_index("ix_escalations_status", table_name="escalations")
    op.drop_index("ix_escalations_incident_status", table_name="escalations")
    op.drop_table("escalations")
    op.drop_table("escalation_policies")
