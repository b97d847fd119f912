"""The seed README's Python examples, as written there, and the manager behind them."""

import asyncio
from importlib.metadata import EntryPoint

import pytest

from incidents.core import CLASSIFIER_GROUP, IncidentManager, ModelPredictor, load_predictor
from incidents.schemas import Category


def test_the_seed_examples_work_as_written(capsys):
    async def seed() -> None:
        # --- verbatim from the seed README ("Grundlegendes Incident Management") ---
        from incidents.core import IncidentManager
        from incidents.models import IncidentEvent

        # Incident-Manager initialisieren
        manager = IncidentManager()

        # Incident erstellen und verarbeiten
        incident = IncidentEvent(
            title="Datenbank-Verbindungs-Timeout",
            description="Mehrere Datenbank-Verbindungs-Timeouts erkannt",
            severity="high",
            source="monitoring",
            metadata={"database": "primary", "timeout_count": 15},
        )

        # Mit KI-Klassifizierung verarbeiten
        response = await manager.process_incident(incident)
        print(f"Incident klassifiziert als: {response.classification}")
        print(f"Automatisierte Aktionen: {response.actions}")

        # --- verbatim from the seed README ("Automatisierung & Remediation") ---
        from incidents.automations import AutoResponseEngine

        # Automatisierte Antworten konfigurieren
        engine = AutoResponseEngine()

        # Automatisierungs-Regeln definieren
        await engine.add_automation_rule({
            "condition": "severity == 'critical' and category == 'database'",
            "actions": ["restart_service", "notify_dba", "create_incident"]
        })  # fmt: skip

    asyncio.run(seed())
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Incident klassifiziert als: database",
        "Automatisierte Aktionen: []",
    ]


def seed_event(severity: str = "critical"):
    from incidents.models import IncidentEvent

    return IncidentEvent(
        title="Datenbank-Verbindungs-Timeout",
        description="Mehrere Datenbank-Verbindungs-Timeouts erkannt",
        severity=severity,
        source="monitoring",
        metadata={"database": "primary", "timeout_count": 15},
    )


def seed_engine():
    from incidents.automations import AutoResponseEngine

    engine = AutoResponseEngine(named_actions={})
    asyncio.run(
        engine.add_automation_rule(
            {
                "name": "db-critical",
                "condition": "severity == 'critical' and category == 'database'",
                "actions": ["restart_service", "notify_dba", "create_incident"],
            }
        )
    )
    return engine


def test_actions_list_what_the_matching_rules_would_run():
    manager = IncidentManager(seed_engine(), predictor=None)
    response = asyncio.run(manager.process_incident(seed_event("critical")))
    assert response.classification is Category.DATABASE
    assert response["classification"] == "database"
    assert [(a["name"], a["rule"]) for a in response.actions] == [
        ("restart_service", "db-critical"),
        ("notify_dba", "db-critical"),
        ("create_incident", "db-critical"),
    ]
    # the rule asks for critical: a high one matches no rule
    assert asyncio.run(manager.process_incident(seed_event("high"))).actions == []


def test_silenced_incidents_get_no_actions():
    manager = IncidentManager(seed_engine(), predictor=None)
    event = seed_event("critical")
    event.metadata["silenced"] = True
    assert manager.process(event).actions == []


def test_the_learned_classifier_decides_when_rules_cannot():
    class Fixed:
        def predict(self, title, description, labels):
            return Category.NETWORK, 0.8

    manager = IncidentManager(predictor=ModelPredictor(Fixed()))
    from incidents.models import IncidentEvent

    response = manager.process(IncidentEvent(title="Irgendwas ist komisch"))
    assert (response.classification, response.method, response.confidence) == (
        Category.NETWORK,
        "model",
        0.8,
    )
    # confident rules (metadata key "database") come first
    assert manager.process(seed_event()).method == "rules"


def test_the_entry_point_loads_the_packaged_classifier():
    entry = EntryPoint(name="default", value="models.classifier:base_model", group=CLASSIFIER_GROUP)
    predictor = load_predictor(entries=[entry])
    assert predictor is not None
    prediction = predictor.predict(
        "Datenbank-Verbindungs-Timeout", "Mehrere Datenbank-Verbindungs-Timeouts erkannt", []
    )
    assert prediction.category is Category.DATABASE
    manager = IncidentManager(predictor=predictor)
    from incidents.models import IncidentEvent

    response = manager.process(
        IncidentEvent(title="Replikationsverzögerung auf dem Datenbank-Standby")
    )
    assert response.classification is Category.DATABASE


@pytest.mark.parametrize("value", ["models.classifier:does_not_exist", "no_such_module:x"])
def test_a_missing_or_broken_entry_point_leaves_rules_and_keywords(value):
    assert load_predictor(entries=[]) is None
    broken = EntryPoint(name="default", value=value, group=CLASSIFIER_GROUP)
    assert load_predictor(entries=[broken]) is None
