"""Silences (maintenance windows): create, list, read, expire. New incidents that an active
silence matches are recorded as silenced and fire no automated actions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import Responder, StoreDep, Viewer
from api.intake_schemas import SilenceCreate, SilenceList, SilenceOut
from connectors.silence_store import SilenceStore
from incidents.records import utc_now
from incidents.silences import Matcher, SilenceError, SilenceState

router = APIRouter(prefix="/api/v1/silences", tags=["silences"])

SilenceId = Annotated[uuid.UUID, Path(description="The silence's id (a UUID).")]
NOT_FOUND = {404: {"description": "No silence with this id in your tenant"}}
MAX_LIST = 1_000


def not_found(silence_id: object) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"silence {silence_id} not found")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "Bad matcher (e.g. invalid regex) or time range"}},
)
def create_silence(body: SilenceCreate, principal: Responder, store: StoreDep) -> SilenceOut:
    """Silence the new incidents whose labels match all ``matchers`` between ``starts_at`` and
    ``ends_at``. Labels: tags (``k=v``/``k:v``), metadata keys, alert labels, series tags and the
    fields severity, category, source, series, kind, title, status. Regexes are RE2, anchored."""
    try:
        matchers = [
            Matcher(name=m.name, value=m.value, is_regex=m.is_regex, is_equal=m.is_equal)
            for m in body.matchers
        ]
        silence = SilenceStore(store).create(
            principal.tenant,
            matchers,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            comment=body.comment,
            created_by=body.created_by or principal.username,
        )
    except SilenceError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return SilenceOut.from_record(silence, utc_now())


@router.get("")
def list_silences(
    principal: Viewer,
    store: StoreDep,
    state: SilenceState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> SilenceList:
    """The tenant's silences, newest first; ``state`` = pending, active or expired."""
    now = utc_now()
    silences = SilenceStore(store).list(principal.tenant, state, limit=limit, now=now)
    return SilenceList(
        items=[SilenceOut.from_record(s, now) for s in silences], count=len(silences)
    )


@router.get("/{silence_id}", responses=NOT_FOUND)
def get_silence(silence_id: SilenceId, principal: Viewer, store: StoreDep) -> SilenceOut:
    silence = SilenceStore(store).get(principal.tenant, str(silence_id))
    if silence is None:
        raise not_found(silence_id)
    return SilenceOut.from_record(silence, utc_now())


@router.delete("/{silence_id}", responses=NOT_FOUND)
def expire_silence(silence_id: SilenceId, principal: Responder, store: StoreDep) -> SilenceOut:
    """Expire the silence now (as Alertmanager does: it stays listed, as ``expired``)."""
    now = utc_now()
    silence = SilenceStore(store).expire(principal.tenant, str(silence_id), now=now)
    if silence is None:
        raise not_found(silence_id)
    return SilenceOut.from_record(silence, now)
