"""The SQL store on the real PostgreSQL: the COPY-based window upsert and incident replay."""

from __future__ import annotations

import pytest

from connectors.store import Store
from incidents.schemas import AnomalyScore, WindowAggregate

S = 1_000_000_000
W = 60 * S
SERIES = "postgresql,host=db-1 connections"


def window(i: int, score: float = 0.1, *, series: str = SERIES, mean: float = 10.0):
    agg = WindowAggregate(series, "acme", i * W, (i + 1) * W, 6, mean, 9.0, 11.0, 0.5, mean)
    return AnomalyScore(agg, score, score >= 0.95, {"ecod": score, "arima": 0.5})


@pytest.fixture
def store(postgres_url):
    s = Store(postgres_url)
    yield s
    s.close()


def test_replayed_windows_update_in_place_never_duplicate(store):
    store.write_windows([window(0, 0.2), window(1, 0.3)])
    store.write_windows([window(1, 0.99, mean=99.0), window(2, 0.1)])
    history = store.window_history("acme", SERIES)
    assert [w.window_start_ns for w in history] == [0, W, 2 * W]
    assert history[1].anomaly_score == pytest.approx(0.99)
    assert history[1].mean == pytest.approx(99.0)
    assert history[1].is_anomaly is True
    assert history[1].components == {"ecod": pytest.approx(0.99), "arima": 0.5}
    assert history[1].measurement == "postgresql" and history[1].field == "connections"


def test_duplicates_inside_one_batch_keep_the_last(store):
    store.write_windows([window(0, 0.2), window(0, 0.5)])
    (only,) = store.window_history("acme", SERIES)
    assert only.anomaly_score == pytest.approx(0.5)


def test_large_batches_in_consecutive_transactions(store):
    for part in range(3):
        store.write_windows(
            [
                window(i, series=f"cpu,host=h{i % 50} usage_user")
                for i in range(part * 2000, (part + 1) * 2000)
            ]
        )
    latest = store.latest_windows("acme", limit=1000)
    assert len(latest) == 50
    assert sum(len(store.window_history("acme", w.series, limit=10_000)) for w in latest) == 6000


def test_non_finite_values_are_stored_as_null(store):
    agg = WindowAggregate(SERIES, "acme", 0, W, 1, float("nan"), 1.0, float("inf"), 0.0, 1.0)
    store.write_windows([AnomalyScore(agg, float("nan"), False, {"x": float("nan"), "y": 0.5})])
    (w,) = store.window_history("acme", SERIES)
    assert w.mean is None and w.maximum is None and w.anomaly_score is None
    assert w.components == {"x": None, "y": 0.5}


def test_odd_series_names_survive_copy(store):
    odd = 'weird\\tab\tname,host=a\\ b "q" usage'
    store.write_windows([window(0, series=odd)])
    (w,) = store.window_history("acme", odd)
    assert w.series == odd
