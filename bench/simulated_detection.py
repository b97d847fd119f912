"""Detection on the simulator's ground truth, through the real dataflow (in process).

Runs HOURS of simulated metrics for HOSTS hosts through ``build_detection_flow`` with the real
detector, then matches opened incidents to the injected anomalies. Prints and saves
``bench/results/simulated_detection.json``.

    .venv/bin/python bench/simulated_detection.py --hosts 4 --hours 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.simulator import MetricsSimulator
from incidents.config import Settings
from incidents.schemas import IncidentEventType
from incidents.telemetry import PipelineCounters
from models.detector import DetectorConfig, build_bank
from pipelines.detect import FlowParts, build_detection_flow

S = 1_000_000_000
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = Settings()
    warmup_s = (DetectorConfig().min_history + 4) * settings.window_seconds
    start = 1_700_000_000 * S
    sim = MetricsSimulator(hosts=args.hosts, seed=args.seed, start_ns=start, warmup_s=warmup_s)
    messages = [m for _ in range(int(args.hours * 360)) for m in sim.tick()]

    windows: list = []
    incidents: list = []
    counters = PipelineCounters()
    parts = FlowParts(
        source=TestingSource(messages, batch_size=64),
        windows_sink=TestingSink(windows),
        incidents_sink=TestingSink(incidents),
        dead_letters_sink=TestingSink([]),
        detector_factory=build_bank,
        counters=counters,
    )
    started = time.perf_counter()
    run_main(build_detection_flow(settings, parts))
    elapsed = time.perf_counter() - started

    opened = [u for _, batch in incidents for u in batch if u.type is IncidentEventType.OPENED]
    slack = 3 * settings.window_ns
    detected: set[int] = set()
    false_incidents = 0
    for update in opened:
        matches = [
            i
            for i, a in enumerate(sim.injected)
            if a.series == update.series
            and a.start_ns - settings.window_ns <= update.window_start_ns <= a.end_ns + slack
        ]
        detected.update(matches)
        false_incidents += not matches
    by_kind: dict[str, list[int]] = {}
    for i, a in enumerate(sim.injected):
        by_kind.setdefault(a.kind, [0, 0])
        by_kind[a.kind][0] += i in detected
        by_kind[a.kind][1] += 1
    values = counters.snapshot()
    result = {
        "hosts": args.hosts,
        "hours": args.hours,
        "series": len(sim.series),
        "points": int(values["points"]),
        "windows": int(values["windows"]),
        "seconds": round(elapsed, 2),
        "points_per_second": round(values["points"] / elapsed),
        "injected": len(sim.injected),
        "detected": len(detected),
        "incidents_opened": len(opened),
        "false_incidents": false_incidents,
        "detected_by_kind": {k: f"{d}/{n}" for k, (d, n) in sorted(by_kind.items())},
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simulated_detection.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
