"""Escalation over a real SQLite store: APScheduler with its SQLAlchemy job store on the same
database, the automation engine's thread, and webhooks delivered to a real local HTTP server."""

import time

import pytest
import sqlalchemy as sa

from connectors.automation_actions import ActionDispatcher
from connectors.automation_engine import AutomationEngine
from connectors.automation_store import AutomationStore
from connectors.escalation import EscalationService, attach_escalation
from connectors.escalation_store import EscalationStore, PolicyNameTaken
from connectors.store import Store
from incidents.automation import parse_action
from incidents.config import Settings
from incidents.escalation import EscalationStatus, parse_levels
from incidents.lifecycle import detected_fingerprint
from incidents.records import IncidentEvent, TimelineType
from incidents.schemas import Category, IncidentEventType, IncidentUpdate, Severity

S = 1_000_000_000
LEVEL_1_S = 0.5
LEVEL_2_S = 1.5


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'escalation.db'}")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def make_engine(store):
    """Engines with escalation attached; stopped at the end of the test (if still running)."""
    engines = []

    def make() -> AutomationEngine:
        settings = Settings(
            environment="test",
            automation_poll_seconds=0.05,
            automation_action_timeout_seconds=2.0,
        )
        engine = AutomationEngine(store, settings)
        attach_escalation(engine)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def two_levels(server_url: str, first: float = LEVEL_1_S, second: float = LEVEL_2_S):
    return parse_levels(
        [
            {
                "after_seconds": first,
                "actions": [{"type": "webhook", "url": f"{server_url}/1"}],
            },
            {
                "after_seconds": second,
                "actions": [{"type": "webhook", "url": f"{server_url}/2"}],
            },
        ],
        {},
    )


def setup_escalation(store: Store, server_url: str, tenant: str = "acme", **times):
    """A policy with two webhook levels and a rule that starts it for critical incidents."""
    policy = EscalationStore(store).create_policy(
        tenant, name="oncall", levels=two_levels(server_url, **times), actor="t"
    )
    AutomationStore(store).create_rule(
        tenant,
        name="page",
        condition="severity == 'critical'",
        actions=[parse_action({"type": "escalate", "policy": "oncall"})],
    )
    return policy


def create_incident(store: Store, tenant: str = "acme", **fields):
    event = IncidentEvent(
        **{"title": "Datenbank-Verbindungs-Timeout", "severity": "critical", **fields}
    )
    incident, _ = store.create_incident(event, tenant=tenant, actor="t")
    return incident


