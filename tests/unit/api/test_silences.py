"""Silences through the API: create (Alertmanager's shape), list, read, expire, and their effect
on new incidents."""

from datetime import UTC, datetime, timedelta

import pytest

API = "/api/v1/silences"
INCIDENTS = "/api/v1/incidents"


def future(hours: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def silence_body(**overrides) -> dict:
    return {
        "matchers": [{"name": "service", "value": "billing"}],
        "ends_at": future(),
        "comment": "database maintenance",
        **overrides,
    }


def test_create_list_get_expire(client, auth):
    r = client.post(API, json=silence_body(), headers=auth("responder"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "active"
    assert created["created_by"] == "responder"
    assert created["matchers"] == [
        {"name": "service", "value": "billing", "is_regex": False, "is_equal": True}
    ]
    listed = client.get(API, headers=auth("viewer")).json()
    assert [s["id"] for s in listed["items"]] == [created["id"]] and listed["count"] == 1
    got = client.get(f"{API}/{created['id']}", headers=auth("viewer"))
    assert got.status_code == 200 and got.json()["comment"] == "database maintenance"

    expired = client.delete(f"{API}/{created['id']}", headers=auth("responder"))
    assert expired.status_code == 200
    assert expired.json()["state"] == "expired"
    active = client.get(API, params={"state": "active"}, headers=auth("viewer")).json()
    assert active["items"] == []
    still_listed = client.get(API, params={"state": "expired"}, headers=auth("viewer")).json()
    assert [s["id"] for s in still_listed["items"]] == [created["id"]]


def test_alertmanager_camel_case_body_is_accepted(client, auth):
    body = {
        "matchers": [{"name": "alertname", "value": "Probe.*", "isRegex": True, "isEqual": True}],
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": future(2),
        "createdBy": "oncall@example.org",
        "comment": "known outage",
    }
    r = client.post(API, json=body, headers=auth("responder"))
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "oncall@example.org"
    assert r.json()["matchers"][0]["is_regex"] is True


def test_matching_incidents_are_created_silenced(client, auth):
    silence = client.post(
        API,
        json=silence_body(matchers=[{"name": "service", "value": "bill.*", "is_regex": True}]),
        headers=auth("responder"),
    ).json()
    hit = client.post(
        INCIDENTS, json={"title": "slow", "tags": ["service=billing"]}, headers=auth("responder")
    ).json()
    miss = client.post(
        INCIDENTS, json={"title": "web slow", "tags": ["service:web"]}, headers=auth("responder")
    ).json()
    assert hit["metadata"]["silenced"] is True
    assert hit["metadata"]["silenced_by"] == silence["id"]
    assert "silenced" not in miss["metadata"]
    timeline = client.get(f"{INCIDENTS}/{hit['id']}/timeline", headers=auth("viewer")).json()
    assert [e["type"] for e in timeline["items"]] == ["created", "silenced"]
    assert timeline["items"][1]["details"] == {"silence_id": silence["id"]}


def test_expired_silence_no_longer_silences(client, auth):
    silence = client.post(API, json=silence_body(), headers=auth("responder")).json()
    client.delete(f"{API}/{silence['id']}", headers=auth("responder"))
    incident = client.post(
        INCIDENTS, json={"title": "slow", "tags": ["service=billing"]}, headers=auth("responder")
    ).json()
    assert "silenced" not in incident["metadata"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            silence_body(matchers=[{"name": "service", "value": "(", "is_regex": True}]),
            "invalid regex",
        ),
        (
            silence_body(matchers=[{"name": "service", "value": "x" * 300, "is_regex": True}]),
            "longer than 256",
        ),
        (silence_body(matchers=[{"name": "team", "value": ""}]), "empty value"),
        (silence_body(ends_at="2000-01-01T00:00:00Z"), "future"),
        (silence_body(starts_at=future(3), ends_at=future(2)), "after starts_at"),
    ],
)
def test_bad_silences_are_422_with_a_message(client, auth, body, message):
    r = client.post(API, json=body, headers=auth("responder"))
    assert r.status_code == 422
    assert message in r.json()["detail"]
    assert client.get(API, headers=auth("viewer")).json()["count"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"ends_at": future()},  # no matchers
        silence_body(matchers=[]),
        silence_body(ends_at="2030-01-01T00:00:00"),  # no time zone
        silence_body(matchers=[{"name": "", "value": "x"}]),
        silence_body(unknown=1),
    ],
)
def test_malformed_bodies_are_422(client, auth, body):
    r = client.post(API, json=body, headers=auth("responder"))
    assert r.status_code == 422
    assert r.json()["detail"]


def test_silences_are_per_tenant(client, auth):
    mine = client.post(API, json=silence_body(), headers=auth("responder")).json()
    foreign = auth("globex-responder")
    assert client.get(API, headers=foreign).json()["count"] == 0
    assert client.get(f"{API}/{mine['id']}", headers=foreign).status_code == 404
    r = client.delete(f"{API}/{mine['id']}", headers=foreign)
    assert r.status_code == 404 and r.json()["detail"] == f"silence {mine['id']} not found"
    incident = client.post(
        INCIDENTS, json={"title": "slow", "tags": ["service=billing"]}, headers=foreign
    ).json()
    assert "silenced" not in incident["metadata"]
    assert client.get(f"{API}/{mine['id']}", headers=auth("viewer")).json()["state"] == "active"
