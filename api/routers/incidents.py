"""Incidents: create (with dedup), list, read, edit, acknowledge, resolve, timeline, comments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Response, status

from api.deps import (
    AppContext,
    Context,
    IncidentId,
    Responder,
    StoreDep,
    Viewer,
    check_interval,
)
from api.intake_schemas import CommentCreate
from api.schemas import (
    IncidentCreate,
    IncidentList,
    IncidentOut,
    IncidentPatch,
    ResolveRequest,
    TimelineEntryOut,
    TimelineOut,
)
from connectors.intake_store import add_comment
from incidents.records import Incident, IncidentEvent, IncidentQuery, utc
from incidents.schemas import Category, IncidentKind, IncidentStatus, Severity

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

MAX_PAGE = 500
MAX_OFFSET = 1_000_000
NOT_FOUND = {404: {"description": "No incident with this id in your tenant"}}


def not_found(incident_id: object) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"incident {incident_id} not found")


def observe_first_acknowledgement(
    context: AppContext, before: Incident, after: Incident | None
) -> None:
    """``response_time_seconds`` counts the open -> acknowledged step, once per incident."""
    if (
        after is not None
        and before.status is IncidentStatus.OPEN
        and after.status is IncidentStatus.ACKNOWLEDGED
    ):
        context.metrics.observe_acknowledged(after)


def found(incident: Incident | None, incident_id: object) -> IncidentOut:
    if incident is None:
        raise not_found(incident_id)
    return IncidentOut.from_record(incident)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Deduplicated: the open incident with this fingerprint"}},
)
def create_incident(
    body: IncidentCreate, response: Response, principal: Responder, context: Context
) -> IncidentOut:
    """201 with a new incident, or 200 with the open one it was folded into (same fingerprint).

    Without ``category`` the incident is classified: corrections, confident rules, the learned
    classifier, keywords, ``other`` (``api.classification``). Automation rules run on it in the
    background (the response does not wait for them).
    """
    category = body.category
    if category is None and context.classifier is not None:
        category = context.classifier.classify(
            tenant=principal.tenant,
            title=body.title,
            description=body.description,
            tags=body.tags,
            metadata=body.metadata,
        ).category
    event = IncidentEvent(
        title=body.title,
        description=body.description,
        severity=body.severity,
        source=body.source,
        metadata=body.metadata,
        category=category,
        fingerprint=body.fingerprint,
        tags=tuple(body.tags),
    )
    incident, created = context.store.create_incident(
        event, tenant=principal.tenant, actor=principal.username
    )
    context.incidents_changed()
    if not created:
        response.status_code = status.HTTP_200_OK
    return IncidentOut.from_record(incident)


@router.get("")
def list_incidents(
    principal: Viewer,
    store: StoreDep,
    status_: Annotated[IncidentStatus | None, Query(alias="status")] = None,
    severity: Severity | None = None,
    category: Category | None = None,
    kind: IncidentKind | None = None,
    series: Annotated[str | None, Query(max_length=1024)] = None,
    parent_id: Annotated[
        uuid.UUID | None, Query(description="Only the incidents grouped under this one.")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Incidents still going on at or after this time.")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Incidents that started at or before this time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    order: Literal["newest", "oldest"] = "newest",
) -> IncidentList:
    check_interval(since, until)
    query = IncidentQuery(
        status=status_,
        severity=severity,
        category=category,
        kind=kind,
        series=series,
        parent_id=str(parent_id) if parent_id is not None else None,
        since=utc(since) if since else None,
        until=utc(until) if until else None,
        limit=limit,
        offset=offset,
        order=order,
    )
    items, total = store.list_incidents(principal.tenant, query)
    return IncidentList(
        items=[IncidentOut.from_record(i) for i in items], total=total, limit=limit, offset=offset
    )


@router.get("/{incident_id}", responses=NOT_FOUND)
def get_incident(incident_id: IncidentId, principal: Viewer, store: StoreDep) -> IncidentOut:
    return found(store.get_incident(principal.tenant, str(incident_id)), incident_id)


@router.put(
    "/{incident_id}",
    responses={**NOT_FOUND, 409: {"description": "The change contradicts the incident's state"}},
)
def update_incident(
    incident_id: IncidentId, body: IncidentPatch, principal: Responder, context: Context
) -> IncidentOut:
    """Change the fields sent (partial update); ``status`` moves the workflow."""
    store = context.store
    before = store.get_incident(principal.tenant, str(incident_id))
    if before is None:
        raise not_found(incident_id)
    incident = store.update_incident(
        principal.tenant, str(incident_id), body.changes(), actor=principal.username
    )
    context.incidents_changed()
    observe_first_acknowledgement(context, before, incident)
    if incident is not None and body.category is not None and context.classifier is not None:
        context.classifier.learn_correction(before, incident, actor=principal.username)
    return found(incident, incident_id)


@router.post(
    "/{incident_id}/acknowledge",
    responses={**NOT_FOUND, 409: {"description": "The incident is resolved"}},
)
def acknowledge_incident(
    incident_id: IncidentId, principal: Responder, context: Context
) -> IncidentOut:
    """Open -> acknowledged (again: no change). Observes ``response_time_seconds``."""
    store = context.store
    before = store.get_incident(principal.tenant, str(incident_id))
    if before is None:
        raise not_found(incident_id)
    incident = store.acknowledge(principal.tenant, str(incident_id), actor=principal.username)
    context.incidents_changed()  # the engine cancels running escalations now, not at its poll
    observe_first_acknowledgement(context, before, incident)
    return found(incident, incident_id)


@router.post("/{incident_id}/resolve", responses=NOT_FOUND)
def resolve_incident(
    incident_id: IncidentId,
    principal: Responder,
    context: Context,
    body: Annotated[ResolveRequest | None, Body()] = None,
) -> IncidentOut:
    """Resolve, with an optional ``{"resolution": "…"}``; resolving again changes nothing."""
    resolution = body.resolution if body is not None else None
    incident = context.store.resolve(
        principal.tenant, str(incident_id), actor=principal.username, resolution=resolution
    )
    context.incidents_changed()
    return found(incident, incident_id)


@router.get("/{incident_id}/timeline", responses=NOT_FOUND)
def incident_timeline(incident_id: IncidentId, principal: Viewer, store: StoreDep) -> TimelineOut:
    if store.get_incident(principal.tenant, str(incident_id)) is None:
        raise not_found(incident_id)
    entries = store.timeline(principal.tenant, str(incident_id))
    return TimelineOut(
        incident_id=str(incident_id), items=[TimelineEntryOut.from_record(e) for e in entries]
    )


@router.post("/{incident_id}/comments", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND)
def comment_incident(
    incident_id: IncidentId, body: CommentCreate, principal: Responder, store: StoreDep
) -> TimelineEntryOut:
    """Add a comment to the incident's timeline (``{"text": "…"}``)."""
    entry = add_comment(
        store, principal.tenant, str(incident_id), actor=principal.username, text=body.text
    )
    if entry is None:
        raise not_found(incident_id)
    return TimelineEntryOut.from_record(entry)
