"""Analytics: anomalous windows of the tenant, forecasts of a series, incident summary (MTTA,
MTTR, counts)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from api.deps import SettingsDep, StoreDep, Viewer, WindowReaderDep, check_interval
from api.intake_schemas import SummaryOut
from api.routers.metrics import read_windows
from api.schemas import (
    AnomalyList,
    ForecastPoint,
    PredictedBreach,
    SeriesForecast,
    WindowOut,
)
from connectors.summary_store import incident_summary
from incidents.records import datetime_to_ns, ns_to_datetime, utc
from models.forecasting import ForecasterConfig, SeriesForecaster, breach_forecast

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

MAX_ANOMALIES = 1_000
FORECAST_HISTORY = ForecasterConfig().history
MAX_HORIZON = 1_440


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


@router.get("/summary")
def summary(
    principal: Viewer,
    store: StoreDep,
    since: Annotated[datetime | None, Query(description="Start of the period (inclusive).")] = None,
    until: Annotated[datetime | None, Query(description="End of the period (exclusive).")] = None,
) -> SummaryOut:
    """MTTA and MTTR in seconds and incident counts by status, severity, category and kind.

    Counts cover the incidents recorded in the period; MTTA the incidents acknowledged in it
    (acknowledged_at - created_at), MTTR those resolved in it (resolved_at - created_at).
    """
    check_interval(since, until)
    start = utc(since) if since else None
    end = utc(until) if until else None
    return SummaryOut.from_summary(
        incident_summary(store, principal.tenant, start, end), start, end
    )


@router.get("/forecast")
def forecast(
    principal: Viewer,
    store: StoreDep,
    reader: WindowReaderDep,
    series: Annotated[str, Query(min_length=1, max_length=1024, description="Series key.")],
    horizon: Annotated[int, Query(ge=1, le=MAX_HORIZON, description="Windows ahead.")] = 12,
    level: Annotated[float, Query(gt=0.0, lt=1.0, allow_inf_nan=False)] = 0.95,
    limit: Annotated[
        float | None,
        Query(allow_inf_nan=False, description="Predict when the interval reaches this value."),
    ] = None,
    direction: Literal["above", "below"] = "above",
) -> SeriesForecast:
    """Forecast of a series' window means ``horizon`` windows ahead (per-series ARIMA fitted on
    its last windows), with its ``level`` prediction interval and, given a ``limit``, the
    predicted first window whose interval reaches it."""
    windows = read_windows(
        reader,
        store,
        lambda r: r.window_history(principal.tenant, series, None, None, FORECAST_HISTORY),
    )
    usable = [w for w in windows if w.mean is not None and math.isfinite(w.mean)]
    if len(usable) < 2:
        raise HTTPException(404, f"series {series!r} has fewer than 2 windows to forecast from")
    times = [w.window_start_ns / 1e9 for w in usable]
    fitted = SeriesForecaster().fit([float(w.mean) for w in usable], times)
    result = fitted.forecast(horizon, level)
    point_times = result.times if result.times is not None else [None] * horizon
    points = [
        ForecastPoint(
            time=_time(t),
            mean=_number(m),
            lower=_number(lo),
            upper=_number(hi),
        )
        for t, m, lo, hi in zip(point_times, result.mean, result.lower, result.upper, strict=True)
    ]
    breach = None
    if limit is not None:
        found = breach_forecast(result, limit, direction)
        if found is not None:
            breach = PredictedBreach(
                limit=limit,
                direction=direction,
                steps_ahead=found.step,
                predicted_time=_time(found.time),
                forecast_value=_number(found.value),
                probability=_number(found.probability),
            )
    return SeriesForecast(
        series=series,
        method=result.method,
        level=level,
        horizon=horizon,
        history_windows=len(usable),
        points=points,
        breach=breach,
    )


def _number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _time(seconds: float | None) -> datetime | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    return ns_to_datetime(int(round(seconds * 1e9)))
