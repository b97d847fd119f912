"""The metrics simulator: deterministic, complete, parseable, with real and recorded anomalies."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import pytest

from connectors.simulator import ANOMALY_KINDS, InjectedAnomaly, MetricsSimulator
from incidents.parsing import parse_message
from incidents.schemas import MetricPoint

START = 1_700_000_000_000_000_000
INTERVAL_NS = 10_000_000_000


def run(sim: MetricsSimulator, ticks: int) -> list[list[bytes]]:
    return [sim.tick() for _ in range(ticks)]


def parse_all(messages: list[bytes]) -> list[MetricPoint]:
    points: list[MetricPoint] = []
    for message in messages:
        result = parse_message(message)
        assert result.dead_letters == []
        points += result.points
    return points


def values_by_series(ticks: list[list[bytes]]) -> dict[str, dict[int, float]]:
    values: dict[str, dict[int, float]] = defaultdict(dict)
    for messages in ticks:
        for point in parse_all(messages):
            values[point.series][point.timestamp_ns] = point.value
    return values


def small(**overrides: object) -> MetricsSimulator:
    params: dict[str, object] = {
        "hosts": 3,
        "start_ns": START,
        "warmup_s": 600.0,
        "anomaly_every_s": 300.0,
        "anomaly_duration_s": 120.0,
    }
    params.update(overrides)
    return MetricsSimulator(**params)  # type: ignore[arg-type]


def test_same_seed_same_output_different_seed_different_output() -> None:
    first, second, other = small(), small(), small(seed=8)
    assert run(first, 150) == run(second, 150)
    assert first.injected == second.injected
    assert run(small(), 5) != run(other, 5)


def test_every_series_once_per_tick_with_the_tick_timestamp() -> None:
    sim = small(hosts=4, lines_per_message=7)
    assert len(sim.series) == 4 * 9
    for tick in range(30):
        assert sim.now_ns == START + tick * INTERVAL_NS
        points = parse_all(sim.tick())
        assert sorted(p.series for p in points) == sorted(sim.series)
        assert {p.timestamp_ns for p in points} == {START + tick * INTERVAL_NS}
    assert sim.tick_index == 30


def test_measurements_fields_and_tags_look_like_telegraf() -> None:
    points = parse_all(small(hosts=1).tick())
    fields = {(p.measurement, p.field): dict(p.tags) for p in points}
    assert set(fields) == {
        ("cpu", "usage_user"),
        ("cpu", "usage_system"),
        ("mem", "used_percent"),
        ("disk", "used_percent"),
        ("net", "bytes_recv"),
        ("http", "latency_ms"),
        ("http", "requests"),
        ("postgresql", "connections"),
        ("postgresql", "query_time_ms"),
    }
    assert fields[("cpu", "usage_user")]["cpu"] == "cpu-total"
    assert fields[("disk", "used_percent")]["path"] == "/"
    assert "service" in fields[("http", "latency_ms")]
    assert all(tags["host"] == "host-01" and "tenant" not in tags for tags in fields.values())


def test_tenant_tag_only_with_several_tenants() -> None:
    points = parse_all(small(hosts=4, tenants=("acme", "globex")).tick())
    assert {p.tenant for p in points} == {"acme", "globex"}
    assert all(dict(p.tags)["tenant"] in {"acme", "globex"} for p in points)


@pytest.mark.parametrize("lines_per_message", [1, 5, 50])
def test_messages_are_batches_of_lines(lines_per_message: int) -> None:
    sim = small(hosts=3, lines_per_message=lines_per_message)
    messages = sim.tick()
    line_counts = [m.count(b"\n") for m in messages]
    assert sum(line_counts) == sim.lines_per_tick == 3 * 6
    assert max(line_counts) <= lines_per_message
    assert len(messages) == math.ceil(sim.lines_per_tick / lines_per_message)
    assert len(messages) == sim.messages_per_tick()


def test_output_parses_back_into_the_expected_number_of_points() -> None:
    sim = small(hosts=5)
    points = [p for messages in run(sim, 40) for p in parse_all(messages)]
    assert len(points) == 40 * 5 * 9


def test_values_are_non_negative_and_percentages_bounded() -> None:
    sim = small(hosts=6, anomaly_every_s=60.0, anomaly_duration_s=50.0, warmup_s=0.0)
    for messages in run(sim, 600):
        for point in parse_all(messages):
            assert point.value >= 0.0
            if point.field.endswith("percent") or point.measurement == "cpu":
                assert point.value <= 100.0


def test_no_anomaly_during_warmup() -> None:
    warmup_ticks = 60
    with_anomalies = small(warmup_s=warmup_ticks * 10.0)
    without = small(warmup_s=warmup_ticks * 10.0, anomaly_every_s=0.0)
    assert run(with_anomalies, warmup_ticks) == run(without, warmup_ticks)
    assert with_anomalies.injected == []
    with_anomalies.tick()
    assert [a.start_ns for a in with_anomalies.injected] == [START + warmup_ticks * INTERVAL_NS]


def test_one_anomaly_every_period_of_every_kind_on_known_series() -> None:
    sim = small()
    run(sim, 60 + 4 * 30)
    starts = [a.start_ns for a in sim.injected]
    assert starts == [START + (60 + 30 * k) * INTERVAL_NS for k in range(4)]
    assert {a.kind for a in sim.injected} == set(ANOMALY_KINDS)
    assert all(a.series in sim.series for a in sim.injected)
    for anomaly in sim.injected:
        expected_ticks = range(1, 4) if anomaly.kind == "spike" else [12]
        assert (anomaly.end_ns - anomaly.start_ns) // INTERVAL_NS in expected_ticks


def in_window(anomaly: InjectedAnomaly, ts: int) -> bool:
    return anomaly.start_ns <= ts < anomaly.end_ns


def test_anomalies_really_deviate_and_only_inside_their_window() -> None:
    ticks = 60 + 8 * 30
    sim = small()
    twin = small(anomaly_every_s=0.0)
    seen = values_by_series(run(sim, ticks))
    normal = values_by_series(run(twin, ticks))
    sigma = {p.series: p.sigma for p in sim.profiles}
    integer = {p.series: p.integer for p in sim.profiles}
    assert len(sim.injected) == 8
    for anomaly in sim.injected:
        s = anomaly.series
        tolerance = 1.0 if integer[s] else 0.002
        window = sorted(ts for ts in seen[s] if in_window(anomaly, ts))
        deviation = [seen[s][ts] - normal[s][ts] for ts in window]
        if anomaly.kind == "spike":
            assert all(abs(d) >= 8 * sigma[s] - tolerance for d in deviation), anomaly
        elif anomaly.kind == "level_shift":
            assert all(abs(d) >= 6 * sigma[s] - tolerance for d in deviation), anomaly
            assert max(deviation) - min(deviation) <= 2 * tolerance, anomaly
        elif anomaly.kind == "flatline":
            assert len({seen[s][ts] for ts in window}) == 1, anomaly
            assert len({normal[s][ts] for ts in window}) > 1
        else:
            magnitudes = [abs(d) for d in deviation]
            assert magnitudes == sorted(magnitudes), anomaly
            assert magnitudes[-1] >= 8 * sigma[s] - tolerance, anomaly
            assert magnitudes[0] < magnitudes[-1] / 4, anomaly
    for series, by_ts in seen.items():
        for ts, value in by_ts.items():
            if not any(a.series == series and in_window(a, ts) for a in sim.injected):
                assert value == normal[series][ts], (series, ts)


def test_resuming_at_a_tick_continues_identically() -> None:
    original = small()
    run(original, 75)
    resumed = small(start_tick=75)
    assert resumed.now_ns == original.now_ns
    assert resumed.injected == original.injected
    assert run(resumed, 80) == run(original, 80)
    assert resumed.injected == original.injected


def test_default_start_is_two_hours_ago_on_the_interval_grid() -> None:
    before = time.time_ns()
    sim = MetricsSimulator(interval_s=15.0)
    assert sim.now_ns % 15_000_000_000 == 0
    two_hours = 7_200 * 10**9
    assert before - two_hours - 15 * 10**9 <= sim.now_ns <= time.time_ns() - two_hours


@pytest.mark.parametrize(
    "overrides",
    [
        {"hosts": 0},
        {"interval_s": 0.0},
        {"lines_per_message": 0},
        {"tenants": ()},
        {"tenants": ("a", "a")},
        {"anomaly_duration_s": 0.0},
        {"warmup_s": -1.0},
    ],
)
def test_invalid_parameters(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        small(**overrides)


def test_filling_disks_climb_steadily_then_drop_back_and_the_rest_is_unchanged() -> None:
    from connectors.simulator import FILL_CYCLE_S, FILL_FROM, FILL_LEAD_S, FILL_TO

    plain = small(anomaly_every_s=0.0)
    filling = small(anomaly_every_s=0.0, filling_disks=2)
    ticks = int(FILL_CYCLE_S / 10) + 20
    plain_values = values_by_series(run(plain, ticks))
    filling_values = values_by_series(run(filling, ticks))
    assert len(filling.filling_series) == 2
    assert all(
        s.startswith("disk,") and s.endswith(" used_percent") for s in filling.filling_series
    )
    for series in filling.filling_series:
        values = [v for _, v in sorted(filling_values[series].items())]
        drop = (FILL_CYCLE_S - FILL_LEAD_S) / 10  # the tick of the cleanup
        before, after = values[int(drop) - 1], values[int(drop)]
        assert before > FILL_TO - 1.0 and after < FILL_FROM + 1.0
        steps = [b - a for a, b in zip(values[:99], values[1:100], strict=True)]
        assert abs(sum(steps) / len(steps) - (FILL_TO - FILL_FROM) / (FILL_CYCLE_S / 10)) < 0.01
    untouched = set(plain_values) - set(filling.filling_series)
    assert untouched and all(plain_values[s] == filling_values[s] for s in untouched)


def test_filling_disks_cannot_exceed_the_hosts() -> None:
    with pytest.raises(ValueError, match="filling_disks"):
        small(filling_disks=4)
