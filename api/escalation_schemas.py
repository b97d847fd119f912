"""Request and response models of ``/api/v1/escalation`` (policies and their levels).

Levels take the same actions as automation rules (``api.automation_schemas.ActionItem``); the
domain parser ``incidents.escalation.parse_levels`` has the last word, as for rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from api.automation_schemas import ActionItem, Identifier, Request, _shown
from incidents.escalation import MAX_AFTER_SECONDS, MAX_LEVELS, EscalationPolicy


class LevelIn(Request):
    after_seconds: float = Field(
        ge=0.0,
        le=MAX_AFTER_SECONDS,
        description="Seconds after the escalation started at which this level's actions run "
        "(unless the incident was acknowledged or resolved); increasing from level to level.",
    )
    actions: list[ActionItem] = Field(min_length=1, max_length=20)

    def body(self) -> dict[str, Any]:
        return {
            "after_seconds": self.after_seconds,
            "actions": [
                a if isinstance(a, str) else a.model_dump(mode="json", exclude_none=True)
                for a in self.actions
            ],
        }


class PolicyIn(Request):
    """An escalation policy: ``levels`` fire one after the other until someone acknowledges."""

    name: Identifier = Field(description="Unique in the tenant; what escalate actions name.")
    levels: list[LevelIn] = Field(min_length=1, max_length=MAX_LEVELS)

    @model_validator(mode="after")
    def _increasing(self) -> PolicyIn:
        times = [level.after_seconds for level in self.levels]
        for number, (before, after) in enumerate(zip(times, times[1:], strict=False), start=2):
            if after <= before:
                raise ValueError(
                    f"after_seconds must increase from level to level: level {number} has "
                    f"{after:g}, the level before {before:g}"
                )
        return self

    def level_bodies(self) -> list[dict[str, Any]]:
        return [level.body() for level in self.levels]


class LevelOut(BaseModel):
    level: int
    after_seconds: float
    actions: list[str | dict[str, Any]]


class PolicyOut(BaseModel):
    id: str
    name: str
    levels: list[LevelOut]
    created_by: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_record(cls, policy: EscalationPolicy) -> PolicyOut:
        return cls(
            id=policy.id,
            name=policy.name,
            levels=[
                LevelOut(
                    level=i + 1,
                    after_seconds=level.after_seconds,
                    actions=[_shown(a) for a in level.actions],
                )
                for i, level in enumerate(policy.levels)
            ],
            created_by=policy.created_by,
            created_at=policy.created_at,
            updated_at=policy.updated_at,
        )


class PolicyList(BaseModel):
    items: list[PolicyOut]
    total: int
