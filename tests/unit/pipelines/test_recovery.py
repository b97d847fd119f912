"""Bytewax recovery: a crash mid-stream and a resume give the same results as one clean run.

Outputs are at-least-once across a crash (what ran after the last snapshot runs again); the
store makes them effectively once (window upserts, incident updates applied once per window).
Here that is modelled by keying the outputs the same way.
"""

from datetime import timedelta

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from incidents.config import Settings
from incidents.telemetry import PipelineCounters
from models.detector import DetectorConfig, build_bank
from pipelines.detect import FlowParts, build_detection_flow

S = 1_000_000_000
T0 = 1_700_000_040 * S


def messages() -> list[bytes]:
    out = []
    for i in range(6 * 90):
        value = 10.0 + (i % 9) * 0.5 + (60.0 if 6 * 70 <= i < 6 * 72 else 0.0)
        out.append(f"postgresql,host=db-1 connections={value} {T0 + 10 * i * S}".encode())
        out.append(f"cpu,host=web-1 usage={20 + i % 4} {T0 + 10 * i * S}".encode())
    return out


def detector():
    return build_bank(DetectorConfig(min_history=24))


def run(items, windows, incidents, recovery=None):
    parts = FlowParts(
        source=TestingSource(items, batch_size=20),
        windows_sink=TestingSink(windows),
        incidents_sink=TestingSink(incidents),
        dead_letters_sink=TestingSink([]),
        detector_factory=detector,
        counters=PipelineCounters(),
    )
    flow = build_detection_flow(Settings(window_seconds=60), parts, shards=4)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)


def keyed(windows, incidents):
    by_window = {
        (s.aggregate.series, s.aggregate.window_start_ns): (s.aggregate, s.score)
        for _, batch in windows
        for s in batch
    }
    updates = {
        (u.fingerprint, u.type, u.window_start_ns): u.peak_score
        for _, batch in incidents
        for u in batch
    }
    return by_window, updates


def test_crash_and_resume_equals_an_uninterrupted_run(tmp_path):
    items = messages()
    clean_windows, clean_incidents = [], []
    run(items, clean_windows, clean_incidents)

    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    crashing = items[:700] + [TestingSource.ABORT()] + items[700:]
    windows, incidents = [], []
    run(crashing, windows, incidents, recovery)
    first_run_windows = len(windows)
    run(crashing, windows, incidents, recovery)

    assert 0 < first_run_windows < len(windows)
    expected = keyed(clean_windows, clean_incidents)
    assert keyed(windows, incidents) == expected
    assert any(k[1] == "opened" for k in expected[1])
