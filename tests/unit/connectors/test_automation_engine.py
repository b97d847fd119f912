"""The automation store and the in-process engine over a real SQLite store, delivering to real
local servers (an HTTP server and an aiosmtpd SMTP server started by the tests' fixtures)."""

import time

import pytest

from connectors.automation_actions import ActionDispatcher
from connectors.automation_engine import AutomationEngine
from connectors.automation_store import AutomationStore, RuleNameTaken
from connectors.store import Store
from incidents.automation import (
    FIRST_FIRING,
    ActionResult,
    ActionType,
    AutomationRule,
    PlannedAction,
    parse_action,
    plan_actions,
)
from incidents.config import Settings
from incidents.lifecycle import detected_fingerprint
from incidents.records import IncidentEvent, TimelineType
from incidents.schemas import Category, IncidentEventType, IncidentUpdate, Severity

SEED = "severity == 'critical' and category == 'database'"
SEED_EVENT = dict(
    title="Datenbank-Verbindungs-Timeout",
    description="Mehrere Datenbank-Verbindungs-Timeouts erkannt",
    severity="critical",
    source="monitoring",
    metadata={"database": "primary", "timeout_count": 15},
)
S = 1_000_000_000


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'automation.db'}")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def rules(store) -> AutomationStore:
    return AutomationStore(store)


def settings(**overrides) -> Settings:
    values = {"environment": "test", "automation_action_timeout_seconds": 2.0}
    return Settings(**{**values, **overrides})


@pytest.fixture
def make_engine(store):
    engines = []

    def make(**overrides) -> AutomationEngine:
        engine = AutomationEngine(store, settings(**overrides))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def add_rule(rules, name="db", condition=SEED, actions=(), tenant="acme", **kw) -> AutomationRule:
    return rules.create_rule(
        tenant,
        name=name,
        condition=condition,
        actions=[parse_action(a) for a in actions],
        **kw,
    )


def create(store, tenant="acme", **fields):
    return store.create_incident(
        IncidentEvent(**{**SEED_EVENT, **fields}), tenant=tenant, actor="t"
    )


def settle(engine: AutomationEngine) -> None:
    """Process everything pending and wait for the actions' results to be recorded."""
    while engine.run_once():
        pass
    engine.drain(10)


def actions_of(store, incident_id, tenant="acme"):
    return [e for e in store.timeline(tenant, incident_id) if e.type is TimelineType.ACTION]


# --- the store ------------------------------------------------------------------------------


def test_rules_are_stored_per_tenant_with_unique_names(rules):
    first = add_rule(rules, actions=["notify_dba"])
    add_rule(rules, tenant="globex", actions=["notify_dba"])  # same name, other tenant: fine
    with pytest.raises(RuleNameTaken):
        add_rule(rules, actions=["notify_dba"])
    assert rules.get_rule("acme", first.id) == first
    assert rules.get_rule("globex", first.id) is None
    assert [r.name for r in rules.list_rules("acme")] == ["db"]
    other = add_rule(rules, name="other", actions=["create_incident"], enabled=False)
    assert [r.name for r in rules.list_rules("acme", enabled_only=True)] == ["db"]
    with pytest.raises(RuleNameTaken):
        rules.replace_rule(
            "acme",
            other.id,
            name="db",
            condition=SEED,
            actions=other.actions,
            enabled=True,
            fire_on_repeat=False,
        )
    replaced = rules.replace_rule(
        "acme",
        other.id,
        name="renamed",
        condition="severity == 'high'",
        actions=[parse_action({"type": "escalate", "policy": "p"})],
        enabled=True,
        fire_on_repeat=True,
    )
    assert (replaced.name, replaced.condition, replaced.fire_on_repeat) == (
        "renamed",
        "severity == 'high'",
        True,
    )
    assert replaced.created_at == other.created_at and replaced.updated_at >= other.updated_at
    assert rules.delete_rule("acme", other.id) is True
    assert rules.delete_rule("acme", other.id) is False
    assert (
        rules.replace_rule(
            "acme",
            other.id,
            name="x",
            condition=SEED,
            actions=(),
            enabled=True,
            fire_on_repeat=False,
        )
        is None
    )


