"""/api/v1/escalation/policies: CRUD by id or name, roles, tenants, 422 and 409; and the issue's
outside check through the public API: a two-level escalation whose second level fires only when
nobody acknowledges (webhooks to a real local HTTP server)."""

import time

import pytest

from connectors.automation_store import AutomationStore

POLICIES = "/api/v1/escalation/policies"
SOME_ID = "0b6f1f9e-3f55-4c55-9d55-2f1b7c1d9a01"


def policy_body(url: str = "https://hooks.example.org/page", **changes) -> dict:
    body = {
        "name": "db-oncall",
        "levels": [
            {"after_seconds": 0, "actions": [{"type": "slack", "url": url}]},
            {"after_seconds": 300, "actions": ["notify_dba", {"type": "webhook", "url": url}]},
        ],
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


def timeline_types(client, auth, incident_id) -> list[str]:
    r = client.get(f"/api/v1/incidents/{incident_id}/timeline", headers=auth("viewer"))
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json()["items"]]


# --- CRUD -----------------------------------------------------------------------------------


def test_policies_crud_by_id_and_by_name(client, auth):
    r = client.post(POLICIES, json=policy_body(), headers=auth("responder"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "db-oncall"
    assert [lv["after_seconds"] for lv in created["levels"]] == [0, 300]
    assert [lv["level"] for lv in created["levels"]] == [1, 2]
    assert created["levels"][1]["actions"][0] == "notify_dba"
    assert created["created_by"] == "responder"

    listed = client.get(POLICIES, headers=auth("viewer")).json()
    assert listed["total"] == 1 and listed["items"][0] == created
    assert client.get(f"{POLICIES}/{created['id']}", headers=auth("viewer")).json() == created
    assert client.get(f"{POLICIES}/db-oncall", headers=auth("viewer")).json() == created

    replaced = policy_body(
        name="db-oncall-2", levels=[{"after_seconds": 60, "actions": ["create_incident"]}]
    )
    r = client.put(f"{POLICIES}/db-oncall", json=replaced, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"]
    assert r.json()["name"] == "db-oncall-2"
    assert r.json()["levels"] == [{"level": 1, "after_seconds": 60, "actions": ["create_incident"]}]
    assert client.get(f"{POLICIES}/db-oncall", headers=auth("viewer")).status_code == 404

    assert client.delete(f"{POLICIES}/db-oncall-2", headers=auth("responder")).status_code == 204
    assert client.get(f"{POLICIES}/{created['id']}", headers=auth("viewer")).status_code == 404
    assert (
        client.delete(f"{POLICIES}/{created['id']}", headers=auth("responder")).status_code == 404
    )
    assert (
        client.put(
            f"{POLICIES}/{SOME_ID}", json=policy_body(), headers=auth("responder")
        ).status_code
        == 404
    )


def test_webhook_headers_are_write_only(client, auth):
    body = policy_body(
        levels=[
            {
                "after_seconds": 0,
                "actions": [
                    {"type": "webhook", "url": "https://x.example/h", "headers": {"X-Token": "s3"}}
                ],
            }
        ]
    )
    r = client.post(POLICIES, json=body, headers=auth("responder"))
    assert r.status_code == 201, r.text
    assert r.json()["levels"][0]["actions"][0]["headers"] == {"X-Token": "***"}
    assert "s3" not in client.get(POLICIES, headers=auth("viewer")).text


def test_viewers_cannot_write_and_tenants_do_not_see_each_other(client, auth):
    assert client.post(POLICIES, json=policy_body(), headers=auth("viewer")).status_code == 403
    assert client.post(POLICIES, json=policy_body(), headers=auth("responder")).status_code == 201
    assert client.get(POLICIES, headers=auth("globex-viewer")).json()["total"] == 0
    assert client.get(f"{POLICIES}/db-oncall", headers=auth("globex-viewer")).status_code == 404
    r = client.delete(f"{POLICIES}/db-oncall", headers=auth("globex-responder"))
    assert r.status_code == 404
    # the same name in another tenant is fine
    assert (
        client.post(POLICIES, json=policy_body(), headers=auth("globex-responder")).status_code
        == 201
    )
    assert client.get(POLICIES).status_code == 401


def test_duplicate_names_are_409(client, auth):
    assert client.post(POLICIES, json=policy_body(), headers=auth("responder")).status_code == 201
    r = client.post(POLICIES, json=policy_body(), headers=auth("responder"))
    assert r.status_code == 409
    assert "db-oncall" in r.json()["detail"]
    other = client.post(POLICIES, json=policy_body(name="other"), headers=auth("responder"))
    r = client.put(
        f"{POLICIES}/{other.json()['id']}", json=policy_body(), headers=auth("responder")
    )
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ([], "at least 1"),
        ([{"after_seconds": -1, "actions": ["notify_dba"]}], "greater than or equal to 0"),
        (
            [
                {"after_seconds": 60, "actions": ["notify_dba"]},
                {"after_seconds": 60, "actions": ["notify_dba"]},
            ],
            "must increase",
        ),
        (
            [
                {"after_seconds": 60, "actions": ["notify_dba"]},
                {"after_seconds": 30, "actions": ["notify_dba"]},
            ],
            "must increase",
        ),
        ([{"after_seconds": 0, "actions": []}], "at least 1"),
        ([{"after_seconds": 0, "actions": [{"type": "shell", "cmd": "id"}]}], "shell"),
        ([{"after_seconds": 0, "actions": ["no_such_action"]}], "no_such_action"),
        (
            [{"after_seconds": 0, "actions": [{"type": "webhook", "url": "file:///etc/passwd"}]}],
            "URL",
        ),
        (
            [{"after_seconds": 0, "actions": [{"type": "escalate", "policy": "other"}]}],
            "cannot start another escalation",
        ),
        ([{"after_seconds": 0, "actions": ["notify_dba"], "repeat": True}], "repeat"),
    ],
)
def test_bad_policies_are_422_with_a_message(client, auth, levels, message):
    r = client.post(POLICIES, json=policy_body(levels=levels), headers=auth("responder"))
    assert r.status_code == 422, r.text
    assert message.lower() in r.text.lower()


def test_bad_names_are_422(client, auth):
    for name in ("", "has space", "x" * 65, "../etc"):
        r = client.post(POLICIES, json=policy_body(name=name), headers=auth("responder"))
        assert r.status_code == 422, name


# --- the outside check --------------------------------------------------------------


def two_level_setup(client, auth, webhook_url: str) -> None:
    """Escalation policy with webhooks after 0.5 s and 1.5 s, and a rule that starts it (once
    the engine has made its first pass: it starts at the newest timeline entry)."""
    engine = client.app.state.context.automation
    wait_until(
        lambda: AutomationStore(engine.store).cursor(engine.name) is not None,
        what="the engine's first pass",
    )
    body = {
        "name": "oncall",
        "levels": [
            {"after_seconds": 0.5, "actions": [{"type": "webhook", "url": f"{webhook_url}/first"}]},
            {
                "after_seconds": 1.5,
                "actions": [{"type": "webhook", "url": f"{webhook_url}/second"}],
            },
        ],
    }
    assert client.post(POLICIES, json=body, headers=auth("responder")).status_code == 201
    rule = {
        "name": "page-oncall",
        "condition": "severity == 'critical'",
        "actions": [{"type": "escalate", "policy": "oncall"}],
    }
    r = client.post("/api/v1/automation/rules", json=rule, headers=auth("responder"))
    assert r.status_code == 201, r.text


def test_outside_check_second_level_fires_only_when_nobody_acknowledges(
    client, auth, create_incident, webhook_server
):
    two_level_setup(client, auth, webhook_server.url)

    # nobody acknowledges: both levels arrive, in order
    ignored = create_incident(title="Disk full on db-1", severity="critical")
    received = webhook_server.wait_for(2, timeout_s=10)
    assert [r.path for r in received] == ["/first", "/second"]
    assert {r.json()["incident"]["id"] for r in received} == {ignored["id"]}
    wait_until(
        lambda: "escalation_completed" in timeline_types(client, auth, ignored["id"]),
        what="the escalation to complete",
    )

    # acknowledged after the first level: the second never arrives
    answered = create_incident(title="Replication lag on db-2", severity="critical")
    wait_until(lambda: len(webhook_server.received) == 3, what="the first level")
    assert webhook_server.received[2].path == "/first"
    r = client.post(f"/api/v1/incidents/{answered['id']}/acknowledge", headers=auth("responder"))
    assert r.status_code == 200
    wait_until(
        lambda: "escalation_cancelled" in timeline_types(client, auth, answered["id"]),
        what="the escalation to be cancelled",
    )
    time.sleep(1.5 + 0.5)
    assert [r.path for r in webhook_server.received] == ["/first", "/second", "/first"]
    r = client.get(f"/api/v1/incidents/{answered['id']}/timeline", headers=auth("viewer"))
    [cancelled] = [e for e in r.json()["items"] if e["type"] == "escalation_cancelled"]
    assert cancelled["details"]["by"] == "responder"
    assert cancelled["details"]["reason"] == "acknowledged"
    types = [e["type"] for e in r.json()["items"]]
    assert "escalation_completed" not in types
    assert types.count("escalation_level") == 1


def test_resolving_through_the_api_cancels_too(client, auth, create_incident, webhook_server):
    two_level_setup(client, auth, webhook_server.url)
    incident = create_incident(title="Disk full on db-3", severity="critical")
    wait_until(
        lambda: "escalation_started" in timeline_types(client, auth, incident["id"]),
        what="the escalation to start",
    )
    r = client.post(
        f"/api/v1/incidents/{incident['id']}/resolve",
        json={"resolution": "cleaned up"},
        headers=auth("responder"),
    )
    assert r.status_code == 200
    wait_until(
        lambda: "escalation_cancelled" in timeline_types(client, auth, incident["id"]),
        what="the escalation to be cancelled",
    )
    time.sleep(1.5 + 0.3)
    assert "/second" not in [r.path for r in webhook_server.received]
