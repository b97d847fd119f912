"""The seed's automation entry point, working as the seed README writes it::

    from incidents.automations import AutoResponseEngine

    engine = AutoResponseEngine()
    await engine.add_automation_rule({
        "condition": "severity == 'critical' and category == 'database'",
        "actions": ["restart_service", "notify_dba", "create_incident"],
    })

The condition goes through the same safe policy language as the API's rules
(``incidents.policy``: refused with ``ConditionError`` if it is anything else), and the actions
through the same parser (``incidents.automation``). Without a repository the rules live in
memory and ``actions_for(incident)`` says what would run; with one (the SQL
``connectors.automation_store.AutomationStore``) they are stored for the tenant, exactly like
``POST /api/v1/automation/rules``, and the running automation engine fires them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from incidents.automation import (
    Action,
    ActionError,
    ActionSpec,
    AutomationRule,
    PlannedAction,
    action_to_json,
    is_silenced,
    plan_actions,
    validate_rule_parts,
)
from incidents.policy import ConditionError, incident_view
from incidents.records import Incident, utc_now
from incidents.schemas import DEFAULT_TENANT

RULE_KEYS = frozenset({"name", "condition", "actions", "enabled", "fire_on_repeat"})


class RuleRepository(Protocol):
    """Where rules are kept (``connectors.automation_store.AutomationStore`` implements it)."""

    def create_rule(
        self,
        tenant: str,
        *,
        name: str,
        condition: str,
        actions: Sequence[ActionSpec],
        enabled: bool = True,
        fire_on_repeat: bool = False,
        actor: str | None = None,
    ) -> AutomationRule: ...

    def list_rules(
        self, tenant: str | None = None, *, enabled_only: bool = False
    ) -> list[AutomationRule]: ...


def default_rule_name(condition: str, actions: Sequence[ActionSpec]) -> str:
    """A stable name for a rule given without one (the seed's example has none)."""
    text = json.dumps([condition, [action_to_json(a) for a in actions]], sort_keys=True)
    return "rule-" + hashlib.sha256(text.encode()).hexdigest()[:10]


class AutoResponseEngine:
    """Automation rules in the seed's words; see the module docstring."""

    def __init__(
        self,
        repository: RuleRepository | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        named_actions: Mapping[str, Action] | None = None,
        actor: str = "automations",
    ) -> None:
        self.repository = repository
        self.tenant = tenant
        if named_actions is None:
            from incidents.config import get_settings

            named_actions = get_settings().named_actions
        self.named_actions: dict[str, Action] = dict(named_actions)
        self.actor = actor
        self._rules: dict[str, AutomationRule] = {}

    def build_rule(self, definition: Mapping[str, Any]) -> AutomationRule:
        """Validate a rule definition (condition, actions, optional name/enabled/fire_on_repeat)."""
        if not isinstance(definition, Mapping):
            raise ActionError("a rule is a mapping with 'condition' and 'actions'")
        unknown = sorted(set(definition) - RULE_KEYS)
        if unknown:
            raise ActionError(f"unknown rule keys: {', '.join(map(str, unknown))}")
        if "condition" not in definition:
            raise ConditionError("a rule needs a 'condition'")
        actions = definition.get("actions")
        if not isinstance(actions, list | tuple):
            raise ActionError("a rule needs a list of 'actions'")
        compiled, specs = validate_rule_parts(
            definition["condition"], list(actions), self.named_actions
        )
        name = definition.get("name") or default_rule_name(compiled.source, specs)
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise ActionError("a rule name is a string of 1 to 128 characters")
        now = utc_now()
        return AutomationRule(
            id=str(uuid.uuid4()),
            tenant=self.tenant,
            name=name.strip(),
            condition=compiled.source,
            actions=specs,
            enabled=bool(definition.get("enabled", True)),
            fire_on_repeat=bool(definition.get("fire_on_repeat", False)),
            created_at=now,
            updated_at=now,
            created_by=self.actor,
        )

    async def add_automation_rule(self, definition: Mapping[str, Any]) -> AutomationRule:
        """Add a rule; raises ``ConditionError``/``ActionError`` (both ``ValueError``) if invalid,
        and ``ValueError`` if the tenant already has a rule of that name."""
        rule = self.build_rule(definition)
        if self.repository is None:
            if any(r.name == rule.name for r in self._rules.values()):
                raise ValueError(f"a rule named {rule.name!r} already exists")
            self._rules[rule.id] = rule
            return rule
        repository = self.repository
        return await asyncio.to_thread(
            lambda: repository.create_rule(
                self.tenant,
                name=rule.name,
                condition=rule.condition,
                actions=rule.actions,
                enabled=rule.enabled,
                fire_on_repeat=rule.fire_on_repeat,
                actor=self.actor,
            )
        )

    def rules(self) -> list[AutomationRule]:
        if self.repository is None:
            return list(self._rules.values())
        return self.repository.list_rules(self.tenant)

    def actions_for(self, incident: Incident) -> list[PlannedAction]:
        """What the enabled rules would run for ``incident`` now (silenced: nothing).

        Firing once per incident is the engine's bookkeeping (``connectors.automation_engine``);
        this only evaluates the conditions.
        """
        return [planned for _, planned in self.planned_by_rule(incident)]

    def planned_by_rule(self, incident: Incident) -> list[tuple[AutomationRule, PlannedAction]]:
        """Like ``actions_for``, each action with the rule it comes from."""
        if is_silenced(incident):
            return []
        view = incident_view(incident)
        planned: list[tuple[AutomationRule, PlannedAction]] = []
        for rule in self.rules():
            if rule.enabled and rule.compiled.matches(view):
                planned.extend((rule, action) for action in plan_actions(rule, self.named_actions))
        return planned
