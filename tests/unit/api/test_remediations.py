"""The remediation endpoints over the real app, a real SQLite file and a real executable."""

import json
import shutil
import stat
import time
from pathlib import Path

import pytest

CALLS = "calls.log"


@pytest.fixture
def tool(tmp_path) -> str:
    path = tmp_path / "svcctl"
    calls = tmp_path / CALLS
    path.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '%s\\n' \"$a\" >> '{calls}'; done\n"
        f"echo --- >> '{calls}'\necho \"restarted $2\"\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def runs_logged(tmp_path: Path) -> list[list[str]]:
    calls = tmp_path / CALLS
    if not calls.exists():
        return []
    return [c.strip("\n").split("\n") for c in calls.read_text().split("---\n") if c.strip()]


@pytest.fixture
def settings(tmp_path, template_db, settings_factory, tool):
    """The conftest's settings plus REMEDIATIONS (overrides its ``settings`` fixture)."""
    shutil.copy(template_db, tmp_path / "api.db")
    config = {
        "allowed_commands": [tool],
        "remediations": {
            "restart_service": {
                "kind": "command",
                "executable": tool,
                "args": ["restart", "{metadata.service}"],
                "max_runs_per_incident": 2,
            },
            "failover": {
                "kind": "command",
                "executable": tool,
                "args": ["failover", "{metadata.database}"],
                "requires_approval": True,
            },
            "ticket": {
                "kind": "http",
                "url": "https://tickets.example.org/api?token=abc",
                "headers": {"Authorization": "Bearer abc"},
                "dry_run": True,
            },
        },
    }
    return settings_factory(remediations=json.dumps(config))


def remediate(client, auth, incident_id, user="responder", **body):
    return client.post(f"/api/v1/incidents/{incident_id}/remediate", json=body, headers=auth(user))


def timeline(client, auth, incident_id) -> list[str]:
    r = client.get(f"/api/v1/incidents/{incident_id}/timeline", headers=auth("viewer"))
    return [e["type"] for e in r.json()["items"]]


def test_the_catalogue_lists_remediations_without_secrets(client, auth):
    r = client.get("/api/v1/remediations", headers=auth("viewer"))
    assert r.status_code == 200
    items = {i["name"]: i for i in r.json()["items"]}
    assert set(items) == {"restart_service", "failover", "ticket"}
    assert items["ticket"]["headers"] == {"Authorization": "***"}
    assert items["ticket"]["url"] == "https://tickets.example.org/api"
    assert items["failover"]["requires_approval"] is True
    assert "abc" not in r.text
    config = client.get("/api/v1/admin/config", headers=auth("admin")).json()
    assert "abc" not in json.dumps(config)


def test_a_responder_runs_a_remediation(client, auth, create_incident, tmp_path):
    incident = create_incident(metadata={"service": "billing"})
    r = remediate(client, auth, incident["id"], remediation="restart_service")
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["state"] == "succeeded" and run["requested_by"] == "responder"
    assert run["output"].strip() == "restarted billing"
    assert runs_logged(tmp_path) == [["restart", "billing"]]
    assert timeline(client, auth, incident["id"])[-3:] == [
        "remediation_requested",
        "remediation_started",
        "remediation_succeeded",
    ]
    listed = client.get(
        "/api/v1/remediations/runs", params={"incident_id": incident["id"]}, headers=auth("viewer")
    ).json()
    assert [i["id"] for i in listed["items"]] == [run["id"]]
    metrics = client.get("/metrics").text
    assert "automation_success_rate 1.0" in metrics


def test_bad_requests(client, auth, create_incident, tmp_path):
    incident = create_incident(metadata={"service": "billing"})
    missing = "00000000-0000-4000-8000-000000000000"
    assert remediate(client, auth, missing, remediation="restart_service").status_code == 404
    unknown = remediate(client, auth, incident["id"], remediation="reboot_everything")
    assert unknown.status_code == 422
    assert "no remediation named 'reboot_everything'" in unknown.text
    assert remediate(client, auth, incident["id"], remediation="x", shell=True).status_code == 422
    assert (
        remediate(client, auth, incident["id"], user="viewer", remediation="restart_service")
    ).status_code == 403
    other_tenant = remediate(
        client, auth, incident["id"], user="globex-responder", remediation="restart_service"
    )
    assert other_tenant.status_code == 404
    assert runs_logged(tmp_path) == []


def test_a_refused_value_is_a_422_with_the_recorded_run_and_nothing_runs(
    client, auth, create_incident, tmp_path
):
    incident = create_incident(metadata={"service": "billing; rm -rf /"})
    r = remediate(client, auth, incident["id"], remediation="restart_service")
    assert r.status_code == 422
    body = r.json()
    assert body["run"]["state"] == "invalid"
    assert "{metadata.service}" in body["detail"]
    assert runs_logged(tmp_path) == []
    assert timeline(client, auth, incident["id"])[-1] == "remediation_refused"