def test_a_firing_is_claimed_once(store, rules):
    incident, _ = create(store)
    rule = add_rule(rules, actions=["notify_dba"])
    planned = plan_actions(rule, {})
    assert rules.claim_firing(incident, rule, FIRST_FIRING, 1, planned) is True
    assert rules.claim_firing(incident, rule, FIRST_FIRING, 2, planned) is False
    assert rules.claim_firing(incident, rule, "repeat:3", 3, planned) is True
    assert rules.fired_rule_ids(incident.id) == {rule.id}
    fired = [e for e in store.timeline("acme", incident.id) if e.type is TimelineType.RULE_FIRED]
    assert len(fired) == 2
    assert fired[0].details["rule"] == "db" and fired[0].details["actions"] == [
        {"type": "named", "name": "notify_dba"}
    ]
    assert fired[0].actor == "automation"


def test_action_results_feed_the_counts(store, rules):
    incident, _ = create(store)
    rule = add_rule(rules, actions=["notify_dba"])
    planned = PlannedAction(parse_action({"type": "webhook", "url": "http://127.0.0.1:9/x"}))
    rules.record_action_result(incident, rule, planned, ActionResult.ok(204))
    rules.record_action_result(incident, rule, planned, ActionResult.failed("HTTP 500", 500))
    rules.record_action_result(
        incident, rule, PlannedAction(None, "notify_dba"), ActionResult.not_configured("no")
    )
    assert rules.action_counts() == [
        ("named", "not_configured", 1),
        ("webhook", "error", 1),
        ("webhook", "ok", 1),
    ]
    entries = actions_of(store, incident.id)
    assert [e.details["outcome"] for e in entries] == ["ok", "error", "not_configured"]
    assert entries[1].details["status_code"] == 500
    assert entries[0].details["target"] == "http://127.0.0.1:9"


# --- the engine -----------------------------------------------------------------------------


def test_a_matching_incident_fires_its_webhook_once_even_when_repeated(
    store, rules, make_engine, webhook_server
):
    engine = make_engine()
    engine.run_once()  # sets the cursor at the current end of the timeline
    add_rule(rules, actions=[{"type": "webhook", "url": f"{webhook_server.url}/hook"}])
    incident, created = create(store)
    again, created_again = create(store)
    assert created and not created_again and again.id == incident.id
    settle(engine)

    received = webhook_server.wait_for(1)
    time.sleep(0.2)
    assert len(webhook_server.received) == 1
    request = received[0]
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert body["incident"]["id"] == incident.id
    assert body["incident"]["category"] == "database"
    assert body["rule"]["name"] == "db"
    [entry] = actions_of(store, incident.id)
    assert entry.details["outcome"] == "ok" and entry.details["status_code"] == 200
    assert entry.details["type"] == "webhook" and entry.details["rule"] == "db"


def test_fire_on_repeat_fires_again_on_each_repeat(store, rules, make_engine, webhook_server):
    engine = make_engine()
    engine.run_once()
    add_rule(
        rules,
        actions=[{"type": "webhook", "url": webhook_server.url}],
        fire_on_repeat=True,
    )
    for _ in range(3):
        create(store)
    settle(engine)
    assert len(webhook_server.wait_for(3)) == 3


def test_non_matching_silenced_and_disabled_fire_nothing(store, rules, make_engine, webhook_server):
    engine = make_engine()
    engine.run_once()
    add_rule(rules, actions=[{"type": "webhook", "url": webhook_server.url}])
    add_rule(
        rules,
        name="off",
        condition="true",
        actions=[{"type": "webhook", "url": webhook_server.url}],
        enabled=False,
    )
    low, _ = create(store, title="low one", severity="low")
    silenced, _ = create(
        store, title="silenced", metadata={"database": "primary", "silenced": True}
    )
    other_tenant, _ = create(store, tenant="globex", title="other tenant")
    settle(engine)
    time.sleep(0.2)
    assert webhook_server.received == []
    for incident in (low, silenced):
        assert actions_of(store, incident.id) == []


