"""Escalation policies: the pure part (no I/O).

A policy is a list of levels; each level runs its actions ``after_seconds`` after the escalation
of an incident started, unless the incident was acknowledged or resolved meanwhile. An
``{"type": "escalate", "policy": name}`` action of a rule starts one. Levels use the same actions
as rules (``incidents.automation``), except ``escalate`` itself (a level starting another
escalation would make chains nobody can follow; put the actions in the level instead).

Timers, storage and delivery live in ``connectors.escalation`` and
``connectors.escalation_store``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from incidents.automation import (
    MAX_ACTIONS,
    Action,
    ActionError,
    ActionSpec,
    AutomationRule,
    EscalateAction,
    NamedAction,
    action_to_json,
    check_action_names,
    parse_action,
)
from incidents.records import Incident
from incidents.schemas import IncidentStatus

MAX_LEVELS = 10
MAX_AFTER_SECONDS = 7 * 24 * 3600.0
"""A level waits at most a week: an escalation is for people who did not answer, not a reminder."""


class EscalationError(ValueError):
    """A policy that is not valid (no levels, times not increasing, a bad action …)."""


class EscalationStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    after_seconds: float
    actions: tuple[ActionSpec, ...]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    id: str
    tenant: str
    name: str
    levels: tuple[EscalationLevel, ...]
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Escalation:
    """One running (or finished) escalation of an incident. ``levels`` is a copy of the policy's
    levels when it started, so editing or deleting the policy does not change it. ``next_level``
    is the index of the first level that has not fired."""

    id: str
    tenant: str
    incident_id: str
    policy_id: str | None
    policy: str
    levels: tuple[EscalationLevel, ...]
    started_at: datetime
    status: EscalationStatus
    next_level: int = 0
    finished_at: datetime | None = None
    cancelled_by: str | None = None
    reason: str | None = None

    def due_at(self, level: int) -> datetime:
        return self.started_at + timedelta(seconds=self.levels[level].after_seconds)

    @property
    def remaining_levels(self) -> range:
        return range(self.next_level, len(self.levels))


def parse_levels(raw: Sequence[object], named: Mapping[str, Action]) -> tuple[EscalationLevel, ...]:
    """Levels from JSON (``[{"after_seconds": 0, "actions": [...]}, …]``); raises
    ``EscalationError`` (or ``ActionError`` for a bad action) with a message for the caller."""
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise EscalationError("'levels' must be a list")
    if not raw:
        raise EscalationError("a policy needs at least one level")
    if len(raw) > MAX_LEVELS:
        raise EscalationError(f"a policy may have at most {MAX_LEVELS} levels")
    levels = []
    previous: float | None = None
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, Mapping):
            raise EscalationError(f"level {number} must be an object")
        unknown = sorted(set(item) - {"after_seconds", "actions"})
        if unknown:
            raise EscalationError(f"level {number} does not take {', '.join(unknown)}")
        after = item.get("after_seconds")
        if isinstance(after, bool) or not isinstance(after, int | float):
            raise EscalationError(f"level {number} needs a number 'after_seconds'")
        after = float(after)
        if not 0.0 <= after <= MAX_AFTER_SECONDS:
            raise EscalationError(
                f"level {number}: after_seconds must be between 0 and {MAX_AFTER_SECONDS:.0f}"
            )
        if previous is not None and after <= previous:
            raise EscalationError(
                f"level {number}: after_seconds must be greater than the level before's "
                f"({after:g} <= {previous:g})"
            )
        previous = after
        actions = item.get("actions")
        if isinstance(actions, str | bytes) or not isinstance(actions, Sequence) or not actions:
            raise EscalationError(f"level {number} needs a list of 1 to {MAX_ACTIONS} actions")
        if len(actions) > MAX_ACTIONS:
            raise EscalationError(f"level {number} may have at most {MAX_ACTIONS} actions")
        try:
            specs = tuple(parse_action(a) for a in actions)
            check_action_names(specs, named)
        except ActionError as exc:
            raise EscalationError(f"level {number}: {exc}") from None
        for spec in specs:
            concrete = named.get(spec.name) if isinstance(spec, NamedAction) else spec
            if isinstance(concrete, EscalateAction):
                raise EscalationError(f"level {number}: a level cannot start another escalation")
        levels.append(EscalationLevel(after, specs))
    return tuple(levels)


def levels_to_json(levels: Sequence[EscalationLevel]) -> list[dict[str, Any]]:
    """Inverse of ``parse_levels`` (what is stored)."""
    return [
        {
            "after_seconds": level.after_seconds,
            "actions": [action_to_json(a) for a in level.actions],
        }
        for level in levels
    ]


def levels_from_json(raw: Sequence[Mapping[str, Any]]) -> tuple[EscalationLevel, ...]:
    """Stored levels back (already validated when stored; names are not checked again, so a
    definition removed from ``AUTOMATION_ACTIONS`` later runs as ``not_configured``)."""
    return tuple(
        EscalationLevel(
            float(level["after_seconds"]), tuple(parse_action(a) for a in level["actions"])
        )
        for level in raw
    )


def stops_escalation(incident: Incident) -> bool:
    """An acknowledged or resolved incident escalates no further."""
    return incident.status in (IncidentStatus.ACKNOWLEDGED, IncidentStatus.RESOLVED)


def stopped_by(incident: Incident) -> tuple[str | None, str]:
    """Who stopped the escalation and why, from the incident's state."""
    if incident.status is IncidentStatus.RESOLVED:
        return incident.resolved_by, "resolved"
    if incident.status is IncidentStatus.ACKNOWLEDGED:
        return incident.acknowledged_by, "acknowledged"
    return None, str(incident.status)


def level_rule(escalation: Escalation, level: int) -> AutomationRule:
    """The level as a rule for the action executors (their payloads name a rule: here the
    policy and level, and as condition why it fired)."""
    step = escalation.levels[level]
    return AutomationRule(
        id=escalation.policy_id or escalation.id,
        tenant=escalation.tenant,
        name=f"{escalation.policy} (escalation level {level + 1})",
        condition=f"not acknowledged or resolved within {step.after_seconds:g} s",
        actions=step.actions,
    )


def level_job_id(escalation_id: str, level: int) -> str:
    """The scheduler job of one level (removed when the escalation is cancelled)."""
    return f"escalation:{escalation_id}:{level}"


def describe_levels(levels: Sequence[EscalationLevel]) -> list[dict[str, Any]]:
    """For the timeline: when each level fires and how many actions it runs."""
    return [
        {"level": i + 1, "after_seconds": lv.after_seconds, "actions": len(lv.actions)}
        for i, lv in enumerate(levels)
    ]
