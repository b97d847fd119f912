"""GET /api/v1/analytics/summary: MTTA, MTTR and counts, with known timestamps."""

from datetime import UTC, datetime, timedelta

import connectors.store as store_module

URL = "/api/v1/analytics/summary"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_summary_mtta_mttr_and_counts(client, auth, monkeypatch):
    clock = {"now": T0}
    monkeypatch.setattr(store_module, "utc_now", lambda: clock["now"])

    def at(seconds: int) -> None:
        clock["now"] = T0 + timedelta(seconds=seconds)

    def create(title: str, **fields) -> str:
        body = {"title": title, **fields}
        return client.post("/api/v1/incidents", json=body, headers=auth("responder")).json()["id"]

    at(0)
    db = create("Datenbank-Verbindungs-Timeout", severity="critical")
    disk = create("disk almost full", severity="low")
    at(100)
    net = create("packet loss on uplink", severity="high", category="network")
    at(300)
    client.post(f"/api/v1/incidents/{db}/acknowledge", headers=auth("responder"))  # 300 s
    at(400)
    client.post(f"/api/v1/incidents/{net}/acknowledge", headers=auth("responder"))  # 300 s
    at(1000)
    client.post(f"/api/v1/incidents/{db}/resolve", headers=auth("responder"))  # 1000 s
    at(1300)
    client.post(f"/api/v1/incidents/{disk}/resolve", headers=auth("responder"))  # 1300 s

    r = client.get(URL, headers=auth("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3
    assert body["by_status"] == {"resolved": 2, "acknowledged": 1}
    assert body["by_severity"] == {"critical": 1, "low": 1, "high": 1}
    assert body["by_category"] == {"database": 1, "storage": 1, "network": 1}
    assert body["by_kind"] == {"manual": 3}
    assert body["mtta_seconds"] == 300.0
    assert body["mttr_seconds"] == 1150.0
    assert body["acknowledged"] == {"count": 2, "mean_seconds": 300.0}
    assert body["resolved"] == {"count": 2, "mean_seconds": 1150.0}

    # a period holding only the disk's resolution (and nothing recorded in it)
    r = client.get(
        URL,
        params={"since": "2026-03-01T12:20:00Z", "until": "2026-03-01T13:00:00Z"},
        headers=auth("viewer"),
    )
    body = r.json()
    assert (body["total"], body["mtta_seconds"], body["mttr_seconds"]) == (0, None, 1300.0)
    assert body["since"].startswith("2026-03-01T12:20:00")

    other_tenant = client.get(URL, headers=auth("globex-viewer")).json()
    assert (other_tenant["total"], other_tenant["mtta_seconds"]) == (0, None)


def test_summary_rejects_an_inverted_period(client, auth):
    r = client.get(
        URL,
        params={"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        headers=auth("viewer"),
    )
    assert r.status_code == 422
    assert "since" in r.json()["detail"]
