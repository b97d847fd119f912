"""The data of ``GET /api/v1/analytics/summary``: counts and MTTA/MTTR of a tenant's incidents.

Counts are GROUP BY queries; the durations stream only the two timestamps per acknowledged or
resolved incident and are averaged by ``incidents.summary.duration_stats`` (date arithmetic in
SQL differs between SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from connectors.store import Store, incidents_table
from incidents.summary import IncidentSummary, duration_stats


def _in_range(
    column: sa.ColumnElement[datetime], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = [column.is_not(None)]
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def incident_summary(
    store: Store, tenant: str, since: datetime | None = None, until: datetime | None = None
) -> IncidentSummary:
    """Counts over the incidents recorded (``created_at``) in [since, until); MTTA over those
    acknowledged in it, MTTR over those resolved in it."""
    t = incidents_table
    created = [t.c.tenant == tenant, *_in_range(t.c.created_at, since, until)]
    counts: dict[str, dict[str, int]] = {}
    with store._read() as conn:
        for name in ("status", "severity", "category", "kind"):
            column = t.c[name]
            rows = conn.execute(sa.select(column, sa.func.count()).where(*created).group_by(column))
            counts[name] = {str(value): int(n) for value, n in rows}
        acknowledged = duration_stats(
            (r.created_at, r.acknowledged_at)
            for r in conn.execute(
                sa.select(t.c.created_at, t.c.acknowledged_at).where(
                    t.c.tenant == tenant, *_in_range(t.c.acknowledged_at, since, until)
                )
            )
        )
        resolved = duration_stats(
            (r.created_at, r.resolved_at)
            for r in conn.execute(
                sa.select(t.c.created_at, t.c.resolved_at).where(
                    t.c.tenant == tenant, *_in_range(t.c.resolved_at, since, until)
                )
            )
        )
    return IncidentSummary(
        total=sum(counts["status"].values()),
        by_status=counts["status"],
        by_severity=counts["severity"],
        by_category=counts["category"],
        by_kind=counts["kind"],
        acknowledged=acknowledged,
        resolved=resolved,
    )
