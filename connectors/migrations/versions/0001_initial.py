"""Initial schema: incidents, incident_events, window_aggregates, dead_letters, pipeline_stats,
users.

Written by hand with portable types only, so it runs on SQLite and PostgreSQL alike.

Revision ID: 0001
Revises:
Create Date: 2024-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
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
        "incidents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("series", sa.String(1024), nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("peak_score", sa.Float, nullable=True),
        sa.Column("repeat_count", sa.Integer, nullable=False),
        sa.Column("window_start_ns", sa.BigInteger, nullable=True),
        sa.Column("window_end_ns", sa.BigInteger, nullable=True),
        sa.Column("applied_until_ns", sa.BigInteger, nullable=True),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        _ts("resolved_at", nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
    )
    op.create_index("ix_incidents_tenant_fingerprint", "incidents", ["tenant", "fingerprint"])
    op.create_index("ix_incidents_tenant_status", "incidents", ["tenant", "status"])
    op.create_index("ix_incidents_tenant_first_seen", "incidents", ["tenant", "first_seen"])

    op.create_table(
        "incident_events",
        _serial(),
        sa.Column(
            "incident_id",
            sa.String(36),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tenant", sa.String(128), nullable=False),
        _ts("at"),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_incident_events_incident_id", "incident_events", ["incident_id", "id"])

    op.create_table(
        "window_aggregates",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("series", sa.String(1024), primary_key=True),
        sa.Column("window_start_ns", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("window_end_ns", sa.BigInteger, nullable=False),
        sa.Column("measurement", sa.String(256), nullable=False),
        sa.Column("field", sa.String(256), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("mean", sa.Float, nullable=True),
        sa.Column("minimum", sa.Float, nullable=True),
        sa.Column("maximum", sa.Float, nullable=True),
        sa.Column("std", sa.Float, nullable=True),
        sa.Column("last", sa.Float, nullable=True),
        sa.Column("anomaly_score", sa.Float, nullable=True),
        sa.Column("is_anomaly", sa.Boolean, nullable=False),
        sa.Column("components", sa.JSON, nullable=False),
        _ts("updated_at"),
    )
    op.create_index(
        "ix_window_aggregates_tenant_start", "window_aggregates", ["tenant", "window_start_ns"]
    )
    op.create_index(
        "ix_window_aggregates_tenant_measurement", "window_aggregates", ["tenant", "measurement"]
    )

    op.create_table(
        "dead_letters",
        _serial(),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        _ts("received_at"),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])

    op.create_table(
        "pipeline_stats",
        sa.Column("worker", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        _ts("updated_at"),
    )

    op.create_table(
        "users",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("pipeline_stats")
    op.drop_index("ix_dead_letters_received_at", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_window_aggregates_tenant_measurement", table_name="window_aggregates")
    op.drop_index("ix_window_aggregates_tenant_start", table_name="window_aggregates")
    op.drop_table("window_aggregates")
    op.drop_index("ix_incident_events_incident_id", table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_incidents_tenant_first_seen", table_name="incidents")
    op.drop_index("ix_incidents_tenant_status", table_name="incidents")
    op.drop_index("ix_incidents_tenant_fingerprint", table_name="incidents")
    op.drop_table("incidents")
