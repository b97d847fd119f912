"""Escalation policies: create, list, read, replace, delete (responder writes, viewer reads).

A policy is addressed by its id or by its name (``/api/v1/escalation/policies/db-oncall``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from api.deps import Context, Responder, Viewer
from api.escalation_schemas import PolicyIn, PolicyList, PolicyOut
from connectors.escalation_store import EscalationStore, PolicyNameTaken
from incidents.escalation import EscalationError, EscalationLevel, parse_levels

router = APIRouter(prefix="/api/v1/escalation", tags=["escalation"])

PolicyRef = Annotated[
    str, Path(min_length=1, max_length=128, description="The policy's id or name.")
]
NOT_FOUND = {404: {"description": "No policy with this id or name in your tenant"}}
CONFLICT = {409: {"description": "Another policy of your tenant has this name"}}


def not_found(ref: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"escalation policy {ref!r} not found")


def checked_levels(body: PolicyIn, context: Context) -> tuple[EscalationLevel, ...]:
    """Domain validation of the levels (actions, named actions against the configuration)."""
    try:
        return parse_levels(body.level_bodies(), context.automation_actions)
    except EscalationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "levels"], "msg": str(exc), "type": "escalation_error"}],
        ) from None


def escalation_store(context: Context) -> EscalationStore:
    return EscalationStore(context.store)


@router.post("/policies", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_policy(body: PolicyIn, principal: Responder, context: Context) -> PolicyOut:
    levels = checked_levels(body, context)
    try:
        policy = escalation_store(context).create_policy(
            principal.tenant, name=body.name, levels=levels, actor=principal.username
        )
    except PolicyNameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return PolicyOut.from_record(policy)


@router.get("/policies")
def list_policies(principal: Viewer, context: Context) -> PolicyList:
    policies = escalation_store(context).list_policies(principal.tenant)
    return PolicyList(items=[PolicyOut.from_record(p) for p in policies], total=len(policies))


@router.get("/policies/{policy}", responses=NOT_FOUND)
def get_policy(policy: PolicyRef, principal: Viewer, context: Context) -> PolicyOut:
    found = escalation_store(context).find_policy(principal.tenant, policy)
    if found is None:
        raise not_found(policy)
    return PolicyOut.from_record(found)


@router.put("/policies/{policy}", responses={**NOT_FOUND, **CONFLICT})
def replace_policy(
    policy: PolicyRef, body: PolicyIn, principal: Responder, context: Context
) -> PolicyOut:
    """Replace the whole policy (webhook headers must be sent again). Escalations already
    running keep the levels they started with."""
    levels = checked_levels(body, context)
    store = escalation_store(context)
    found = store.find_policy(principal.tenant, policy)
    if found is None:
        raise not_found(policy)
    try:
        replaced = store.replace_policy(principal.tenant, found.id, name=body.name, levels=levels)
    except PolicyNameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if replaced is None:
        raise not_found(policy)
    return PolicyOut.from_record(replaced)


@router.delete("/policies/{policy}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_policy(policy: PolicyRef, principal: Responder, context: Context) -> Response:
    """Delete the policy; escalations it started go on with their own copy of the levels."""
    store = escalation_store(context)
    found = store.find_policy(principal.tenant, policy)
    if found is None or not store.delete_policy(principal.tenant, found.id):
        raise not_found(policy)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
