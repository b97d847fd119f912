"""The forecasting step: real per-series SARIMAX forecasters over closed windows."""

import pickle
from datetime import datetime

import numpy as np
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from incidents.config import Settings
from incidents.prediction import parse_forecast_limits
from incidents.schemas import IncidentEventType, IncidentUpdate, WindowAggregate
from incidents.telemetry import PipelineCounters
from pipelines.detect import FlowParts, build_detection_flow
from pipelines.operators import per_series
from pipelines.predict import LimitForecasts

S = 1_000_000_000
T0 = 1_700_000_040 * S
DISK = "disk,host=web-1,path=/var used_percent"
CROSSING = 125  # the ramp below reaches 95 in this window


def ramp(n: int, seed: int = 3) -> np.ndarray:
    """Disk usage growing 0.2 points per window from 70 with a little noise."""
    rng = np.random.default_rng(seed)
    return 70.0 + 0.2 * np.arange(n) + rng.normal(0.0, 0.15, n)


def window(i: int, mean: float, series: str = DISK) -> WindowAggregate:
    start = T0 + i * 60 * S
    return WindowAggregate(series, "default", start, start + 60 * S, 6, mean, mean, mean, 0.0, mean)


def run(forecasts: LimitForecasts, values, series: str = DISK) -> list[tuple[int, IncidentUpdate]]:
    out = []
    for i, value in enumerate(values):
        out += [(i, u) for u in forecasts.step([window(i, float(value), series)])]
    return out


def make(horizon: int = 60) -> LimitForecasts:
    return LimitForecasts(
        parse_forecast_limits("disk.used_percent>95"),
        horizon=horizon,
        level=0.95,
        resolve_after_windows=3,
    )


def test_a_rising_disk_is_predicted_before_it_fills_then_the_prediction_comes_true() -> None:
    values = np.concatenate([ramp(CROSSING + 5), np.full(5, 50.0)])
    updates = run(make(), values)
    opened = [(i, u) for i, u in updates if u.type is IncidentEventType.OPENED]
    assert len(opened) == 1
    opened_at, first = opened[0]
    assert first.metadata["kind"] == "predicted"
    # Predicted well ahead (within the 60-window horizon) and not before the model had data.
    assert 48 <= opened_at <= CROSSING - 20
    predicted = [u for i, u in updates if i < CROSSING and u.metadata["kind"] == "predicted"]
    last_time = predicted[-1].metadata["predicted_breach_time"]
    crossing_time = window(CROSSING, 0.0).window_start_ns
    error_windows = (datetime.fromisoformat(last_time).timestamp() * S - crossing_time) / (60 * S)
    assert abs(error_windows) <= 10
    came_true = [(i, u) for i, u in updates if u.metadata["kind"] == "detected"]
    assert came_true[0][0] == int(np.argmax(values >= 95.0))
    assert came_true[0][1].type is IncidentEventType.UPDATED
    assert updates[-1][1].type is IncidentEventType.RESOLVED
    assert updates[-1][1].metadata["resolution"].startswith("back within")
    assert {u.fingerprint for _, u in updates} == {first.fingerprint}


def test_a_steady_disk_far_from_its_limit_gets_no_prediction() -> None:
    rng = np.random.default_rng(5)
    assert run(make(), 50.0 + rng.normal(0.0, 1.0, 200)) == []


def test_series_without_a_limit_get_no_forecaster() -> None:
    forecasts = make()
    assert run(forecasts, ramp(100), series="cpu,host=web-1 usage_user") == []
    assert forecasts.forecasters == {}
    assert pickle.loads(pickle.dumps(forecasts))._limit_of == {}  # noqa: S301


def test_the_state_survives_a_snapshot_and_continues_identically() -> None:
    values = ramp(CROSSING + 5)
    whole = make()
    expected = run(whole, values)
    first = make()
    run(first, values[:90])
    restored = pickle.loads(pickle.dumps(first))  # noqa: S301
    rest = [(i + 90, u) for i, u in run_offset(restored, values[90:], 90)]
    assert [(i, u.type, u.metadata) for i, u in expected if i >= 90] == [
        (i, u.type, u.metadata) for i, u in rest
    ]


def run_offset(forecasts: LimitForecasts, values, offset: int) -> list[tuple[int, IncidentUpdate]]:
    out = []
    for i, value in enumerate(values):
        out += [(i, u) for u in forecasts.step([window(offset + i, float(value))])]
    return out


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError):
        make(horizon=0)


# --- in the dataflow --------------------------------------------------------------------------


class NeverAnomalous:
    def score_one(self, aggregate: WindowAggregate) -> float:
        return 0.0

    def learn_one(self, aggregate: WindowAggregate) -> None:
        pass


def test_the_dataflow_opens_predicted_incidents_only_with_forecast_limits() -> None:
    values = ramp(CROSSING - 20)
    lines = [
        f"disk,host=web-1,path=/var used_percent={v} {T0 + i * 60 * S + 5 * S}".encode()
        for i, v in enumerate(values)
    ]

    def incidents_of(**overrides) -> list[IncidentUpdate]:
        settings = Settings(window_seconds=60, allowed_lateness_seconds=0, **overrides)
        sink: list = []
        parts = FlowParts(
            source=TestingSource(lines, batch_size=10),
            windows_sink=TestingSink([]),
            incidents_sink=TestingSink(sink),
            dead_letters_sink=TestingSink([]),
            detector_factory=per_series(NeverAnomalous),
            counters=PipelineCounters(),
        )
        run_main(build_detection_flow(settings, parts, shards=4))
        return [u for _, batch in sink for u in batch]

    predicted = incidents_of(forecast_limits="disk.used_percent>95")
    assert predicted and predicted[0].type is IncidentEventType.OPENED
    assert {u.metadata["kind"] for u in predicted} == {"predicted"}
    assert incidents_of(forecast_limits="") == []
