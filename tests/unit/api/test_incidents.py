"""Incident endpoints: create with dedup, list with filters and pages, workflow, isolation."""

import uuid

import pytest

from incidents.lifecycle import detected_fingerprint
from incidents.schemas import Category, IncidentEventType, IncidentUpdate, Severity

S = 1_000_000_000
W = 60 * S
API = "/api/v1/incidents"


def detected_update(kind: IncidentEventType, i: int, series: str, tenant: str = "acme"):
    return IncidentUpdate(
        type=kind,
        fingerprint=detected_fingerprint(tenant, series),
        tenant=tenant,
        series=series,
        title=f"Anomalous {series}",
        category=Category.COMPUTE,
        severity=Severity.CRITICAL,
        score=0.99,
        peak_score=0.99,
        window_start_ns=i * W,
        window_end_ns=(i + 1) * W,
        observed=97.5,
    )


def test_create_returns_201_with_the_stored_incident(client, auth):
    body = {
        "title": "Datenbank-Verbindungs-Timeout",
        "description": "Mehrere Datenbank-Verbindungs-Timeouts erkannt",
        "severity": "high",
        "source": "monitoring",
        "metadata": {"database": "primary", "timeout_count": 15},
        "tags": ["db", "primary"],
    }
    r = client.post(API, json=body, headers=auth("responder"))
    assert r.status_code == 201
    created = r.json()
    uuid.UUID(created["id"])
    assert created["category"] == "database"  # classified from title/metadata
    assert created["status"] == "open"
    assert created["kind"] == "manual"
    assert created["tenant"] == "acme"
    assert created["metadata"] == body["metadata"]
    assert created["tags"] == ["db", "primary"]
    got = client.get(f"{API}/{created['id']}", headers=auth("viewer"))
    assert got.status_code == 200
    assert got.json() == created


def test_explicit_category_wins_over_classification(create_incident):
    incident = create_incident(title="database slow", category="network")
    assert incident["category"] == "network"


def test_duplicate_report_returns_200_with_the_open_incident(client, auth, create_incident):
    first = create_incident(severity="medium")
    r = client.post(
        API, json={"title": first["title"], "severity": "critical"}, headers=auth("responder")
    )
    assert r.status_code == 200
    again = r.json()
    assert again["id"] == first["id"]
    assert again["repeat_count"] == 1
    assert again["severity"] == "critical"
    other_source = client.post(
        API, json={"title": first["title"], "source": "pagerduty"}, headers=auth("responder")
    )
    assert other_source.status_code == 201


def test_explicit_fingerprint_groups_different_titles(client, auth):
    a = client.post(API, json={"title": "a", "fingerprint": "db-1:conn"}, headers=auth("responder"))
    b = client.post(API, json={"title": "b", "fingerprint": "db-1:conn"}, headers=auth("responder"))
    assert (a.status_code, b.status_code) == (201, 200)
    assert a.json()["id"] == b.json()["id"]


def test_after_resolve_the_same_report_opens_a_new_incident(client, auth, create_incident):
    first = create_incident()
    client.post(f"{API}/{first['id']}/resolve", headers=auth("responder"))
    r = client.post(API, json={"title": first["title"]}, headers=auth("responder"))
    assert r.status_code == 201
    assert r.json()["id"] != first["id"]


def test_pagination_pages_are_disjoint_and_total_is_exact(client, auth, create_incident):
    ids = {create_incident(title=f"incident {i}")["id"] for i in range(7)}
    seen: list[str] = []
    for offset in (0, 3, 6):
        r = client.get(API, params={"limit": 3, "offset": offset}, headers=auth("viewer"))
        page = r.json()
        assert (page["total"], page["limit"], page["offset"]) == (7, 3, offset)
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == 7 and set(seen) == ids
    oldest = client.get(API, params={"order": "oldest", "limit": 10}, headers=auth("viewer"))
    assert [i["id"] for i in oldest.json()["items"]] == seen[::-1]
    beyond = client.get(API, params={"offset": 50}, headers=auth("viewer")).json()
    assert (beyond["items"], beyond["total"]) == ([], 7)


def test_filters(client, auth, create_incident, store):
    create_incident(title="disk almost full", severity="low")
    acked = create_incident(title="replica lag", severity="high")
    client.post(f"{API}/{acked['id']}/acknowledge", headers=auth("responder"))
    store.apply_incident_updates(
        [detected_update(IncidentEventType.OPENED, 5, "cpu,host=a usage_user")]
    )

    def titles(**params) -> set[str]:
        r = client.get(API, params=params, headers=auth("viewer"))
        assert r.status_code == 200, r.text
        return {i["title"] for i in r.json()["items"]}

    assert titles(severity="low") == {"disk almost full"}
    assert titles(status="acknowledged") == {"replica lag"}
    assert titles(category="storage") == {"disk almost full"}
    assert titles(kind="detected") == {"Anomalous cpu,host=a usage_user"}
    assert titles(series="cpu,host=a usage_user") == {"Anomalous cpu,host=a usage_user"}
    assert titles(status="open", kind="manual") == {"disk almost full"}
    # the detected incident lived in [5W, 6W]: event time, long before the manual ones
    assert titles(until="1970-01-01T00:05:30Z") == {"Anomalous cpu,host=a usage_user"}
    assert titles(since="1970-01-01T00:07:00Z", kind="detected") == set()
    assert "Anomalous cpu,host=a usage_user" not in titles(since="2000-01-01T00:00:00Z")


