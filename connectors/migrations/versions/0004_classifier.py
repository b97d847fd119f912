"""Operator corrections of incident categories, for retraining the classifier.

Revision ID: 0004
Revises: 0003
Create Date: 2024-06-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "classification_corrections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("incident_id", sa.String(36), nullable=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("previous_category", sa.String(32), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_classification_corrections_tenant_id",
        "classification_corrections",
        ["tenant", "id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_classification_corrections_tenant_id", table_name="classification_corrections"
    )
    op.drop_table("classification_corrections")
