"""Operator corrections of incident categories (table ``classification_corrections``).

When ``PUT /api/v1/incidents/{id}`` changes an incident's category, the API stores what the
incident said (title, description, tags and metadata keys) with the new category here; the
learned classifier (``models.classifier.ClassifierService``) retrains on the labelled base set
plus a tenant's corrections. Works on the ``Store``'s engine; the schema comes from migration
0004.
"""

from __future__ import annotations

import sqlalchemy as sa

from connectors.store import Store, UTCDateTime, metadata, serial_id_column
from incidents.classification import CategoryCorrection
from incidents.records import utc_now
from incidents.schemas import Category

MAX_CORRECTIONS = 5_000
"""A tenant's newest corrections that retraining uses (bounds its time and memory)."""

TITLE_LENGTH = 500

corrections_table = sa.Table(
    "classification_corrections",
    metadata,
    serial_id_column(),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("incident_id", sa.String(36), nullable=True),
    sa.Column("title", sa.String(TITLE_LENGTH), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("previous_category", sa.String(32), nullable=True),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_classification_corrections_tenant_id", "tenant", "id"),
)


class ClassifierStore:
    """Stores and reads category corrections through a ``Store``'s engine."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def add_correction(self, correction: CategoryCorrection) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                corrections_table.insert().values(
                    tenant=correction.tenant,
                    incident_id=correction.incident_id,
                    title=correction.title[:TITLE_LENGTH],
                    description=correction.description,
                    labels=[str(label) for label in correction.labels],
                    previous_category=(
                        str(correction.previous) if correction.previous is not None else None
                    ),
                    category=str(correction.category),
                    actor=correction.actor,
                    created_at=utc_now(),
                )
            )

    def corrections(self, tenant: str, limit: int = MAX_CORRECTIONS) -> list[CategoryCorrection]:
        """The tenant's newest ``limit`` corrections, oldest first."""
        t = corrections_table
        newest = (
            sa.select(t).where(t.c.tenant == tenant).order_by(t.c.id.desc()).limit(limit)
        ).subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(newest).order_by(newest.c.id)).mappings().all()
        return [
            CategoryCorrection(
                tenant=row["tenant"],
                title=row["title"],
                description=row["description"],
                labels=tuple(str(label) for label in row["labels"] or ()),
                category=Category(row["category"]),
                previous=Category(row["previous_category"]) if row["previous_category"] else None,
                incident_id=row["incident_id"],
                actor=row["actor"],
            )
            for row in rows
        ]
