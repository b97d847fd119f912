"""Remediation runs over a real SQLite store: real executables written by the tests, a real
local HTTP server, an injected clock for the circuit breaker, and the automation engine firing
a rule's ``remediate`` action through the same code path."""

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.automation_engine import AutomationEngine
from connectors.automation_store import AutomationStore
from connectors.remediation_runner import (
    Remediator,
    RunNotFound,
    RunNotPending,
    UnknownRemediation,
)
from connectors.store import Store
from incidents.automation import ActionType, parse_action
from incidents.config import Settings
from incidents.records import IncidentEvent, TimelineType
from incidents.remediation import RunState, parse_remediations

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'remediation.db'}")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def calls(tmp_path) -> Path:
    return tmp_path / "calls.log"


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def tool(tmp_path, calls) -> str:
    """Appends its arguments (one line per argument, then a separator) to calls.log."""
    return script(
        tmp_path,
        "svcctl",
        f"for a in \"$@\"; do printf '%s\\n' \"$a\" >> '{calls}'; done\n"
        f"echo --- >> '{calls}'\necho \"restarted $2\"\n",
    )


def runs_logged(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    text = calls.read_text()
    return [chunk.strip("\n").split("\n") for chunk in text.split("---\n") if chunk.strip()]


def remediator(store, clock=None, sleep=None, **remediations) -> Remediator:
    allowed = sorted({r["executable"] for r in remediations.values() if r.get("kind") == "command"})
    parsed = parse_remediations(
        {"allowed_commands": allowed, "remediations": remediations},
        lambda p: Path(p).is_file(),
    )
    kwargs = {}
    if clock is not None:
        kwargs["clock"] = clock
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Remediator(store, parsed, **kwargs)


def restart(tool: str, **extra) -> dict:
    return {
        "kind": "command",
        "executable": tool,
        "args": ["restart", "{metadata.service}"],
        **extra,
    }


def new_incident(store, title="Datenbank-Verbindungs-Timeout", tenant="acme", **metadata):
    incident, _ = store.create_incident(
        IncidentEvent(title=title, severity="critical", metadata=metadata or {"service": "api"}),
        tenant=tenant,
        actor="test",
    )
    return incident


def timeline_types(store, incident) -> list[str]:
    return [str(e.type) for e in store.timeline(incident.tenant, incident.id)]


# --- commands ---------------------------------------------------------------------------------


def test_a_command_runs_with_its_validated_arguments(store, tool, calls):
    service = remediator(store, restart=restart(tool))
    incident = new_incident(store, service="billing-api")
    run = service.request(incident, "restart", actor="alice")
    assert run.state is RunState.SUCCEEDED
    assert (run.exit_code, run.attempts) == (0, 1)
    assert run.output.strip() == "restarted billing-api"
    assert runs_logged(calls) == [["restart", "billing-api"]]
    assert timeline_types(store, incident)[-3:] == [
        "remediation_requested",
        "remediation_started",
        "remediation_succeeded",
    ]
    assert AutomationStore(store).action_counts() == [("remediate", "ok", 1)]


@pytest.mark.parametrize(
    "value",
    ["; rm -rf /", "$(touch /tmp/x)", "`id`", "api\nreboot", "-rf", "x" * 200, "a && b"],
)
def test_an_injection_attempt_is_refused_and_nothing_runs(store, tool, calls, value):
    service = remediator(store, restart=restart(tool))
    incident = new_incident(store, service=value)
    run = service.request(incident, "restart", actor="alice")
    assert run.state is RunState.INVALID
    assert run.reason.startswith("refused: {metadata.service}")
    assert runs_logged(calls) == []
    assert timeline_types(store, incident)[-2:] == ["remediation_requested", "remediation_refused"]
    assert AutomationStore(store).action_counts() == [("remediate", "error", 1)]


def test_without_a_shell_metacharacters_are_one_literal_argument(store, tool, calls, tmp_path):
    """Even a permissive pattern cannot make a shell interpret a value: there is none."""
    marker = tmp_path / "pwned"
    service = remediator(
        store,
        restart=restart(
            tool, args=["restart", {"template": "{metadata.service}", "pattern": "[^\\n]{1,900}"}]
        ),
    )
    value = f"api; touch {marker} $(touch {marker}) `touch {marker}`"
    run = service.request(new_incident(store, service=value), "restart", actor="alice")
    assert run.state is RunState.SUCCEEDED
    assert runs_logged(calls) == [["restart", value]]
    assert not marker.exists()


def test_the_command_gets_a_minimal_environment(store, tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", "do-not-leak")
    env_tool = script(tmp_path, "showenv", "env\n")
    service = remediator(store, show={"kind": "command", "executable": env_tool})
    run = service.request(new_incident(store), "show", actor="alice")
    assert run.state is RunState.SUCCEEDED
    names = {line.split("=", 1)[0] for line in run.output.splitlines() if "=" in line}
    assert "JWT_SECRET" not in names
    assert names <= {"PATH", "LANG", "PWD", "SHLVL", "_", "OLDPWD"}


def test_a_command_that_exceeds_its_timeout_is_killed_and_fails(store, tmp_path):
    slow = script(tmp_path, "slow", "sleep 5\n")
    service = remediator(
        store, slow={"kind": "command", "executable": slow, "timeout_seconds": 0.3}
    )
    started = time.monotonic()
    run = service.request(new_incident(store), "slow", actor="alice")
    assert time.monotonic() - started < 3
    assert run.state is RunState.FAILED
    assert "timed out" in run.reason


def test_retries_with_backoff_until_it_succeeds(store, tmp_path):
    counter = tmp_path / "count"
    flaky = script(
        tmp_path,
        "flaky",
        f"n=$(cat '{counter}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{counter}'\n"
        'echo "attempt $n"; [ "$n" -ge 3 ]\n',
    )
    waits: list[float] = []
    service = remediator(
        store,
        sleep=waits.append,
        flaky={"kind": "command", "executable": flaky, "retries": 3, "retry_backoff_seconds": 0.5},
    )
    run = service.request(new_incident(store), "flaky", actor="alice")
    assert run.state is RunState.SUCCEEDED
    assert run.attempts == 3
    assert waits == [0.5, 1.0]
    assert run.output.strip() == "attempt 3"


def test_retries_run_out_and_the_run_fails_with_the_exit_code(store, tmp_path):
    failing = script(tmp_path, "failing", "echo broken >&2; exit 7\n")
    service = remediator(
        store, sleep=lambda s: None, bad={"kind": "command", "executable": failing, "retries": 2}
    )
    incident = new_incident(store)
    run = service.request(incident, "bad", actor="alice")
    assert (run.state, run.attempts, run.exit_code) == (RunState.FAILED, 3, 7)
    assert run.output.strip() == "broken"
    assert timeline_types(store, incident)[-1] == "remediation_failed"
    assert AutomationStore(store).action_counts() == [("remediate", "error", 1)]


# --- http -------------------------------------------------------------------------------------


def http_remediation(url: str, **extra) -> dict:
    return {
        "kind": "http",
        "method": "POST",
        "url": url + "/services/{metadata.service}/restart",
        "headers": {"Authorization": "Bearer s3cret"},
        "body": {"incident": "{id}", "title": "{title}"},
        **extra,
    }


def test_an_http_remediation_calls_the_target(store, webhook_server):
    service = remediator(store, hook=http_remediation(webhook_server.url))
    incident = new_incident(store, service="billing")
    run = service.request(incident, "hook", actor="alice")
    assert (run.state, run.status_code) == (RunState.SUCCEEDED, 200)
    [request] = webhook_server.received
    assert request.path == "/services/billing/restart"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.json() == {"incident": incident.id, "title": incident.title}
    assert "s3cret" not in json.dumps(run.plan)
    assert "s3cret" not in json.dumps([e.details for e in store.timeline("acme", incident.id)])


def test_an_http_error_is_retried_then_fails(store, webhook_server):
    webhook_server.status = 503
    service = remediator(
        store, sleep=lambda s: None, hook=http_remediation(webhook_server.url, retries=1)
    )
    run = service.request(new_incident(store), "hook", actor="alice")
    assert (run.state, run.status_code, run.attempts) == (RunState.FAILED, 503, 2)
    assert len(webhook_server.received) == 2
    assert run.reason.startswith("HTTP 503")


def test_an_http_call_that_exceeds_its_timeout_fails(store, webhook_server):
    webhook_server.delay_s = 1.0
    service = remediator(store, hook=http_remediation(webhook_server.url, timeout_seconds=0.2))
    run = service.request(new_incident(store), "hook", actor="alice")
    assert run.state is RunState.FAILED
    assert "timed out" in run.reason


# --- dry run, approval ------------------------------------------------------------------------


def test_a_dry_run_plans_and_records_but_runs_nothing(store, tool, calls):
    service = remediator(store, restart=restart(tool), always_dry=restart(tool, dry_run=True))
    incident = new_incident(store)
    run = service.request(incident, "restart", actor="alice", dry_run=True)
    assert run.state is RunState.DRY_RUN and run.dry_run
    assert run.plan == {"kind": "command", "argv": [tool, "restart", "api"]}
    configured = service.request(incident, "always_dry", actor="alice", dry_run=False)
    assert configured.state is RunState.DRY_RUN  # a configured dry run cannot be made real
    assert runs_logged(calls) == []
    assert AutomationStore(store).action_counts() == [("remediate", "dry_run", 2)]


def test_a_run_that_needs_approval_waits_and_runs_once_approved(store, tool, calls):
    clock = Clock()
    service = remediator(store, clock=clock, restart=restart(tool, requires_approval=True))
    incident = new_incident(store)
    pending = service.request(incident, "restart", actor="alice")
    assert pending.state is RunState.PENDING_APPROVAL
    assert runs_logged(calls) == []
    listed = service.runs.list_runs("acme", incident_id=incident.id)
    assert [r.id for r in listed] == [pending.id]

    clock.advance(minutes=2)
    done = service.approve("acme", pending.id, actor="bob")
    assert done.state is RunState.SUCCEEDED
    assert (done.decided_by, done.decided_at) == ("bob", clock.now)
    assert runs_logged(calls) == [["restart", "api"]]
    with pytest.raises(RunNotPending):
        service.approve("acme", pending.id, actor="bob")
    assert runs_logged(calls) == [["restart", "api"]]
    assert timeline_types(store, incident)[-4:] == [
        "remediation_requested",
        "remediation_approved",
        "remediation_started",
        "remediation_succeeded",
    ]
    assert AutomationStore(store).action_counts() == [("remediate", "ok", 1)]


def test_a_rejected_run_never_runs(store, tool, calls):
    service = remediator(store, restart=restart(tool, requires_approval=True))
    incident = new_incident(store)
    pending = service.request(incident, "restart", actor="alice")
    rejected = service.reject("acme", pending.id, actor="bob", reason="not during business hours")
    assert rejected.state is RunState.REJECTED
    assert rejected.reason == "not during business hours"
    with pytest.raises(RunNotPending):
        service.approve("acme", pending.id, actor="bob")
    assert runs_logged(calls) == []
    assert timeline_types(store, incident)[-1] == "remediation_rejected"


def test_runs_of_another_tenant_cannot_be_decided(store, tool):
    service = remediator(store, restart=restart(tool, requires_approval=True))
    pending = service.request(new_incident(store), "restart", actor="alice")
    with pytest.raises(RunNotFound):
        service.approve("globex", pending.id, actor="mallory")
    with pytest.raises(UnknownRemediation):
        service.request(new_incident(store), "nope", actor="alice")


# --- circuit breaker --------------------------------------------------------------------------


def test_the_breaker_opens_per_incident(store, tool, calls):
    service = remediator(store, restart=restart(tool, max_runs_per_incident=2))
    first, second = new_incident(store, title="one"), new_incident(store, title="two")
    states = [service.request(first, "restart", actor="a").state for _ in range(3)]
    assert states == [RunState.SUCCEEDED, RunState.SUCCEEDED, RunState.CIRCUIT_OPEN]
    refused = service.runs.list_runs("acme", incident_id=first.id)[0]
    assert "2 times for this incident" in refused.reason
    assert timeline_types(store, first)[-1] == "remediation_refused"
    assert service.request(second, "restart", actor="a").state is RunState.SUCCEEDED
    assert len(runs_logged(calls)) == 3


def test_the_breaker_opens_per_hour_and_closes_an_hour_later(store, tool, calls):
    clock = Clock()
    service = remediator(store, clock=clock, restart=restart(tool, max_runs_per_hour=2))
    incidents = [new_incident(store, title=f"incident {i}") for i in range(4)]
    assert service.request(incidents[0], "restart", actor="a").state is RunState.SUCCEEDED
    clock.advance(minutes=30)
    assert service.request(incidents[1], "restart", actor="a").state is RunState.SUCCEEDED
    clock.advance(minutes=29)
    refused = service.request(incidents[2], "restart", actor="a")
    assert refused.state is RunState.CIRCUIT_OPEN
    assert "in the last hour" in refused.reason
    clock.advance(minutes=2)  # the first run is now more than an hour old
    assert service.request(incidents[3], "restart", actor="a").state is RunState.SUCCEEDED
    assert len(runs_logged(calls)) == 3


def test_dry_runs_and_refused_runs_do_not_count_for_the_breaker(store, tool):
    service = remediator(store, restart=restart(tool, max_runs_per_incident=1))
    incident = new_incident(store)
    service.request(incident, "restart", actor="a", dry_run=True)
    service.request(incident, "restart", actor="a", dry_run=True)
    assert service.request(incident, "restart", actor="a").state is RunState.SUCCEEDED
    assert service.request(incident, "restart", actor="a").state is RunState.CIRCUIT_OPEN
    assert service.request(incident, "restart", actor="a").state is RunState.CIRCUIT_OPEN


def test_pending_runs_count_for_the_breaker(store, tool, calls):
    service = remediator(
        store, restart=restart(tool, requires_approval=True, max_runs_per_incident=1)
    )
    incident = new_incident(store)
    assert service.request(incident, "restart", actor="a").state is RunState.PENDING_APPROVAL
    assert service.request(incident, "restart", actor="a").state is RunState.CIRCUIT_OPEN


# --- automation -------------------------------------------------------------------------------


def test_a_rule_with_a_remediate_action_runs_it_through_the_same_path(store, tool, calls):
    service = remediator(store, restart=restart(tool))
    engine = AutomationEngine(store, Settings(environment="test"))
    engine.dispatcher.register(ActionType.REMEDIATE, service.execute_action)
    try:
        rules = AutomationStore(store)
        rules.create_rule(
            "acme",
            name="restart-db",
            condition="category == 'database' and metadata.service == 'api'",
            actions=[parse_action({"type": "remediate", "remediation": "restart"})],
        )
        engine.run_once()  # positions the cursor
        incident = new_incident(store)
        engine.run_once()
        engine.drain(10)
        assert runs_logged(calls) == [["restart", "api"]]
        [run] = service.runs.list_runs("acme", incident_id=incident.id)
        assert run.state is RunState.SUCCEEDED and run.requested_by == "automation"
        assert run.rule_id == rules.list_rules("acme")[0].id
        entries = store.timeline("acme", incident.id)
        types = [str(e.type) for e in entries]
        assert types[-5:] == [
            "rule_fired",
            "remediation_requested",
            "remediation_started",
            "remediation_succeeded",
            "action",
        ]
        assert entries[-1].details["outcome"] == "ok"
        assert rules.action_counts() == [("remediate", "ok", 1)]  # counted once
    finally:
        engine.stop()


def test_a_rule_naming_an_unknown_remediation_records_not_configured(store):
    service = remediator(store)
    engine = AutomationEngine(store, Settings(environment="test"))
    engine.dispatcher.register(ActionType.REMEDIATE, service.execute_action)
    try:
        rules = AutomationStore(store)
        rules.create_rule(
            "acme",
            name="r",
            condition="severity == 'critical'",
            actions=[parse_action({"type": "remediate", "remediation": "missing"})],
        )
        engine.run_once()
        incident = new_incident(store)
        engine.run_once()
        engine.drain(10)
        last = store.timeline("acme", incident.id)[-1]
        assert last.type is TimelineType.ACTION
        assert last.details["outcome"] == "not_configured"
        assert "no remediation named 'missing'" in last.details["error"]
    finally:
        engine.stop()
