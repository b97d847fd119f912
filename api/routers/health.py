"""Liveness, database readiness and the Prometheus scrape endpoint (no auth, not under /api)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from api.deps import Context, StoreDep
from api.prometheus import METRICS_CONTENT_TYPE
from api.schemas import DatabaseHealthOut, HealthOut

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> HealthOut:
    """The process is up (says nothing about its dependencies)."""
    return HealthOut(status="ok")


@router.get("/health/database", responses={503: {"description": "The database is unreachable"}})
def database_health(store: StoreDep) -> DatabaseHealthOut:
    if not store.ping():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="database is unreachable")
    return DatabaseHealthOut(status="ok", database=store.dialect)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(context: Context) -> Response:
    return Response(content=context.metrics.render(), media_type=METRICS_CONTENT_TYPE)
