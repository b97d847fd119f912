"""/api/v1/automation/rules: CRUD, roles, tenants, 422 for unsafe or bad rules, 409 for taken
names; and the issue's outside check through the public API, with a real local webhook."""

import json
import math
import time

import pytest

from connectors.automation_store import AutomationStore

RULES = "/api/v1/automation/rules"
SEED_CONDITION = "severity == 'critical' and category == 'database'"
SEED_INCIDENT = {
    "title": "Datenbank-Verbindungs-Timeout",
    "description": "Mehrere Datenbank-Verbindungs-Timeouts erkannt",
    "severity": "critical",
    "source": "monitoring",
    "metadata": {"database": "primary", "timeout_count": 15},
}
SOME_ID = "0b6f1f9e-3f55-4c55-9d55-2f1b7c1d9a01"


def rule_body(**changes) -> dict:
    body = {
        "name": "db-critical",
        "condition": SEED_CONDITION,
        "actions": ["restart_service", "notify_dba", "create_incident"],
        "enabled": True,
    }
    body.update(changes)
    return body


def wait_until(predicate, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def timeline(client, auth, incident_id, user="viewer") -> list[dict]:
    r = client.get(f"/api/v1/incidents/{incident_id}/timeline", headers=auth(user))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def engine_caught_up(app, store):
    """Wait until the engine has processed every timeline entry, then for its actions."""
    engine = app.state.context.automation
    changes = AutomationStore(store).changes_after(0, 100_000)
    newest = max((c.event_id for c in changes), default=0)
    wait_until(
        lambda: (AutomationStore(store).cursor(engine.name) or 0) >= newest,
        what="the engine to process the timeline",
    )
    engine.drain(10)


# --- CRUD -----------------------------------------------------------------------------------


def test_rules_crud_by_a_responder(client, auth):
    r = client.post(RULES, json=rule_body(), headers=auth("responder"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "db-critical"
    assert created["condition"] == SEED_CONDITION
    assert created["actions"] == ["restart_service", "notify_dba", "create_incident"]
    assert created["enabled"] is True and created["fire_on_repeat"] is False
    assert created["created_by"] == "responder"
    rule_url = f"{RULES}/{created['id']}"

    r = client.get(RULES, headers=auth("viewer"))
    assert r.status_code == 200
    assert r.json()["total"] == 1 and r.json()["items"][0]["id"] == created["id"]
    assert client.get(rule_url, headers=auth("viewer")).json() == created

    webhook = {"type": "webhook", "url": "https://hooks.example.org/x", "headers": {"X-Key": "k"}}
    replaced = rule_body(
        name="db-any", condition="category == 'database'", actions=[webhook], fire_on_repeat=True
    )
    r = client.put(rule_url, json=replaced, headers=auth("responder"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["condition"], body["fire_on_repeat"]) == (
        "db-any",
        "category == 'database'",
        True,
    )
    # Header values are write-only (they often carry tokens); the URL and method are shown.
    assert body["actions"] == [
        {
            "type": "webhook",
            "url": "https://hooks.example.org/x",
            "method": "POST",
            "headers": {"X-Key": "***"},
        }
    ]

    assert client.delete(rule_url, headers=auth("responder")).status_code == 204
    assert client.get(rule_url, headers=auth("viewer")).status_code == 404
    assert client.delete(rule_url, headers=auth("responder")).status_code == 404
    assert client.put(rule_url, json=replaced, headers=auth("responder")).status_code == 404


def test_every_action_type_is_accepted(client, auth):
    actions = [
        {"type": "webhook", "url": "http://127.0.0.1:9/hook", "method": "PUT"},
        {"type": "slack", "url": "https://hooks.slack.example/services/T/B/C", "channel": "#db"},
        {"type": "email", "to": ["dba@example.org"], "subject": "DB"},
        {"type": "escalate", "policy": "dba-oncall"},
        {"type": "remediate", "remediation": "restart_db"},
        "notify_dba",
    ]
    r = client.post(RULES, json=rule_body(actions=actions), headers=auth("responder"))
    assert r.status_code == 201, r.text
    shown = r.json()["actions"]
    assert [a if isinstance(a, str) else a["type"] for a in shown] == [
        "webhook",
        "slack",
        "email",
        "escalate",
        "remediate",
        "notify_dba",
    ]


def test_viewers_cannot_write_and_tenants_do_not_see_each_other(client, auth):
    assert client.post(RULES, json=rule_body(), headers=auth("viewer")).status_code == 403
    created = client.post(RULES, json=rule_body(), headers=auth("responder")).json()
    rule_url = f"{RULES}/{created['id']}"
    assert client.get(rule_url, headers=auth("globex-viewer")).status_code == 404
    assert client.get(RULES, headers=auth("globex-viewer")).json()["total"] == 0
    assert client.delete(rule_url, headers=auth("globex-responder")).status_code == 404
    assert client.delete(rule_url, headers=auth("viewer")).status_code == 403
    # the same name in another tenant is fine
    assert client.post(RULES, json=rule_body(), headers=auth("globex-responder")).status_code == 201


def test_duplicate_names_are_409(client, auth):
    assert client.post(RULES, json=rule_body(), headers=auth("responder")).status_code == 201
    r = client.post(RULES, json=rule_body(), headers=auth("admin"))
    assert r.status_code == 409
    assert "db-critical" in r.json()["detail"]
    other = client.post(RULES, json=rule_body(name="other"), headers=auth("responder")).json()
    r = client.put(f"{RULES}/{other['id']}", json=rule_body(), headers=auth("responder"))
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            rule_body(condition="__import__('os').system('touch /tmp/x')"),
            "function calls are not allowed: \\\"__import__('os').system('touch /tmp/x')\\\" "
            "at column 1",
        ),
        (rule_body(condition="().__class__.__bases__"), "'__class__' at column 4"),
        (rule_body(condition="severity == 'critical' and hostname == 'db1'"), "'hostname'"),
        (rule_body(condition="lambda: 1"), "lambdas are not allowed"),
        (rule_body(condition="severity = 'critical'"), "syntax error"),
        (rule_body(condition="x" * 2001), "at most 2000"),
        (rule_body(actions=[]), "at least 1 item"),
        (rule_body(actions=["notify_dbaa"]), "unknown named action 'notify_dbaa'"),
        (rule_body(actions=[{"type": "webhook", "url": "file:///etc/passwd"}]), "URL scheme"),
        (rule_body(actions=[{"type": "webhook", "url": "ftp://x.org/"}]), "URL scheme"),
        (rule_body(actions=[{"type": "webhook"}]), "Field required"),
        (rule_body(actions=[{"type": "shell", "command": "id"}]), "does not match any"),
        (rule_body(actions=[{"type": "email", "to": ["nobody"]}]), "not an e-mail"),
        (
            rule_body(
                actions=[{"type": "webhook", "url": "https://x.org", "headers": {"Host": "a"}}]
            ),
            "not allowed",
        ),
        (rule_body(name=""), "at least 1 character"),
        ({"condition": SEED_CONDITION, "actions": ["notify_dba"]}, "Field required"),
        (rule_body(priority=1), "Extra inputs are not permitted"),
    ],
)
def test_bad_rules_are_422_with_a_message_naming_the_problem(client, auth, body, message):
    r = client.post(RULES, json=body, headers=auth("responder"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and all({"loc", "msg", "type"} == set(d) for d in detail)
    assert message in json.dumps(detail), detail


def test_a_condition_error_points_at_the_condition_field(client, auth):
    r = client.post(RULES, json=rule_body(condition="tags[0] == 'db'"), headers=auth("responder"))
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "condition"]
    assert "subscripts are not allowed: 'tags[0]' at column 1" in problem["msg"]


def test_bad_rule_ids_are_422_or_404(client, auth):
    assert client.get(f"{RULES}/not-a-uuid", headers=auth("viewer")).status_code == 422
    assert client.get(f"{RULES}/{SOME_ID}", headers=auth("viewer")).status_code == 404


# --- the engine behind the API --------------------------------------------------------------


def test_outside_check_seed_rule_with_webhook_fires_once_and_code_is_refused(
    client, app, store, auth, webhook_server, tmp_path
):
    """The issue's check: a rule in the seed's words with a webhook; the seed's incident fires
    the webhook once even when posted twice; a condition that tries to run code is refused and
    never run."""
    marker = tmp_path / "pwned"
    r = client.post(
        RULES,
        json=rule_body(
            condition=f"__import__('os').system('touch {marker}')",
            actions=[{"type": "webhook", "url": webhook_server.url}],
        ),
        headers=auth("responder"),
    )
    assert r.status_code == 422
    assert "function calls are not allowed" in r.text and "column 1" in r.text
    assert not marker.exists()

    r = client.post(
        RULES,
        json={
            "name": "seed-rule",
            "condition": SEED_CONDITION,
            "actions": [{"type": "webhook", "url": f"{webhook_server.url}/incident-hook"}],
        },
        headers=auth("responder"),
    )
    assert r.status_code == 201, r.text

    first = client.post("/api/v1/incidents", json=SEED_INCIDENT, headers=auth("responder"))
    second = client.post("/api/v1/incidents", json=SEED_INCIDENT, headers=auth("responder"))
    assert first.status_code == 201 and second.status_code == 200
    incident = first.json()
    assert second.json()["id"] == incident["id"] and second.json()["repeat_count"] == 1
    assert incident["category"] == "database"

    [request] = webhook_server.wait_for(1)
    engine_caught_up(app, store)
    time.sleep(0.2)
    assert len(webhook_server.received) == 1  # once, although posted twice
    assert request.path == "/incident-hook"
    assert request.json()["incident"]["id"] == incident["id"]
    assert request.json()["rule"]["name"] == "seed-rule"

    entries = timeline(client, auth, incident["id"])
    types = [e["type"] for e in entries]
    assert types[0] == "created" and types.index("rule_fired") < types.index("action")
    assert sorted(types) == ["action", "created", "repeated", "rule_fired"]
    action = next(e for e in entries if e["type"] == "action")
    assert action["actor"] == "automation"
    assert action["details"]["outcome"] == "ok" and action["details"]["status_code"] == 200
    assert not marker.exists()

    metrics = client.get("/metrics").text
    assert 'automation_actions_total{outcome="ok",type="webhook"} 1.0' in metrics
    assert "automation_success_rate 1.0" in metrics


def test_the_incident_api_answers_at_once_while_actions_run(
    client, app, store, auth, webhook_server
):
    webhook_server.delay_s = 1.0
    client.post(
        RULES,
        json=rule_body(actions=[{"type": "webhook", "url": webhook_server.url}]),
        headers=auth("responder"),
    )
    started = time.monotonic()
    r = client.post("/api/v1/incidents", json=SEED_INCIDENT, headers=auth("responder"))
    assert r.status_code == 201
    assert time.monotonic() - started < 0.9  # the delivery is not on the request path
    webhook_server.wait_for(1)
    engine_caught_up(app, store)


def test_silenced_incidents_fire_no_actions(client, app, store, auth, webhook_server):
    client.post(
        RULES,
        json=rule_body(actions=[{"type": "webhook", "url": webhook_server.url}]),
        headers=auth("responder"),
    )
    silenced = {**SEED_INCIDENT, "metadata": {"database": "primary", "silenced": True}}
    r = client.post("/api/v1/incidents", json=silenced, headers=auth("responder"))
    assert r.status_code == 201
    engine_caught_up(app, store)
    time.sleep(0.2)
    assert webhook_server.received == []
    assert [e["type"] for e in timeline(client, auth, r.json()["id"])] == ["created"]


def test_seed_named_actions_without_definitions_are_not_configured(client, app, store, auth):
    client.post(RULES, json=rule_body(), headers=auth("responder"))
    incident = client.post("/api/v1/incidents", json=SEED_INCIDENT, headers=auth("responder"))
    engine_caught_up(app, store)
    actions = [e for e in timeline(client, auth, incident.json()["id"]) if e["type"] == "action"]
    assert [(a["details"]["name"], a["details"]["outcome"]) for a in actions] == [
        ("restart_service", "not_configured"),
        ("notify_dba", "not_configured"),
        ("create_incident", "not_configured"),
    ]
    metrics = client.get("/metrics").text
    assert 'automation_actions_total{outcome="not_configured",type="named"} 3.0' in metrics
    rate = [line for line in metrics.splitlines() if line.startswith("automation_success_rate ")]
    assert math.isnan(float(rate[0].split()[1]))  # nothing succeeded or failed yet


def test_automation_can_be_switched_off(settings_factory, store, webhook_server):
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from api.app import create_app
    from incidents.records import Role
    from incidents.security import create_access_token

    settings = settings_factory(automation_enabled=False)
    token = create_access_token(
        subject="responder",
        role=Role.RESPONDER,
        tenant="acme",
        secret=settings.jwt_secret.get_secret_value(),
        expires_in=timedelta(minutes=5),
    )
    headers = {"Authorization": f"Bearer {token}"}
    app = create_app(settings, store)
    assert app.state.context.automation is None
    with TestClient(app) as client:
        r = client.post(
            RULES,
            json=rule_body(actions=[{"type": "webhook", "url": webhook_server.url}]),
            headers=headers,
        )
        assert r.status_code == 201
        r = client.post("/api/v1/incidents", json=SEED_INCIDENT, headers=headers)
        assert r.status_code == 201
        time.sleep(0.5)
    assert webhook_server.received == []
