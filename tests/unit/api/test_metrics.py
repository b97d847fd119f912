"""Metrics and analytics endpoints over windows written through the store; Prometheus; docs."""

import math
import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from connectors.store import Store

S = 1_000_000_000
W = 60 * S
CPU = "cpu,host=a usage_user"
MEM = "mem,host=a used_percent"


@pytest.fixture
def windows(store, scored_window):
    store.write_windows(
        [scored_window(i, s, CPU) for i, s in enumerate([0.1, 0.95, 0.2, 0.99, 0.3])]
        + [scored_window(i, 0.1, MEM) for i in range(3)]
        + [scored_window(7, 0.999, CPU, tenant="globex")]
    )


def test_latest_window_per_series(client, auth, windows):
    r = client.get("/api/v1/metrics", headers=auth("viewer"))
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2
    assert [(w["series"], w["window_start_ns"]) for w in body["items"]] == [
        (CPU, 4 * W),
        (MEM, 2 * W),
    ]
    cpu = body["items"][0]
    assert cpu["measurement"] == "cpu" and cpu["field"] == "usage_user"
    assert cpu["window_start"] == "1970-01-01T00:04:00Z"
    assert cpu["mean"] == pytest.approx(14.0)
    assert cpu["components"] == {"ecod": pytest.approx(0.3)}
    only_mem = client.get("/api/v1/metrics", params={"measurement": "mem"}, headers=auth("viewer"))
    assert [w["series"] for w in only_mem.json()["items"]] == [MEM]
    one = client.get("/api/v1/metrics", params={"limit": 1}, headers=auth("viewer"))
    assert one.json()["count"] == 1


