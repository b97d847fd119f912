"""GET /api/v1/analytics/forecast over windows written through the store."""

import pytest

from incidents.schemas import AnomalyScore, WindowAggregate

S = 1_000_000_000
W = 60 * S
DISK = "disk,host=a used_percent"


def window(i: int, mean: float, series: str = DISK, tenant: str = "acme") -> AnomalyScore:
    agg = WindowAggregate(series, tenant, i * W, (i + 1) * W, 6, mean, mean, mean, 0.0, mean)
    return AnomalyScore(agg, 0.1, False, {})


@pytest.fixture
def filling_disk(store):
    # 200 windows of a disk filling by 0.2 percentage points per window, with a little noise
    store.write_windows([window(i, 40.0 + 0.2 * i + 0.05 * ((i * 7) % 5 - 2)) for i in range(200)])


def test_forecast_continues_the_trend_with_an_interval(client, auth, filling_disk):
    r = client.get(
        "/api/v1/analytics/forecast",
        params={"series": DISK, "horizon": 10},
        headers=auth("viewer"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["series"] == DISK and body["horizon"] == 10 and body["history_windows"] == 200
    points = body["points"]
    assert len(points) == 10
    last = 40.0 + 0.2 * 199
    assert points[0]["mean"] == pytest.approx(last + 0.2, abs=0.3)
    assert points[9]["mean"] == pytest.approx(last + 2.0, abs=0.6)
    assert all(p["lower"] <= p["mean"] <= p["upper"] for p in points)
    assert points[0]["time"] == "1970-01-01T03:20:00Z"  # window 200 starts 200 minutes in
    assert body["breach"] is None


def test_a_limit_within_the_horizon_is_a_predicted_breach(client, auth, filling_disk):
    r = client.get(
        "/api/v1/analytics/forecast",
        params={"series": DISK, "horizon": 60, "limit": 85.0},
        headers=auth("viewer"),
    )
    breach = r.json()["breach"]
    # the mean reaches 85 % after about 28 windows; the upper bound of the interval earlier
    assert breach is not None and breach["direction"] == "above"
    assert 15 <= breach["steps_ahead"] <= 29
    assert breach["predicted_time"] is not None
    unreachable = client.get(
        "/api/v1/analytics/forecast",
        params={"series": DISK, "horizon": 5, "limit": 95.0},
        headers=auth("viewer"),
    )
    assert unreachable.json()["breach"] is None


def test_unknown_series_other_tenant_and_bad_parameters(client, auth, filling_disk):
    missing = client.get(
        "/api/v1/analytics/forecast", params={"series": "nope x"}, headers=auth("viewer")
    )
    assert missing.status_code == 404 and "fewer than 2 windows" in missing.json()["detail"]
    other = client.get(
        "/api/v1/analytics/forecast", params={"series": DISK}, headers=auth("globex-viewer")
    )
    assert other.status_code == 404
    for params in ({"series": DISK, "horizon": 0}, {"series": DISK, "level": 1.5}, {}):
        bad = client.get("/api/v1/analytics/forecast", params=params, headers=auth("viewer"))
        assert bad.status_code == 422
    assert client.get("/api/v1/analytics/forecast", params={"series": DISK}).status_code == 401
