"""Window aggregates of the tenant's series: the latest per series, and one series' history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StoreDep, Viewer, check_interval
from api.schemas import SeriesHistory, WindowList, WindowOut
from incidents.records import datetime_to_ns

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])

MAX_SERIES = 1_000
MAX_HISTORY = 10_000


@router.get("")
def latest_metrics(
    principal: Viewer,
    store: StoreDep,
    measurement: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SERIES)] = 100,
) -> WindowList:
    """The newest window of every series (optionally of one measurement), ordered by series."""
    windows = store.latest_windows(principal.tenant, measurement=measurement, limit=limit)
    return WindowList(items=[WindowOut.from_record(w) for w in windows], count=len(windows))


@router.get("/history")
def metric_history(
    principal: Viewer,
    store: StoreDep,
    series: Annotated[
        str,
        Query(
            min_length=1,
            max_length=1024,
            description="Series key: measurement, sorted tags and field, e.g. "
            "'cpu,host=a usage_user'.",
        ),
    ],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 1_000,
) -> SeriesHistory:
    """Windows of one series starting in [since, until), the newest ``limit``, oldest first."""
    check_interval(since, until)
    windows = store.window_history(
        principal.tenant,
        series,
        datetime_to_ns(since) if since else None,
        datetime_to_ns(until) if until else None,
        limit,
    )
    return SeriesHistory(
        series=series, items=[WindowOut.from_record(w) for w in windows], count=len(windows)
    )
