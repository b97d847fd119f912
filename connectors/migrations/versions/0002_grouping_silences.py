"""Grouping and silences: ``parent_id``, ``group_key``, ``child_count`` on incidents; the
``silences`` table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("group_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("child_count", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_incidents_tenant_parent", "incidents", ["tenant", "parent_id"])
    op.create_index("ix_incidents_tenant_group", "incidents", ["tenant", "group_key", "first_seen"])

    op.create_table(
        "silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_silences_tenant_ends_at", "silences", ["tenant", "ends_at"])


def downgrade() -> None:
    op.drop_index("ix_silences_tenant_ends_at", table_name="silences")
    op.drop_table("silences")
    op.drop_index("ix_incidents_tenant_group", table_name="incidents")
    op.drop_index("ix_incidents_tenant_parent", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("child_count")
        batch.drop_column("group_key")
        batch.drop_column("parent_id")