def test_a_rule_fires_when_an_edit_makes_it_match(store, rules, make_engine, webhook_server):
    engine = make_engine()
    engine.run_once()
    add_rule(rules, actions=[{"type": "webhook", "url": webhook_server.url}])
    incident, _ = create(store, severity="high")
    settle(engine)
    assert webhook_server.received == []
    store.update_incident("acme", incident.id, {"severity": "critical"}, actor="t")
    settle(engine)
    assert len(webhook_server.wait_for(1)) == 1


def test_detected_incidents_from_the_dataflow_fire_rules(store, rules, make_engine, webhook_server):
    """The dataflow's incident updates go through ``Store.apply_incident_updates``; the engine
    follows the timeline, so they fire rules like the API's incidents (once per incident)."""
    engine = make_engine()
    engine.run_once()
    add_rule(
        rules,
        condition="kind == 'detected' and score >= 0.9 and series == 'cpu,host=a usage_user'",
        actions=[{"type": "webhook", "url": webhook_server.url}],
    )
    series = "cpu,host=a usage_user"

    def update(kind, i, score):
        return IncidentUpdate(
            type=kind,
            fingerprint=detected_fingerprint("acme", series),
            tenant="acme",
            series=series,
            title="cpu usage anomaly",
            category=Category.COMPUTE,
            severity=Severity.HIGH,
            score=score,
            peak_score=score,
            window_start_ns=i * 60 * S,
            window_end_ns=(i + 1) * 60 * S,
            observed=99.0,
        )

    [opened] = store.apply_incident_updates([update(IncidentEventType.OPENED, 1, 0.95)])
    store.apply_incident_updates([update(IncidentEventType.UPDATED, 2, 0.97)])
    store.apply_incident_updates([update(IncidentEventType.UPDATED, 3, 0.99)])
    settle(engine)
    received = webhook_server.wait_for(1)
    time.sleep(0.2)
    assert len(webhook_server.received) == 1
    assert received[0].json()["incident"]["id"] == opened.id


def test_failures_are_recorded_not_raised(store, rules, make_engine, webhook_server):
    engine = make_engine(automation_action_timeout_seconds=0.3)
    engine.run_once()
    webhook_server.status = 503
    add_rule(
        rules,
        actions=[
            {"type": "webhook", "url": webhook_server.url},
            {"type": "webhook", "url": "http://127.0.0.1:1/unreachable"},
            {"type": "escalate", "policy": "dba"},
            {"type": "remediate", "remediation": "restart_service"},
            "notify_dba",
            {"type": "email", "to": ["dba@example.org"]},  # no SMTP_HOST configured
        ],
    )
    incident, _ = create(store)
    settle(engine)
    entries = actions_of(store, incident.id)
    got = [(e.details["type"], e.details["outcome"], e.details["status_code"]) for e in entries]
    assert got == [
        ("webhook", "error", 503),
        ("webhook", "error", None),
        ("escalate", "not_configured", None),
        ("remediate", "not_configured", None),
        ("named", "not_configured", None),
        ("email", "not_configured", None),
    ]
    assert "HTTP 503" in entries[0].details["error"]
    assert "ConnectError" in entries[1].details["error"]
    assert "escalation is not configured" in entries[2].details["error"]
    assert "notify_dba" in entries[4].details["error"]
    assert "SMTP_HOST" in entries[5].details["error"]


def test_a_slow_webhook_times_out(store, rules, make_engine, webhook_server):
    engine = make_engine(automation_action_timeout_seconds=0.3)
    engine.run_once()
    webhook_server.delay_s = 1.5
    add_rule(rules, actions=[{"type": "webhook", "url": webhook_server.url}])
    incident, _ = create(store)
    started = time.monotonic()
    settle(engine)
    assert time.monotonic() - started < 1.4
    [entry] = actions_of(store, incident.id)
    assert entry.details["outcome"] == "error" and "timed out" in entry.details["error"]


