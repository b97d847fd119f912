"""Remediation runs: one row per requested run of a named remediation, with its state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "remediation_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column(
            "incident_id",
            sa.String(36),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("remediation", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(36), nullable=True),
        _ts("requested_at"),
        sa.Column("decided_by", sa.String(128), nullable=True),
        _ts("decided_at", nullable=True),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("plan", sa.JSON, nullable=True),
    )
    op.create_index(
        "ix_remediation_runs_incident", "remediation_runs", ["incident_id", "remediation"]
    )
    op.create_index(
        "ix_remediation_runs_remediation_time", "remediation_runs", ["remediation", "requested_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_remediation_runs_remediation_time", table_name="remediation_runs")
    op.drop_index("ix_remediation_runs_incident", table_name="remediation_runs")
    op.drop_table("remediation_runs")
