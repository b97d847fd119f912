"""Automation: rules, firings (a rule fires once per incident), action results, engine cursors.

Revision ID: 0003
Revises: 0002
Create Date: 2024-01-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _serial() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "automation_rules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("condition", sa.Text, nullable=False),
        sa.Column("actions", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("fire_on_repeat", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("tenant", "name", name="uq_automation_rules_tenant_name"),
    )
    op.create_table(
        "automation_firings",
        _serial(),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column(
            "rule_id",
            sa.String(36),
            sa.ForeignKey("automation_rules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "incident_id",
            sa.String(36),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("firing_key", sa.String(64), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=True),
        _ts("fired_at"),
        sa.UniqueConstraint(
            "rule_id", "incident_id", "firing_key", name="uq_automation_firings_once"
        ),
    )
    op.create_index("ix_automation_firings_incident", "automation_firings", ["incident_id"])
    op.create_table(
        "automation_action_results",
        _serial(),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(36), nullable=True),
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("action_type", sa.String(32), nullable=False),
        sa.Column("action_name", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
        _ts("at"),
    )
    op.create_index(
        "ix_automation_action_results_type_outcome",
        "automation_action_results",
        ["action_type", "outcome"],
    )
    op.create_table(
        "automation_cursors",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        _ts("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("automation_cursors")
    op.drop_index(
        "ix_automation_action_results_type_outcome", table_name="automation_action_results"
    )
    op.drop_table("automation_action_results")
    op.drop_index("ix_automation_firings_incident", table_name="automation_firings")
    op.drop_table("automation_firings")
    op.drop_table("automation_rules")