def test_slack_and_named_actions_deliver_as_configured(store, rules, make_engine, webhook_server):
    named = (
        '{"notify_dba": {"type": "slack", "url": "' + webhook_server.url + '/slack",'
        ' "channel": "#dba"}}'
    )
    engine = make_engine(automation_actions=named)
    engine.run_once()
    add_rule(rules, actions=["notify_dba"])
    incident, _ = create(store)
    settle(engine)
    [request] = webhook_server.wait_for(1)
    body = request.json()
    assert request.path == "/slack"
    assert body["channel"] == "#dba"
    assert "Datenbank-Verbindungs-Timeout" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    [entry] = actions_of(store, incident.id)
    assert (entry.details["name"], entry.details["type"], entry.details["outcome"]) == (
        "notify_dba",
        "slack",
        "ok",
    )


def test_email_is_delivered_over_smtp(store, rules, make_engine, smtp_server):
    engine = make_engine(
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_starttls=False,
        smtp_from="incidents@example.org",
    )
    engine.run_once()
    add_rule(rules, actions=[{"type": "email", "to": ["dba@example.org"], "subject": "DB down"}])
    incident, _ = create(store)
    settle(engine)
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == "DB down"
    assert message["To"] == "dba@example.org"
    assert "Datenbank-Verbindungs-Timeout" in message.get_content()
    assert smtp_server.envelopes == [("incidents@example.org", ["dba@example.org"])]
    [entry] = actions_of(store, incident.id)
    assert entry.details["outcome"] == "ok" and entry.details["target"] == ["dba@example.org"]


def test_smtp_that_refuses_is_an_error(store, rules, make_engine):
    engine = make_engine(smtp_host="127.0.0.1", smtp_port=1, smtp_starttls=False)
    engine.run_once()
    add_rule(rules, actions=[{"type": "email", "to": ["dba@example.org"]}])
    incident, _ = create(store)
    settle(engine)
    [entry] = actions_of(store, incident.id)
    assert entry.details["outcome"] == "error" and "SMTP delivery failed" in entry.details["error"]


def test_the_cursor_survives_a_restart_and_a_first_start_skips_history(
    store, rules, make_engine, webhook_server
):
    add_rule(rules, actions=[{"type": "webhook", "url": webhook_server.url}])
    create(store, title="before the engine ever ran")
    first = make_engine()
    settle(first)
    first.stop()
    assert webhook_server.received == []  # history before the first start is not replayed
    create(store, title="while the engine was down")
    second = make_engine()
    settle(second)
    assert len(webhook_server.wait_for(1)) == 1
    assert webhook_server.received[0].json()["incident"]["title"] == "while the engine was down"


def test_the_background_thread_picks_changes_up_and_wake_is_immediate(
    store, rules, make_engine, webhook_server
):
    engine = make_engine(automation_poll_seconds=30)
    engine.start()
    deadline = time.monotonic() + 5
    while rules.cursor("in-process") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    add_rule(rules, actions=[{"type": "webhook", "url": webhook_server.url}])
    create(store)
    engine.wake()
    assert len(webhook_server.wait_for(1, timeout_s=5)) == 1  # long before the 30 s poll


def test_the_dispatcher_is_an_extension_point(store, rules, make_engine):
    calls = []

    def escalate(action, incident, rule):
        calls.append((action.policy, incident.id, rule.name))
        return ActionResult.ok()

    engine = make_engine()
    engine.dispatcher.register(ActionType.ESCALATE, escalate)
    engine.run_once()
    add_rule(rules, actions=[{"type": "escalate", "policy": "dba"}])
    incident, _ = create(store)
    settle(engine)
    assert calls == [("dba", incident.id, "db")]
    [entry] = actions_of(store, incident.id)
    assert entry.details["outcome"] == "ok"


def test_an_executor_that_raises_is_an_error_result():
    def broken(action, incident, rule):
        raise RuntimeError("bug")

    dispatcher = ActionDispatcher({ActionType.ESCALATE: broken})
    rule = AutomationRule("r", "acme", "r", SEED, ())
    result = dispatcher.run(
        PlannedAction(parse_action({"type": "escalate", "policy": "p"})), None, rule
    )
    assert result.outcome == "error" and "RuntimeError" in result.error
    assert result.duration_ms is not None
