"""Analytics over scored windows: anomalous windows of the tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SettingsDep, StoreDep, Viewer, check_interval
from api.schemas import AnomalyList, WindowOut
from incidents.records import datetime_to_ns, utc

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

MAX_ANOMALIES = 1_000


@router.get("/anomalies")
def anomalies(
    principal: Viewer,
    store: StoreDep,
    settings: SettingsDep,
    since: datetime | None = None,
    until: datetime | None = None,
    min_score: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, allow_inf_nan=False, description="Default: ANOMALY_THRESHOLD."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ANOMALIES)] = 100,
) -> AnomalyList:
    """Windows whose anomaly score is at least ``min_score``, newest first."""
    check_interval(since, until)
    threshold = settings.anomaly_threshold if min_score is None else min_score
    windows = store.anomalous_windows(
        principal.tenant,
        datetime_to_ns(since) if since else None,
        datetime_to_ns(until) if until else None,
        threshold,
        limit,
    )
    return AnomalyList(
        items=[WindowOut.from_record(w) for w in windows],
        count=len(windows),
        min_score=threshold,
        since=utc(since) if since else None,
        until=utc(until) if until else None,
    )
