from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import incidents.analyzers as analyzers
from incidents.analyzers import (
    AnalysisBackend,
    AnomalyDetector,
    AnomalyResult,
    BackendNotFoundError,
    Limit,
    PredictedIncident,
    PredictiveAnalyzer,
    load_backend,
)

START = datetime(2024, 5, 1, tzinfo=UTC)


def noisy(n: int = 300, spike_at: int | None = 250, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    values = 20.0 + rng.normal(0.0, 1.0, n)
    if spike_at is not None:
        values[spike_at] += 15.0
    return [float(v) for v in values]


def rising(n: int = 200, seed: int = 2) -> list[float]:
    """Disk usage filling at 0.2 points per minute, from 50 % to about 90 %."""
    rng = np.random.default_rng(seed)
    return [float(50.0 + 0.2 * i + rng.normal(0.0, 0.3)) for i in range(n)]


def test_the_seed_readme_example_works_as_written() -> None:
    metrics_data = noisy()
    historical_data = {"disk used_percent": rising()}

    async def example() -> tuple[list, list]:
        detector = AnomalyDetector()
        anomalies = await detector.detect_anomalies(metrics_data)
        predictor = PredictiveAnalyzer()
        predictions = await predictor.predict_incidents(historical_data)
        return anomalies, predictions

    anomalies, predictions = asyncio.run(example())
    assert all(isinstance(a, AnomalyResult) and a.is_anomaly for a in anomalies)
    assert 250 in [a.index for a in anomalies]
    assert all(isinstance(p, PredictedIncident) for p in predictions)


def test_a_spike_is_flagged_and_all_points_are_scored_on_request() -> None:
    detector = AnomalyDetector()
    values = noisy()
    flagged = asyncio.run(detector.detect_anomalies(values))
    assert 250 in [a.index for a in flagged]
    assert len(flagged) <= 3  # the rest of the noise stays below the threshold
    spike = next(a for a in flagged if a.index == 250)
    assert spike.series == "series" and spike.value == values[250] and spike.score >= 0.95
    every = asyncio.run(detector.detect_anomalies(values, all_points=True))
    assert [a.index for a in every] == list(range(len(values)))
    assert all(0.0 <= a.score <= 1.0 for a in every)
    assert {a.index for a in every if a.is_anomaly} == {a.index for a in flagged}


def test_inputs_of_every_shape() -> None:
    values = noisy(200, spike_at=150)
    stamps = [START + timedelta(minutes=i) for i in range(len(values))]
    shapes = {
        "numbers": values,
        "pairs": list(zip(stamps, values, strict=True)),
        "iso": [(s.isoformat(), v) for s, v in zip(stamps, values, strict=True)],
        "epoch_ns": [(int(s.timestamp()) * 10**9, v) for s, v in zip(stamps, values, strict=True)],
        "records": [{"timestamp": s, "value": v} for s, v in zip(stamps, values, strict=True)],
        "array": np.array(values),
    }
    detector = AnomalyDetector()
    for name, data in shapes.items():
        found = asyncio.run(detector.detect_anomalies(data))
        assert 150 in [a.index for a in found], name
    by_series = asyncio.run(detector.detect_anomalies({"cpu": shapes["pairs"], "mem": values}))
    assert {a.series for a in by_series} == {"cpu", "mem"}
    cpu = next(a for a in by_series if a.series == "cpu" and a.index == 150)
    assert cpu.timestamp == stamps[150]
    assert asyncio.run(detector.detect_anomalies([])) == []
    assert asyncio.run(detector.detect_anomalies({})) == []


def test_missing_values_do_not_stop_detection() -> None:
    values: list[float | None] = list(noisy(200, spike_at=150))
    values[10] = None
    values[20] = float("nan")
    found = asyncio.run(AnomalyDetector().detect_anomalies(values, all_points=True))
    assert found[10].score == 0.0 and found[20].score == 0.0
    assert found[150].is_anomaly


def test_bad_input_is_a_clear_error() -> None:
    detector = AnomalyDetector()
    with pytest.raises(TypeError, match="sequence"):
        asyncio.run(detector.detect_anomalies("12,13,14"))
    with pytest.raises(ValueError, match="item 1: value 'high' is not a number"):
        asyncio.run(detector.detect_anomalies([1.0, "high"]))
    with pytest.raises(TypeError, match="pair"):
        asyncio.run(detector.detect_anomalies([(1, 2, 3)]))
    with pytest.raises(ValueError, match="ISO 8601"):
        asyncio.run(detector.detect_anomalies([("yesterday", 1.0)]))
    with pytest.raises(ValueError, match="threshold"):
        AnomalyDetector(threshold=0.0)


def test_a_rising_series_predicts_the_breach_at_about_the_right_time() -> None:
    values = rising()
    stamps = [START + timedelta(minutes=i) for i in range(len(values))]
    history = {"disk,host=a used_percent": list(zip(stamps, values, strict=True))}
    predictor = PredictiveAnalyzer(limits={"disk*": 95.0}, horizon=60)
    predictions = asyncio.run(predictor.predict_incidents(history))
    assert len(predictions) == 1
    p = predictions[0]
    # the trend (0.2 per minute) reaches 95 % 26 minutes after the last point (about 89.8 %);
    # the interval's upper bound gets there a few minutes earlier
    assert (p.series, p.limit, p.direction, p.limit_source) == (
        "disk,host=a used_percent",
        95.0,
        "above",
        "configured",
    )
    assert 18 <= p.steps_ahead <= 27
    assert p.predicted_time == stamps[-1] + timedelta(minutes=p.steps_ahead)
    assert p.predicted_index == len(values) - 1 + p.steps_ahead
    assert p.bound >= 95.0 and 90.0 < p.forecast_value <= 95.5
    assert 0.0 < p.probability <= 1.0
    # nothing within 10 minutes; a call's limits add to (and override) the analyzer's own
    assert asyncio.run(predictor.predict_incidents(history, horizon=10)) == []
    soon = asyncio.run(predictor.predict_incidents(history, limits={"disk*": 91.0}, horizon=10))
    assert len(soon) == 1 and soon[0].steps_ahead < 10


def test_limits_below_epoch_timestamps_and_the_envelope() -> None:
    falling = [100.0 - v for v in rising()]
    epoch = [(1_700_000_000 + 60 * i, v) for i, v in enumerate(falling)]
    predictor = PredictiveAnalyzer(horizon=60)
    below = asyncio.run(
        predictor.predict_incidents({"free": epoch}, limits={"free": Limit(5.0, "below")})
    )
    assert len(below) == 1 and below[0].direction == "below"
    assert below[0].predicted_time == 1_700_000_000 + 60 * (199 + below[0].steps_ahead)
    # no configured limit: held to its own envelope, which a steady series does not leave
    steady = asyncio.run(predictor.predict_incidents(noisy(300, spike_at=None)))
    assert steady == []
    limits, source = predictor.limits_for("x", [1.0, 2.0, 3.0, 4.0, 5.0], {})
    assert source == "envelope" and [lim.direction for lim in limits] == ["above", "below"]
    assert limits[0].value == pytest.approx(3.0 + 4.0 * 1.4826)
    with pytest.raises(ValueError, match="direction"):
        Limit(1.0, "sideways")  # type: ignore[arg-type]


@dataclass(frozen=True)
class FakeBreach:
    step: int
    limit: float
    direction: str
    value: float
    bound: float
    probability: float


class FakeBackend:
    """Scores the values themselves; predicts every limit breached at step 3."""

    def anomaly_scores(self, values: Sequence[float], times_ns: Sequence[int]) -> list[float]:
        return list(values)

    def forecast_breaches(self, values, limits, horizon, level) -> list[FakeBreach]:
        return [FakeBreach(3, limit, direction, limit, limit, 0.5) for limit, direction in limits]


def test_any_backend_of_the_protocol_can_be_passed_in() -> None:
    backend = FakeBackend()
    assert isinstance(backend, AnalysisBackend)
    found = asyncio.run(AnomalyDetector(0.5, backend=backend).detect_anomalies([0.1, 0.7, 0.4]))
    assert [(a.index, a.score) for a in found] == [(1, 0.7)]
    predicted = asyncio.run(
        PredictiveAnalyzer({"a": 9.0}, backend=backend).predict_incidents({"a": [1, 2], "b": [5]})
    )
    assert [(p.series, p.steps_ahead, p.predicted_index) for p in predicted] == [("a", 3, 4)]


def test_a_missing_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(load_backend()).__name__ == "ModelBackend"
    monkeypatch.setattr(analyzers, "entry_points", lambda group: [])
    with pytest.raises(BackendNotFoundError, match="incidents.analyzers.*pip install -e"):
        AnomalyDetector()
    with pytest.raises(BackendNotFoundError, match="no analysis backend 'default'"):
        PredictiveAnalyzer()
    assert isinstance(AnomalyDetector(backend=FakeBackend()).backend, FakeBackend)


def test_incidents_does_not_import_models() -> None:
    source = Path(analyzers.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"models", "connectors", "pipelines", "api"})
