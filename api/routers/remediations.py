"""Remediations: the configured catalogue, triggering a run on an incident, approving or
rejecting runs that wait for a responder, listing runs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from fastapi.responses import JSONResponse

from api.deps import AppContext, Context, IncidentId, Responder, Viewer
from api.remediation_schemas import (
    RejectRequest,
    RemediateRequest,
    RemediationList,
    RunList,
    RunOut,
)
from connectors.remediation_runner import (
    Remediator,
    RunNotFound,
    RunNotPending,
    UnknownRemediation,
)
from incidents.remediation import RunState, public_catalogue

router = APIRouter(prefix="/api/v1", tags=["remediations"])

RunId = Annotated[uuid.UUID, Path(description="The run's id (a UUID).")]
MAX_RUNS = 500


def remediator(context: AppContext) -> Remediator:
    if context.remediator is None:  # create_app always sets one; kept for other wirings
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="remediation is off")
    return context.remediator


@router.get("/remediations")
def list_remediations(_principal: Viewer, context: Context) -> RemediationList:
    """The configured remediations (``REMEDIATIONS``); header values are shown as ***."""
    items = public_catalogue(remediator(context).remediations)
    return RemediationList(items=items, total=len(items))


@router.post(
    "/incidents/{incident_id}/remediate",
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No incident with this id in your tenant"},
        422: {"description": "Unknown remediation, or a value of the incident was refused"},
        429: {"description": "The circuit breaker is open (the refused run is in the body)"},
    },
)
def remediate(
    incident_id: IncidentId, body: RemediateRequest, principal: Responder, context: Context
) -> RunOut:
    """Run a remediation for the incident now (or, with ``requires_approval``, ask for
    approval; with ``dry_run``, only plan it). Returns the run when it has finished."""
    service = remediator(context)
    incident = context.store.get_incident(principal.tenant, str(incident_id))
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"incident {incident_id} not found")
    try:
        run = service.request(
            incident, body.remediation, actor=principal.username, dry_run=body.dry_run
        )
    except UnknownRemediation as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "remediation"], "msg": str(exc), "type": "unknown"}],
        ) from None
    out = RunOut.from_record(run)
    if run.state is RunState.CIRCUIT_OPEN:
        return JSONResponse(  # type: ignore[return-value]
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            content={"detail": run.reason, "run": out.model_dump(mode="json")},
        )
    if run.state is RunState.INVALID:
        return JSONResponse(  # type: ignore[return-value]
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"detail": run.reason, "run": out.model_dump(mode="json")},
        )
    return out


@router.get("/remediations/runs")
def list_runs(
    principal: Viewer,
    context: Context,
    incident_id: uuid.UUID | None = None,
    state: RunState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = 100,
) -> RunList:
    runs = remediator(context).runs.list_runs(
        principal.tenant,
        incident_id=str(incident_id) if incident_id else None,
        state=state,
        limit=limit,
    )
    return RunList(items=[RunOut.from_record(r) for r in runs], total=len(runs))


@router.get("/remediations/runs/{run_id}", responses={404: {"description": "No such run"}})
def get_run(run_id: RunId, principal: Viewer, context: Context) -> RunOut:
    run = remediator(context).runs.get_run(principal.tenant, str(run_id))
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"remediation run {run_id} not found")
    return RunOut.from_record(run)


DECISION_RESPONSES = {
    404: {"description": "No such run in your tenant"},
    409: {"description": "The run is not pending approval"},
}


@router.post("/remediations/runs/{run_id}/approve", responses=DECISION_RESPONSES)
def approve_run(run_id: RunId, principal: Responder, context: Context) -> RunOut:
    """Approve a run in ``pending_approval``: it runs now; returns it when it has finished."""
    try:
        run = remediator(context).approve(principal.tenant, str(run_id), actor=principal.username)
    except RunNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except RunNotPending as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return RunOut.from_record(run)


@router.post("/remediations/runs/{run_id}/reject", responses=DECISION_RESPONSES)
def reject_run(
    run_id: RunId,
    principal: Responder,
    context: Context,
    body: Annotated[RejectRequest | None, Body()] = None,
) -> RunOut:
    """Reject a run in ``pending_approval`` (optional ``{"reason": "…"}``); it never runs."""
    reason = body.reason if body is not None else None
    try:
        run = remediator(context).reject(
            principal.tenant, str(run_id), actor=principal.username, reason=reason
        )
    except RunNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except RunNotPending as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return RunOut.from_record(run)
