"""The dataflow writing through the real store sinks into SQLite (the local default)."""

import io

from bytewax.testing import TestingSource, run_main

from connectors.sinks import StoreSink, TelemetryReporter
from connectors.store import Store
from incidents.config import Settings
from incidents.records import IncidentQuery
from incidents.telemetry import PipelineCounters
from models.detector import DetectorConfig, build_bank
from pipelines.detect import FlowParts, build_detection_flow

S = 1_000_000_000
T0 = 1_700_000_040 * S


def lp(value: float, t_s: int, host: str = "db-1") -> bytes:
    return f"postgresql,host={host} connections={value} {T0 + t_s * S}".encode()


def run_into_store(tmp_path, messages, detector_factory=None):
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    Store(url).migrate()
    counters = PipelineCounters()
    out = io.StringIO()
    reporter = TelemetryReporter(counters, lambda: Store(url), interval_s=0.05, out=out)
    parts = FlowParts(
        source=TestingSource(messages, batch_size=4),
        windows_sink=StoreSink(lambda: Store(url), "windows", reporter),
        incidents_sink=StoreSink(lambda: Store(url), "incidents"),
        dead_letters_sink=StoreSink(lambda: Store(url), "dead_letters"),
        detector_factory=detector_factory or (lambda: build_bank(DetectorConfig(min_history=24))),
        counters=counters,
    )
    run_main(build_detection_flow(Settings(window_seconds=60), parts, shards=4))
    return Store(url), out.getvalue()


def test_windows_incidents_dead_letters_and_stats_reach_the_store(tmp_path):
    values = [10.0 + (i % 7) * 0.3 for i in range(6 * 120)]
    for i in range(6 * 100, 6 * 102):
        values[i] = 80.0
    messages = [lp(v, 10 * i) for i, v in enumerate(values)]
    messages.insert(50, b"postgresql,host=db-1 connections=oops 1")
    messages.insert(51, b"\xff\xfe not even text")
    store, progress = run_into_store(tmp_path, messages)

    history = store.window_history(
        "default", "postgresql,host=db-1 connections", None, None, limit=1000
    )
    assert len(history) == 120
    assert store.dead_letter_count() == 2
    incidents, total = store.list_incidents("default", IncidentQuery())
    assert total >= 1
    spike = [i for i in incidents if i.first_seen.timestamp() * S >= T0 + 5940 * S]
    assert spike, [(i.first_seen, i.peak_score) for i in incidents]
    stats = store.pipeline_stats()
    assert stats["points"] == len(values) and stats["dead_letters"] == 2
    assert stats["windows"] == 120
    assert "[dataflow]" in progress


def test_extreme_values_and_timestamps_never_stop_the_flow(tmp_path):
    messages = [
        lp(1e300, 0),
        lp(-1e300, 10),
        b"m,host=x v=1 9223372036854775807",
        b"m,host=x v=1 -9223372036854775807",
        b"m,host=x v=1e309 5",
        b"m,host=x v=1 99999999999999999999",
        lp(1.0, 100),
    ]
    store, _ = run_into_store(tmp_path, messages)
    assert store.dead_letter_count() == 4
    assert store.pipeline_stats()["points"] == 3
