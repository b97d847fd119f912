"""The detection dataflow on Bytewax's testing source and sink (no services, no threads)."""

from dataclasses import dataclass

from bytewax.testing import TestingSink, TestingSource, run_main

from incidents.config import Settings
from incidents.schemas import AnomalyScore, DeadLetter, IncidentEventType, WindowAggregate
from incidents.telemetry import PipelineCounters
from pipelines.detect import FlowParts, build_detection_flow
from pipelines.operators import per_series

S = 1_000_000_000
T0 = 1_700_000_040 * S  # a window boundary for 60 s windows


@dataclass
class LimitDetector:
    """Deterministic stand-in for the learned detector: anomalous above a fixed mean."""

    limit: float = 50.0
    learned: int = 0

    def score_one(self, aggregate: WindowAggregate) -> float:
        return 1.0 if aggregate.mean > self.limit else 0.0

    def learn_one(self, aggregate: WindowAggregate) -> None:
        self.learned += 1


def line(value: float, t_s: float, host: str = "db-1") -> bytes:
    return f"postgresql,host={host} connections={value} {T0 + int(t_s * S)}".encode()


def run_flow(messages: list[list[bytes]], **settings_overrides):
    settings = Settings(
        window_seconds=60,
        allowed_lateness_seconds=20,
        resolve_after_windows=2,
        anomaly_threshold=0.95,
        **settings_overrides,
    )
    windows, incidents, dead = [], [], []
    counters = PipelineCounters()
    parts = FlowParts(
        source=TestingSource([m for batch in messages for m in batch], batch_size=1),
        windows_sink=TestingSink(windows),
        incidents_sink=TestingSink(incidents),
        dead_letters_sink=TestingSink(dead),
        detector_factory=per_series(LimitDetector),
        counters=counters,
    )
    run_main(build_detection_flow(settings, parts, shards=4))
    flat_windows = [s for _, batch in windows for s in batch]
    flat_incidents = [u for _, batch in incidents for u in batch]
    return flat_windows, flat_incidents, dead, counters.snapshot()


def test_windows_aggregate_points_in_event_time():
    batch = [b"\n".join(line(v, t) for v, t in [(10, 0), (20, 10), (30, 50), (40, 60), (42, 70)])]
    windows, _, dead, counters = run_flow([batch])
    by_start = {s.aggregate.window_start_ns: s.aggregate for s in windows}
    assert set(by_start) == {T0, T0 + 60 * S}
    first = by_start[T0]
    assert (first.count, first.mean, first.minimum, first.maximum, first.last) == (
        3,
        20.0,
        10,
        30,
        30,
    )
    assert by_start[T0 + 60 * S].count == 2
    assert dead == [] and counters["points"] == 5 and counters["windows"] == 2


def test_out_of_order_within_lateness_is_kept_and_too_late_is_counted_and_dropped():
    messages = [
        [line(10, 5)],
        [line(10, 70)],  # window 0 stays open until t >= 60 + 20
        [line(30, 15)],  # late but within the allowed lateness: joins window 0
        [line(10, 200)],  # closes windows 0 and 1
        [line(99, 20)],  # window 0 is closed: dropped and counted
    ]
    windows, _, _, counters = run_flow(messages)
    first = next(s.aggregate for s in windows if s.aggregate.window_start_ns == T0)
    assert first.count == 2 and first.mean == 20.0
    assert counters["late_points"] == 1
    assert all(s.aggregate.maximum != 99 for s in windows)


def test_bad_lines_go_to_the_dead_letter_output_and_the_rest_flows_on():
    messages = [[line(10, 0) + b"\ncpu,host=a usage=abc 1\n" + line(20, 10)], [b"{not json"]]
    windows, _, dead, counters = run_flow(messages)
    assert len(dead) == 2 and all(isinstance(d, DeadLetter) for d in dead)
    assert dead[0].raw == b"cpu,host=a usage=abc 1" and "usage" in dead[0].reason
    assert dead[1].raw == b"{not json"
    assert windows[0].aggregate.count == 2
    assert counters["dead_letters"] == 2


def test_a_spike_opens_an_incident_that_auto_resolves():
    normal = [(10.0, t) for t in range(0, 300, 10)]
    spike = [(90.0, t) for t in range(300, 360, 10)]
    after = [(10.0, t) for t in range(360, 600, 10)]
    msgs = [[line(v, t) for v, t in normal + spike + after]]
    windows, incidents, _, counters = run_flow(msgs)
    assert sum(1 for s in windows if s.is_anomaly) == 1
    kinds = [u.type for u in incidents]
    assert kinds == [IncidentEventType.OPENED, IncidentEventType.RESOLVED]
    assert incidents[0].series == "postgresql,host=db-1 connections"
    assert incidents[0].window_start_ns == T0 + 300 * S
    assert counters["incidents"] == 1 and counters["anomalies"] == 1


def test_each_series_has_its_own_detector_and_incident():
    msgs = [
        [line(90.0, t, host=h) for t in range(0, 120, 10) for h in ("db-1", "db-2")]
        + [line(10.0, t, host="db-3") for t in range(0, 120, 10)]
    ]
    windows, incidents, _, _ = run_flow(msgs)
    assert {u.series for u in incidents} == {
        "postgresql,host=db-1 connections",
        "postgresql,host=db-2 connections",
    }
    assert all(isinstance(s, AnomalyScore) for s in windows)
    assert len(windows) == 6


def test_telegraf_json_and_line_protocol_mix_in_one_flow():
    ts = (T0 + 5 * S) / S
    json_msg = (
        b'{"metrics":[{"name":"postgresql","tags":{"host":"db-1"},'
        b'"fields":{"connections":30},"timestamp":' + str(ts).encode() + b"}]}"
    )
    windows, _, dead, _ = run_flow([[line(10, 0), json_msg]])
    assert dead == []
    assert windows[0].aggregate.count == 2 and windows[0].aggregate.mean == 20.0