def wait_until(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def start(engine: AutomationEngine) -> None:
    """Start and wait for the engine's first pass: a first start begins at the newest timeline
    entry, so an incident created before that pass would be skipped."""
    engine.start()
    assert wait_until(lambda: AutomationStore(engine.store).cursor(engine.name) is not None)


def entries(store, incident_id, kind, tenant="acme"):
    return [e for e in store.timeline(tenant, incident_id) if e.type is kind]


def paths(server) -> list[str]:
    return [r.path for r in server.received]


def job_count(store) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM escalation_jobs").scalar_one()


# --- policies in the store ------------------------------------------------------------------


def test_policies_are_stored_per_tenant_by_unique_name(store):
    policies = EscalationStore(store)
    levels = parse_levels([{"after_seconds": 0, "actions": ["notify_dba"]}], {})
    first = policies.create_policy("acme", name="db", levels=levels)
    policies.create_policy("globex", name="db", levels=levels)  # other tenant: fine
    with pytest.raises(PolicyNameTaken):
        policies.create_policy("acme", name="db", levels=levels)
    assert policies.find_policy("acme", first.id) == first
    assert policies.find_policy("acme", "db") == first
    assert policies.find_policy("globex", first.id) is None
    other = policies.create_policy("acme", name="other", levels=levels)
    with pytest.raises(PolicyNameTaken):
        policies.replace_policy("acme", other.id, name="db", levels=levels)
    assert [p.name for p in policies.list_policies("acme")] == ["db", "other"]
    assert policies.delete_policy("acme", other.id) is True
    assert policies.delete_policy("acme", other.id) is False


# --- firing ---------------------------------------------------------------------------------


def test_both_levels_fire_in_order_when_nobody_acknowledges(store, make_engine, webhook_server):
    policy = setup_escalation(store, webhook_server.url)
    engine = make_engine()
    start(engine)
    started = time.monotonic()
    incident = create_incident(store)
    engine.wake()

    received = webhook_server.wait_for(2, timeout_s=10)
    assert [r.path for r in received] == ["/1", "/2"]
    assert time.monotonic() - started >= LEVEL_2_S - 0.05
    body = received[1].json()
    assert body["incident"]["id"] == incident.id
    assert body["rule"]["name"] == "oncall (escalation level 2)"

    assert wait_until(lambda: entries(store, incident.id, TimelineType.ESCALATION_COMPLETED))
    [started_entry] = entries(store, incident.id, TimelineType.ESCALATION_STARTED)
    assert started_entry.details["policy"] == "oncall"
    assert started_entry.details["policy_id"] == policy.id
    assert started_entry.details["rule"] == "page"
    assert [lv["after_seconds"] for lv in started_entry.details["levels"]] == [0.5, 1.5]
    levels = entries(store, incident.id, TimelineType.ESCALATION_LEVEL)
    assert [e.details["level"] for e in levels] == [1, 2]
    level_actions = [
        e.details
        for e in entries(store, incident.id, TimelineType.ACTION)
        if "escalation_id" in e.details
    ]
    assert [(a["level"], a["outcome"], a["status_code"]) for a in level_actions] == [
        (1, "ok", 200),
        (2, "ok", 200),
    ]
    counts = dict(((t, o), n) for t, o, n in AutomationStore(store).action_counts())
    assert counts[("webhook", "ok")] == 2  # the levels' webhooks count for the success rate
    assert counts[("escalate", "ok")] == 1  # the rule's escalate action itself
    [escalation] = EscalationStore(store).for_incident("acme", incident.id)
    assert escalation.status is EscalationStatus.COMPLETED
    assert job_count(store) == 0
    time.sleep(0.3)
    assert paths(webhook_server) == ["/1", "/2"]  # nothing fires twice


def test_acknowledging_after_level_one_cancels_level_two(store, make_engine, webhook_server):
    setup_escalation(store, webhook_server.url)
    engine = make_engine()
    start(engine)
    incident = create_incident(store)
    engine.wake()

    assert [r.path for r in webhook_server.wait_for(1, timeout_s=5)] == ["/1"]
    assert job_count(store) == 1  # level 2 is waiting in the persistent job store
    store.acknowledge("acme", incident.id, actor="alice")
    engine.wake()

    [cancelled] = wait_until(lambda: entries(store, incident.id, TimelineType.ESCALATION_CANCELLED))
    assert cancelled.details["by"] == "alice"
    assert cancelled.details["reason"] == "acknowledged"
    assert cancelled.details["levels_cancelled"] == [2]
    assert wait_until(lambda: job_count(store) == 0)  # its job is removed right after
    time.sleep(LEVEL_2_S + 0.5)
    assert paths(webhook_server) == ["/1"]  # level 2 never arrived
    assert not entries(store, incident.id, TimelineType.ESCALATION_COMPLETED)
    [escalation] = EscalationStore(store).for_incident("acme", incident.id)
    assert (escalation.status, escalation.cancelled_by) == (EscalationStatus.CANCELLED, "alice")


def test_the_dataflow_auto_resolving_the_incident_cancels_its_escalation(
    store, make_engine, webhook_server
):
    setup_escalation(store, webhook_server.url)
    engine = make_engine()
    start(engine)
    series = "cpu,host=a usage_user"

    def update(kind, i):
        return IncidentUpdate(
            type=kind,
            fingerprint=detected_fingerprint("acme", series),
            tenant="acme",
            series=series,
            title="cpu usage anomaly",
            category=Category.COMPUTE,
            severity=Severity.CRITICAL,
            score=0.99,
            peak_score=0.99,
            window_start_ns=i * 60 * S,
            window_end_ns=(i + 1) * 60 * S,
            observed=99.0,
        )

    [incident] = store.apply_incident_updates([update(IncidentEventType.OPENED, 1)])
    assert wait_until(lambda: entries(store, incident.id, TimelineType.ESCALATION_STARTED))
    store.apply_incident_updates([update(IncidentEventType.RESOLVED, 2)])
    [cancelled] = wait_until(lambda: entries(store, incident.id, TimelineType.ESCALATION_CANCELLED))
    assert cancelled.details["reason"] == "resolved"
    assert cancelled.details["by"] == "auto"
    time.sleep(LEVEL_2_S + 0.3)
    assert webhook_server.received == []


def test_a_level_checks_the_incident_when_it_fires(store, webhook_server):
    """Acknowledged by a process whose change no engine has read: the job itself sees the
    state and cancels instead of firing."""
    policy = EscalationStore(store).create_policy(
        "acme", name="oncall", levels=two_levels(webhook_server.url)
    )
    incident = create_incident(store)
    escalation = EscalationStore(store).start(incident, policy, source={"rule": "manual"})
    store.acknowledge("acme", incident.id, actor="bob")
    dispatcher = ActionDispatcher.from_settings(Settings(environment="test"))
    try:
        assert EscalationService(store, dispatcher, {}).fire_level(escalation.id, 0) == []
    finally:
        dispatcher.close()
    [cancelled] = entries(store, incident.id, TimelineType.ESCALATION_CANCELLED)
    assert (cancelled.details["by"], cancelled.details["reason"]) == ("bob", "acknowledged")
    assert cancelled.details["levels_cancelled"] == [1, 2]
    assert webhook_server.received == []


def test_a_level_fires_once_and_a_late_level_brings_the_earlier_ones(store, webhook_server):
    policy = EscalationStore(store).create_policy(
        "acme", name="oncall", levels=two_levels(webhook_server.url)
    )
    incident = create_incident(store)
    escalation = EscalationStore(store).start(incident, policy, source={"rule": "manual"})
    assert EscalationStore(store).start(incident, policy, source={}) is None  # already running
    dispatcher = ActionDispatcher.from_settings(Settings(environment="test"))
    service = EscalationService(store, dispatcher, {})
    try:
        assert service.fire_level(escalation.id, 1) == [0, 1]  # level 2 due: level 1 first
        assert service.fire_level(escalation.id, 0) == []
        assert service.fire_level(escalation.id, 1) == []
    finally:
        dispatcher.close()
    assert paths(webhook_server) == ["/1", "/2"]
    assert len(entries(store, incident.id, TimelineType.ESCALATION_COMPLETED)) == 1


def test_a_pending_level_survives_a_restart_and_fires_once(store, make_engine, webhook_server):
    level_2_s = 2.5  # more room than 1.5 s to stop the first engine in between on a busy machine
    setup_escalation(store, webhook_server.url, second=level_2_s)
    first = make_engine()
    start(first)
    started = time.monotonic()
    incident = create_incident(store)
    first.wake()
    assert [r.path for r in webhook_server.wait_for(1, timeout_s=5)] == ["/1"]
    first.stop()  # the process goes away before level 2 is due
    assert time.monotonic() - started < level_2_s, "level 1 came too late for this test"
    assert job_count(store) == 1
    time.sleep(max(0.0, started + level_2_s + 0.3 - time.monotonic()))
    assert paths(webhook_server) == ["/1"]  # nobody ran it while the process was down

    second = make_engine()  # a new process on the same database: the job store has level 2
    start(second)
    received = webhook_server.wait_for(2, timeout_s=5)
    assert [r.path for r in received] == ["/1", "/2"]
    assert wait_until(lambda: entries(store, incident.id, TimelineType.ESCALATION_COMPLETED))
    time.sleep(0.5)
    assert paths(webhook_server) == ["/1", "/2"]  # once
    assert job_count(store) == 0
    second.stop()


def test_an_unknown_policy_is_recorded_as_not_configured(store, make_engine):
    AutomationStore(store).create_rule(
        "acme",
        name="page",
        condition="severity == 'critical'",
        actions=[parse_action({"type": "escalate", "policy": "missing"})],
    )
    engine = make_engine()
    start(engine)
    incident = create_incident(store)
    engine.wake()
    [action] = wait_until(lambda: entries(store, incident.id, TimelineType.ACTION))
    assert action.details["outcome"] == "not_configured"
    assert "missing" in action.details["error"]
    assert not entries(store, incident.id, TimelineType.ESCALATION_STARTED)


def test_the_job_table_is_the_migrations(store):
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("escalation_jobs")}
    assert columns == {"id", "next_run_time", "job_state"}


def test_a_running_escalation_without_jobs_gets_them_back_at_start(
    store, make_engine, webhook_server
):
    """A crash between recording an escalation and scheduling it: the next start schedules it."""
    policy = EscalationStore(store).create_policy(
        "acme", name="oncall", levels=two_levels(webhook_server.url, first=0.0, second=0.2)
    )
    incident = create_incident(store)
    EscalationStore(store).start(incident, policy, source={"rule": "manual"})
    assert job_count(store) == 0
    start(make_engine())
    assert [r.path for r in webhook_server.wait_for(2, timeout_s=5)] == ["/1", "/2"]
    assert wait_until(lambda: entries(store, incident.id, TimelineType.ESCALATION_COMPLETED))
