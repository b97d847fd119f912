"""Automation rules: create, list, read, replace, delete (responder writes, viewer reads)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from api.automation_schemas import RuleIn, RuleList, RuleOut
from api.deps import Context, Responder, Viewer
from connectors.automation_store import AutomationStore, RuleNameTaken
from incidents.automation import ActionError, ActionSpec, validate_rule_parts
from incidents.policy import ConditionError

router = APIRouter(prefix="/api/v1/automation", tags=["automation"])

RuleId = Annotated[uuid.UUID, Path(description="The rule's id (a UUID).")]
NOT_FOUND = {404: {"description": "No rule with this id in your tenant"}}
CONFLICT = {409: {"description": "Another rule of your tenant has this name"}}


def not_found(rule_id: object) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"rule {rule_id} not found")


def _unprocessable(field: str, message: str, kind: str) -> HTTPException:
    """A 422 shaped like the validation errors: [{loc, msg, type}]."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["body", field], "msg": message, "type": kind}],
    )


def checked_actions(body: RuleIn, context: Context) -> tuple[ActionSpec, ...]:
    """Domain validation of the actions (and of named actions against the configuration)."""
    try:
        _, actions = validate_rule_parts(
            body.condition, body.action_bodies(), context.automation_actions
        )
    except ConditionError as exc:  # already checked by the schema; kept for completeness
        raise _unprocessable("condition", str(exc), "condition_error") from None
    except ActionError as exc:
        raise _unprocessable("actions", str(exc), "action_error") from None
    return actions


def automation_store(context: Context) -> AutomationStore:
    return AutomationStore(context.store)


@router.post("/rules", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_rule(body: RuleIn, principal: Responder, context: Context) -> RuleOut:
    actions = checked_actions(body, context)
    try:
        rule = automation_store(context).create_rule(
            principal.tenant,
            name=body.name,
            condition=body.condition,
            actions=actions,
            enabled=body.enabled,
            fire_on_repeat=body.fire_on_repeat,
            actor=principal.username,
        )
    except RuleNameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return RuleOut.from_record(rule)


@router.get("/rules")
def list_rules(principal: Viewer, context: Context) -> RuleList:
    rules = automation_store(context).list_rules(principal.tenant)
    return RuleList(items=[RuleOut.from_record(r) for r in rules], total=len(rules))


@router.get("/rules/{rule_id}", responses=NOT_FOUND)
def get_rule(rule_id: RuleId, principal: Viewer, context: Context) -> RuleOut:
    rule = automation_store(context).get_rule(principal.tenant, str(rule_id))
    if rule is None:
        raise not_found(rule_id)
    return RuleOut.from_record(rule)


@router.put("/rules/{rule_id}", responses={**NOT_FOUND, **CONFLICT})
def replace_rule(rule_id: RuleId, body: RuleIn, principal: Responder, context: Context) -> RuleOut:
    """Replace the whole rule (send every field; webhook headers must be sent again)."""
    actions = checked_actions(body, context)
    try:
        rule = automation_store(context).replace_rule(
            principal.tenant,
            str(rule_id),
            name=body.name,
            condition=body.condition,
            actions=actions,
            enabled=body.enabled,
            fire_on_repeat=body.fire_on_repeat,
        )
    except RuleNameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if rule is None:
        raise not_found(rule_id)
    return RuleOut.from_record(rule)


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_rule(rule_id: RuleId, principal: Responder, context: Context) -> Response:
    if not automation_store(context).delete_rule(principal.tenant, str(rule_id)):
        raise not_found(rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
