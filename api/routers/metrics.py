"""Window aggregates of the tenant's series: the latest per series, and one series' history.

Read from InfluxDB when it is configured (the time-series store), else from the SQL store; if
InfluxDB fails, the SQL store (which holds the same windows) answers instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StoreDep, Viewer, WindowReaderDep, check_interval
from api.schemas import SeriesHistory, WindowList, WindowOut
from connectors.store import Store
from incidents.interfaces import WindowReader
from incidents.records import WindowRecord, datetime_to_ns

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])

MAX_SERIES = 1_000
MAX_HISTORY = 10_000


@router.get("")
def latest_metrics(
    principal: Viewer,
    store: StoreDep,
    reader: WindowReaderDep,
    measurement: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SERIES)] = 100,
) -> WindowList:
    """The newest window of every series (optionally of one measurement), ordered by series."""
    windows = read_windows(
        reader,
        store,
        lambda r: r.latest_windows(principal.tenant, measurement=measurement, limit=limit),
    )
    return WindowList(items=[WindowOut.from_record(w) for w in windows], count=len(windows))


@router.get("/history")
def metric_history(
    principal: Viewer,
    store: StoreDep,
    reader: WindowReaderDep,
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
    start_ns = datetime_to_ns(since) if since else None
    end_ns = datetime_to_ns(until) if until else None
    windows = read_windows(
        reader,
        store,
        lambda r: r.window_history(principal.tenant, series, start_ns, end_ns, limit),
    )
    return SeriesHistory(
        series=series, items=[WindowOut.from_record(w) for w in windows], count=len(windows)
    )


def read_windows(
    reader: WindowReader, store: Store, query: Callable[[WindowReader], list[WindowRecord]]
) -> list[WindowRecord]:
    if reader is store:
        return query(store)
    try:
        return query(reader)
    except Exception as exc:  # InfluxDB down or slow: the SQL store has the same windows
        log.warning("reading windows from InfluxDB failed (%s); using the SQL store", exc)
        return query(store)