def test_the_open_breaker_is_a_429_with_the_refused_run(client, auth, create_incident, tmp_path):
    incident = create_incident(metadata={"service": "billing"})
    for _ in range(2):
        assert (
            remediate(client, auth, incident["id"], remediation="restart_service").status_code
            == 201
        )
    r = remediate(client, auth, incident["id"], remediation="restart_service")
    assert r.status_code == 429
    assert r.json()["run"]["state"] == "circuit_open"
    assert "at most 2" in r.json()["detail"]
    assert len(runs_logged(tmp_path)) == 2


def test_dry_runs(client, auth, create_incident, tmp_path):
    incident = create_incident(metadata={"service": "billing"})
    r = remediate(client, auth, incident["id"], remediation="restart_service", dry_run=True)
    assert r.status_code == 201
    assert r.json()["state"] == "dry_run"
    assert r.json()["plan"]["argv"][1:] == ["restart", "billing"]
    configured = remediate(client, auth, incident["id"], remediation="ticket")
    assert configured.json()["state"] == "dry_run"
    assert configured.json()["plan"]["url"] == "https://tickets.example.org/api"
    assert runs_logged(tmp_path) == []


def test_approval_flow(client, auth, create_incident, tmp_path):
    incident = create_incident(metadata={"database": "primary"})
    pending = remediate(client, auth, incident["id"], remediation="failover").json()
    assert pending["state"] == "pending_approval"
    assert runs_logged(tmp_path) == []
    waiting = client.get(
        "/api/v1/remediations/runs", params={"state": "pending_approval"}, headers=auth("viewer")
    ).json()
    assert [i["id"] for i in waiting["items"]] == [pending["id"]]

    base = f"/api/v1/remediations/runs/{pending['id']}"
    assert client.post(f"{base}/approve", headers=auth("viewer")).status_code == 403
    assert client.post(f"{base}/approve", headers=auth("globex-responder")).status_code == 404
    approved = client.post(f"{base}/approve", headers=auth("admin"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "succeeded"
    assert approved.json()["decided_by"] == "admin"
    assert runs_logged(tmp_path) == [["failover", "primary"]]
    assert client.post(f"{base}/approve", headers=auth("admin")).status_code == 409
    assert client.post(f"{base}/reject", headers=auth("admin")).status_code == 409
    assert client.get(base, headers=auth("viewer")).json()["state"] == "succeeded"
    assert "remediation_approved" in timeline(client, auth, incident["id"])


def test_rejection(client, auth, create_incident, tmp_path):
    incident = create_incident(metadata={"database": "primary"})
    pending = remediate(client, auth, incident["id"], remediation="failover").json()
    base = f"/api/v1/remediations/runs/{pending['id']}"
    r = client.post(
        f"{base}/reject", json={"reason": "replica is behind"}, headers=auth("responder")
    )
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["reason"]) == ("rejected", "replica is behind")
    assert client.post(f"{base}/approve", headers=auth("admin")).status_code == 409
    assert runs_logged(tmp_path) == []
    assert timeline(client, auth, incident["id"])[-1] == "remediation_rejected"
    missing = "/api/v1/remediations/runs/00000000-0000-4000-8000-000000000000/approve"
    assert client.post(missing, headers=auth("admin")).status_code == 404


def test_a_rule_runs_a_remediation_in_the_app(client, auth, create_incident, app, tmp_path):
    rule = {
        "name": "restart-on-db",
        "condition": "category == 'database'",
        "actions": [{"type": "remediate", "remediation": "restart_service"}],
    }
    assert (
        client.post("/api/v1/automation/rules", json=rule, headers=auth("responder")).status_code
        == 201
    )
    incident = create_incident(metadata={"database": "primary", "service": "pg"})
    engine = app.state.context.automation  # running in the app: woken by the new incident
    deadline = time.monotonic() + 10
    while "remediation_succeeded" not in timeline(client, auth, incident["id"]):
        assert time.monotonic() < deadline, timeline(client, auth, incident["id"])
        engine.wake()
        time.sleep(0.05)
    assert runs_logged(tmp_path) == [["restart", "pg"]]
    runs = client.get(
        "/api/v1/remediations/runs", params={"incident_id": incident["id"]}, headers=auth("viewer")
    ).json()["items"]
    assert [r["requested_by"] for r in runs] == ["automation"]
    assert "remediation_succeeded" in timeline(client, auth, incident["id"])
