"""Request and response models of ``/api/v1/automation`` (rules and their actions).

The action models give the OpenAPI schema and the first checks; the domain constructors in
``incidents.automation`` (``parse_action``) have the last word, so the API and the seed's
``AutoResponseEngine`` accept exactly the same rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, field_validator

from incidents.automation import AutomationRule, WebhookAction, action_to_json
from incidents.policy import MAX_CONDITION_CHARS, ConditionError, compile_condition

REDACTED = "***"

RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookActionIn(Request):
    type: Literal["webhook"]
    url: HttpUrl = Field(description="http:// or https:// URL that receives the incident as JSON.")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra request headers (write-only: their values are shown as ***).",
    )


class SlackActionIn(Request):
    type: Literal["slack"]
    url: HttpUrl = Field(description="A Slack (or compatible) incoming-webhook URL.")
    channel: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class EmailActionIn(Request):
    type: Literal["email"]
    to: list[Address] = Field(min_length=1, max_length=50)
    subject: Annotated[str, StringConstraints(max_length=200)] | None = None


class EscalateActionIn(Request):
    type: Literal["escalate"]
    policy: Identifier


class RemediateActionIn(Request):
    type: Literal["remediate"]
    remediation: Identifier


ActionIn = Annotated[
    WebhookActionIn | SlackActionIn | EmailActionIn | EscalateActionIn | RemediateActionIn,
    Field(discriminator="type"),
]
ActionItem = Identifier | ActionIn


class RuleIn(Request):
    """A rule: when ``condition`` holds for an incident, run ``actions`` (once per incident
    unless ``fire_on_repeat``)."""

    name: RuleName
    condition: str = Field(
        max_length=MAX_CONDITION_CHARS,
        examples=["severity == 'critical' and category == 'database'"],
    )
    actions: list[ActionItem] = Field(min_length=1, max_length=20)
    enabled: bool = True
    fire_on_repeat: bool = False

    @field_validator("condition")
    @classmethod
    def _safe_condition(cls, value: str) -> str:
        try:
            return compile_condition(value).source
        except ConditionError as exc:
            raise ValueError(str(exc)) from None

    def action_bodies(self) -> list[str | dict[str, Any]]:
        """The actions as JSON values for ``incidents.automation.parse_action``."""
        return [
            a if isinstance(a, str) else a.model_dump(mode="json", exclude_none=True)
            for a in self.actions
        ]


def _shown(action: Any) -> str | dict[str, Any]:
    body = action_to_json(action)
    if isinstance(action, WebhookAction) and isinstance(body, dict):
        body["headers"] = {name: REDACTED for name in body.get("headers", {})}
    return body


class RuleOut(BaseModel):
    id: str
    name: str
    condition: str
    actions: list[str | dict[str, Any]]
    enabled: bool
    fire_on_repeat: bool
    created_by: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_record(cls, rule: AutomationRule) -> RuleOut:
        return cls(
            id=rule.id,
            name=rule.name,
            condition=rule.condition,
            actions=[_shown(a) for a in rule.actions],
            enabled=rule.enabled,
            fire_on_repeat=rule.fire_on_repeat,
            created_by=rule.created_by,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


class RuleList(BaseModel):
    items: list[RuleOut]
    total: int