def test_detected_incident_through_the_api(client, auth, store):
    series = "cpu,host=a usage_user"
    store.apply_incident_updates(
        [
            detected_update(IncidentEventType.OPENED, 5, series),
            detected_update(IncidentEventType.RESOLVED, 8, series),
        ]
    )
    (item,) = client.get(API, headers=auth("viewer")).json()["items"]
    assert item["kind"] == "detected"
    assert item["series"] == series
    assert item["score"] == pytest.approx(0.99)
    assert item["status"] == "resolved"
    assert item["resolved_by"] == "auto"
    timeline = client.get(f"{API}/{item['id']}/timeline", headers=auth("viewer")).json()
    assert [(e["type"], e["actor"]) for e in timeline["items"]] == [
        ("created", "auto"),
        ("resolved", "auto"),
    ]


def test_update_changes_only_the_fields_sent(client, auth, create_incident):
    incident = create_incident(description="before", tags=["a"])
    r = client.put(
        f"{API}/{incident['id']}",
        json={"title": "Primary database down", "severity": "critical"},
        headers=auth("responder"),
    )
    assert r.status_code == 200
    updated = r.json()
    assert updated["title"] == "Primary database down"
    assert updated["severity"] == "critical"
    assert updated["description"] == "before"
    assert updated["tags"] == ["a"]
    assert updated["updated_at"] > incident["updated_at"]
    assert client.get(f"{API}/{incident['id']}", headers=auth("viewer")).json() == updated


def test_workflow_acknowledge_resolve_and_timeline(client, auth, create_incident):
    incident = create_incident()
    iid = incident["id"]
    r = client.post(f"{API}/{iid}/acknowledge", headers=auth("responder"))
    assert r.status_code == 200
    acked = r.json()
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged_by"] == "responder"
    again = client.post(f"{API}/{iid}/acknowledge", headers=auth("admin")).json()
    assert again["acknowledged_at"] == acked["acknowledged_at"]
    assert again["acknowledged_by"] == "responder"

    r = client.post(
        f"{API}/{iid}/resolve", json={"resolution": "restarted the pool"}, headers=auth("admin")
    )
    assert r.status_code == 200
    resolved = r.json()
    assert (resolved["status"], resolved["resolved_by"], resolved["resolution"]) == (
        "resolved",
        "admin",
        "restarted the pool",
    )
    twice = client.post(f"{API}/{iid}/resolve", headers=auth("responder")).json()
    assert twice["resolution"] == "restarted the pool"

    conflict = client.post(f"{API}/{iid}/acknowledge", headers=auth("responder"))
    assert conflict.status_code == 409
    assert "resolved" in conflict.json()["detail"]

    timeline = client.get(f"{API}/{iid}/timeline", headers=auth("viewer")).json()
    assert timeline["incident_id"] == iid
    assert [(e["type"], e["actor"]) for e in timeline["items"]] == [
        ("created", "responder"),
        ("acknowledged", "responder"),
        ("resolved", "admin"),
    ]
    assert timeline["items"][2]["details"]["resolution"] == "restarted the pool"


def test_resolve_without_body_and_reopen_via_put(client, auth, create_incident):
    incident = create_incident()
    r = client.post(f"{API}/{incident['id']}/resolve", headers=auth("responder"))
    assert r.status_code == 200
    assert r.json()["resolution"] is None
    reopened = client.put(
        f"{API}/{incident['id']}", json={"status": "open"}, headers=auth("responder")
    )
    assert reopened.status_code == 200
    assert reopened.json()["status"] == "open"
    assert reopened.json()["resolved_at"] is None


def test_reopen_conflicts_with_a_newer_open_duplicate(client, auth, create_incident):
    old = create_incident()
    client.post(f"{API}/{old['id']}/resolve", headers=auth("responder"))
    create_incident()  # same fingerprint, new open incident
    r = client.put(f"{API}/{old['id']}", json={"status": "open"}, headers=auth("responder"))
    assert r.status_code == 409
    assert "fingerprint" in r.json()["detail"]


def test_ids_are_case_insensitive_uuids(client, auth, create_incident):
    incident = create_incident()
    r = client.get(f"{API}/{incident['id'].upper()}", headers=auth("viewer"))
    assert r.status_code == 200
    assert r.json()["id"] == incident["id"]


def test_tenants_never_see_each_other(client, auth, create_incident):
    mine = create_incident(title="acme only")
    iid = mine["id"]
    foreign = auth("globex-responder")
    assert client.get(API, headers=foreign).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
    calls = [
        ("GET", f"{API}/{iid}", None),
        ("PUT", f"{API}/{iid}", {"title": "hijacked"}),
        ("POST", f"{API}/{iid}/acknowledge", None),
        ("POST", f"{API}/{iid}/resolve", None),
        ("GET", f"{API}/{iid}/timeline", None),
    ]
    for method, path, body in calls:
        r = client.request(method, path, json=body, headers=foreign)
        assert r.status_code == 404, (method, path)
        assert r.json()["detail"] == f"incident {iid} not found"
    same_title = client.post(API, json={"title": "acme only", "severity": "high"}, headers=foreign)
    assert same_title.status_code == 201  # dedup is per tenant
    assert same_title.json()["tenant"] == "globex"
    untouched = client.get(f"{API}/{iid}", headers=auth("viewer")).json()
    assert untouched == mine
