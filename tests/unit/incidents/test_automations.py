"""The seed's ``AutoResponseEngine().add_automation_rule({...})``, working as the seed writes it."""

import asyncio
from datetime import UTC, datetime

import pytest

from connectors.automation_store import AutomationStore, RuleNameTaken
from connectors.store import Store
from incidents.automation import ActionError, EmailAction, NamedAction
from incidents.automations import AutoResponseEngine
from incidents.policy import ConditionError
from incidents.records import Incident
from incidents.schemas import Category
from tests.factories import seed_incident

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SEED_RULE = {
    "condition": "severity == 'critical' and category == 'database'",
    "actions": ["restart_service", "notify_dba", "create_incident"],
}


def incident(**changes) -> Incident:
    return seed_incident(**{"tenant": "default", **changes})


def test_the_seed_example_works_as_written():
    async def seed_example():
        # Automatisierte Antworten konfigurieren
        engine = AutoResponseEngine()

        # Automatisierungs-Regeln definieren
        await engine.add_automation_rule(
            {
                "condition": "severity == 'critical' and category == 'database'",
                "actions": ["restart_service", "notify_dba", "create_incident"],
            }
        )
        return engine

    engine = asyncio.run(seed_example())
    [rule] = engine.rules()
    assert rule.condition == SEED_RULE["condition"]
    assert rule.actions == tuple(NamedAction(n) for n in SEED_RULE["actions"])
    assert rule.name.startswith("rule-")  # the seed gives no name: a stable one is made up
    planned = engine.actions_for(incident())
    assert [p.name for p in planned] == ["restart_service", "notify_dba", "create_incident"]
    assert engine.actions_for(incident(category=Category.NETWORK)) == []
    assert engine.actions_for(incident(metadata={"silenced": True})) == []


def test_named_actions_expand_from_configuration():
    engine = AutoResponseEngine(named_actions={"notify_dba": EmailAction(("dba@example.org",))})
    asyncio.run(engine.add_automation_rule({**SEED_RULE, "name": "db"}))
    planned = engine.actions_for(incident())
    assert [(p.name, p.action) for p in planned] == [
        ("restart_service", None),
        ("notify_dba", EmailAction(("dba@example.org",))),
        ("create_incident", None),
    ]


@pytest.mark.parametrize(
    ("rule", "error", "message"),
    [
        (
            {**SEED_RULE, "condition": "__import__('os').system('touch /tmp/x')"},
            ConditionError,
            "function calls",
        ),
        ({"actions": ["notify_dba"]}, ConditionError, "needs a 'condition'"),
        ({**SEED_RULE, "actions": "notify_dba"}, ActionError, "list of 'actions'"),
        ({**SEED_RULE, "actions": ["reboot_everything"]}, ActionError, "unknown named action"),
        ({**SEED_RULE, "when": "now"}, ActionError, "unknown rule keys: when"),
    ],
)
def test_bad_rules_are_refused(rule, error, message):
    engine = AutoResponseEngine(named_actions={})
    with pytest.raises(error, match=message):
        asyncio.run(engine.add_automation_rule(rule))
    assert engine.rules() == []


def test_a_second_rule_of_the_same_name_is_refused():
    engine = AutoResponseEngine(named_actions={})
    asyncio.run(engine.add_automation_rule(SEED_RULE))
    with pytest.raises(ValueError, match="already exists"):
        asyncio.run(engine.add_automation_rule(SEED_RULE))


def test_with_the_sql_repository_rules_are_stored_for_the_api_and_engine(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'seed.db'}")
    store.migrate()
    try:
        repository = AutomationStore(store)
        engine = AutoResponseEngine(repository, tenant="acme", named_actions={})
        rule = asyncio.run(engine.add_automation_rule({**SEED_RULE, "name": "seed"}))
        assert repository.get_rule("acme", rule.id) == rule
        assert [r.name for r in engine.rules()] == ["seed"]
        assert len(engine.actions_for(incident(tenant="acme"))) == 3
        with pytest.raises(RuleNameTaken):
            asyncio.run(engine.add_automation_rule({**SEED_RULE, "name": "seed"}))
    finally:
        store.close()