def test_history_of_one_series(client, auth, windows):
    r = client.get(
        "/api/v1/metrics/history",
        params={"series": CPU, "since": "1970-01-01T00:01:00Z", "until": "1970-01-01T00:04:00Z"},
        headers=auth("viewer"),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["series"] == CPU
    assert [w["window_start_ns"] // W for w in body["items"]] == [1, 2, 3]
    latest_two = client.get(
        "/api/v1/metrics/history", params={"series": CPU, "limit": 2}, headers=auth("viewer")
    ).json()
    assert [w["window_start_ns"] // W for w in latest_two["items"]] == [3, 4]
    unix_seconds = client.get(
        "/api/v1/metrics/history", params={"series": CPU, "since": 180}, headers=auth("viewer")
    ).json()
    assert [w["window_start_ns"] // W for w in unix_seconds["items"]] == [3, 4]


def test_anomalies_use_the_threshold_by_default(client, auth, windows):
    r = client.get("/api/v1/analytics/anomalies", headers=auth("viewer"))
    assert r.status_code == 200
    body = r.json()
    assert body["min_score"] == pytest.approx(0.9)  # settings.anomaly_threshold
    assert [w["window_start_ns"] // W for w in body["items"]] == [3, 1]
    assert all(w["is_anomaly"] for w in body["items"])
    strict = client.get(
        "/api/v1/analytics/anomalies", params={"min_score": 0.98}, headers=auth("viewer")
    ).json()
    assert [w["window_start_ns"] // W for w in strict["items"]] == [3]
    ranged = client.get(
        "/api/v1/analytics/anomalies",
        params={"min_score": 0.0, "since": "1970-01-01T00:02:00Z", "until": "1970-01-01T00:03:00Z"},
        headers=auth("viewer"),
    ).json()
    assert {(w["series"], w["window_start_ns"] // W) for w in ranged["items"]} == {
        (CPU, 2),
        (MEM, 2),
    }


def test_metrics_are_tenant_scoped(client, auth, windows):
    foreign = auth("globex-viewer")
    latest = client.get("/api/v1/metrics", headers=foreign).json()
    assert [(w["series"], w["window_start_ns"] // W) for w in latest["items"]] == [(CPU, 7)]
    anomalies = client.get("/api/v1/analytics/anomalies", headers=foreign).json()
    assert [w["window_start_ns"] // W for w in anomalies["items"]] == [7]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_exposes_incident_and_pipeline_metrics(client, auth, store, create_incident):
    first = create_incident(title="one", severity="high")
    create_incident(title="two", severity="low")
    create_incident(user="globex-responder", title="three", severity="high")
    client.post(f"/api/v1/incidents/{first['id']}/acknowledge", headers=auth("responder"))
    store.record_pipeline_stats("w0", {"points": 100, "windows": 4, "anomalies": 1})
    store.record_pipeline_stats("w1", {"points": 50, "dead_letters": 2, "late_points": 3})

    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("incidents_total", (("tenant", "acme"),))] == 2
    assert got[("incidents_total", (("tenant", "globex"),))] == 1
    key = (
        "incidents_by_severity",
        (("severity", "high"), ("status", "acknowledged"), ("tenant", "acme")),
    )
    assert got[key] == 1
    assert got[("pipeline_points_total", ())] == 150
    assert got[("pipeline_dead_letters_total", ())] == 2
    assert got[("pipeline_late_points_total", ())] == 3
    assert got[("pipeline_windows_total", ())] == 4
    assert got[("pipeline_anomalies_total", ())] == 1
    assert got[("response_time_seconds_count", (("severity", "high"),))] == 1
    assert math.isnan(got[("automation_success_rate", ())])
    assert got[("incidents_store_up", ())] == 1
    routes = {dict(labels).get("route") for (name, labels) in got if name.startswith("http_")}
    assert "/api/v1/incidents/{incident_id}/acknowledge" in routes  # templates, not raw ids
    assert not any(first["id"] in (r or "") for r in routes)


def test_response_time_is_observed_once_per_acknowledgement(client, auth, create_incident):
    incident = create_incident()
    for _ in range(2):
        client.post(f"/api/v1/incidents/{incident['id']}/acknowledge", headers=auth("responder"))
    got = samples(client.get("/metrics").text)
    assert got[("response_time_seconds_count", (("severity", "high"),))] == 1
    other = create_incident(title="acknowledged through PUT")
    r = client.put(
        f"/api/v1/incidents/{other['id']}",
        json={"status": "acknowledged"},
        headers=auth("responder"),
    )
    assert r.json()["acknowledged_by"] == "responder"
    got = samples(client.get("/metrics").text)
    assert got[("response_time_seconds_count", (("severity", "high"),))] == 2


def test_each_app_has_its_own_registry(settings, store):
    a, b = create_app(settings, store), create_app(settings, store)
    assert a.state.context.metrics.registry is not b.state.context.metrics.registry


def test_docs_work_offline(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
    assert assets, "the docs page references no assets"
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), asset
        assert client.get(asset).status_code == 200, asset
    assert "cdn." not in r.text
    assert "url: '/openapi.json'" in r.text
    schema = client.get("/openapi.json").json()
    assert "/api/v1/incidents" in schema["paths"]


def test_health_endpoints(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health/database").json() == {"status": "ok", "database": "sqlite"}


def test_database_down_gives_503_not_500(settings_factory, tmp_path):
    (tmp_path / "gone").mkdir()
    broken = Store(f"sqlite:///{tmp_path / 'gone'}")  # a directory: every query fails
    app = create_app(settings_factory(), broken)
    client = TestClient(app)  # no lifespan: the process is up, its database is not
    assert client.get("/health").status_code == 200
    r = client.get("/health/database")
    assert r.status_code == 503
    assert r.json() == {"detail": "database is unreachable"}
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert samples(scrape.text)[("incidents_store_up", ())] == 0
    token = client.post("/api/v1/auth/token", data={"username": "x", "password": "y"})
    assert token.status_code == 503
    assert token.json() == {"detail": "database unavailable, retry later"}
    broken.close()


def test_unreachable_influxdb_falls_back_to_the_store(settings_factory, store, auth, windows):
    """With InfluxDB configured but down, metric reads are answered from the SQL store."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    settings = settings_factory(
        influx_url=f"http://127.0.0.1:{closed_port}",
        influx_token="t",
        influx_org="o",
        influx_bucket="b",
    )
    with TestClient(create_app(settings, store)) as c:
        latest = c.get("/api/v1/metrics", headers=auth("viewer"))
        history = c.get("/api/v1/metrics/history", params={"series": CPU}, headers=auth("viewer"))
    assert latest.status_code == 200 and latest.json()["count"] == 2
    assert history.status_code == 200 and history.json()["count"] == 5
