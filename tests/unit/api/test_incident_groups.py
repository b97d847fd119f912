"""Grouping and comments through the incidents API."""

import uuid

API = "/api/v1/incidents"


def post(client, auth, title: str, *tags: str, user: str = "responder") -> dict:
    r = client.post(API, json={"title": title, "tags": list(tags)}, headers=auth(user))
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_same_service_within_the_window_hangs_under_the_first(client, auth):
    parent = post(client, auth, "checkout latency", "service=checkout")
    child = post(client, auth, "checkout errors", "service=checkout")
    unrelated = post(client, auth, "search latency", "service=search")
    assert parent["parent_id"] is None
    assert child["parent_id"] == parent["id"]
    assert unrelated["parent_id"] is None
    got = client.get(f"{API}/{parent['id']}", headers=auth("viewer")).json()
    assert got["child_count"] == 1
    children = client.get(API, params={"parent_id": parent["id"]}, headers=auth("viewer")).json()
    assert [c["id"] for c in children["items"]] == [child["id"]] and children["total"] == 1
    nobody = client.get(API, params={"parent_id": str(uuid.uuid4())}, headers=auth("viewer"))
    assert nobody.json()["total"] == 0
    bad = client.get(API, params={"parent_id": "not-a-uuid"}, headers=auth("viewer"))
    assert bad.status_code == 422


def test_group_by_and_window_are_configurable(settings_factory, store, auth):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from connectors.store import Store

    settings = settings_factory(incident_group_by="host", incident_group_window_seconds=600)
    grouped_store = Store.from_settings(settings)
    with TestClient(create_app(settings, grouped_store)) as other:
        headers = auth("responder")
        a = other.post(API, json={"title": "a", "tags": ["host=db-1"]}, headers=headers).json()
        b = other.post(
            API, json={"title": "b", "tags": ["host=db-1", "service=x"]}, headers=headers
        ).json()
        c = other.post(API, json={"title": "c", "tags": ["service=x"]}, headers=headers).json()
    grouped_store.close()
    assert b["parent_id"] == a["id"]
    assert c["parent_id"] is None  # grouped by host now, and c has none


def test_comments_are_added_to_the_timeline(client, auth):
    incident = post(client, auth, "checkout latency")
    r = client.post(
        f"{API}/{incident['id']}/comments",
        json={"text": "  rolled back deploy 4711  "},
        headers=auth("responder"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "comment" and r.json()["actor"] == "responder"
    client.post(f"{API}/{incident['id']}/acknowledge", headers=auth("responder"))
    client.post(
        f"{API}/{incident['id']}/resolve", json={"resolution": "rolled back"}, headers=auth("admin")
    )
    timeline = client.get(f"{API}/{incident['id']}/timeline", headers=auth("viewer")).json()
    assert [(e["type"], e["actor"]) for e in timeline["items"]] == [
        ("created", "responder"),
        ("comment", "responder"),
        ("acknowledged", "responder"),
        ("resolved", "admin"),
    ]
    assert timeline["items"][1]["details"] == {"text": "rolled back deploy 4711"}


def test_bad_comments(client, auth):
    incident = post(client, auth, "checkout latency")
    url = f"{API}/{incident['id']}/comments"
    for body in ({"text": ""}, {"text": "   "}, {}, {"text": "x" * 10_001}, {"text": "a", "b": 1}):
        assert client.post(url, json=body, headers=auth("responder")).status_code == 422, body
    assert client.post(url, json={"text": "hi"}, headers=auth("viewer")).status_code == 403
    foreign = client.post(url, json={"text": "hi"}, headers=auth("globex-responder"))
    assert foreign.status_code == 404
    assert foreign.json()["detail"] == f"incident {incident['id']} not found"


def test_tags_identify_the_problem_for_dedup(client, auth):
    """Same title and source: one incident per host, repeats fold in whatever the tag order."""
    db1 = post(client, auth, "connection timeouts", "host=db-1", "env=prod")
    db2 = post(client, auth, "connection timeouts", "host=db-2", "env=prod")
    again = post(client, auth, "connection timeouts", "env=prod", "host=db-1")
    assert db1["id"] != db2["id"]
    assert again["id"] == db1["id"] and again["repeat_count"] == 1
