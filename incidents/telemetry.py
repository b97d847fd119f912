"""Dataflow counters shared by the steps of one process (points, dead letters, late points, ...).

Counters are telemetry, not state: they are not part of recovery snapshots. A reporter in
``connectors`` periodically writes them to the store (for the API's ``/metrics``) and prints
progress.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

COUNTER_NAMES = (
    "points",
    "dead_letters",
    "late_points",
    "windows",
    "anomalies",
    "incidents",
    "predicted_incidents",
)


class PipelineCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(COUNTER_NAMES, 0.0)

    def add(self, name: str, amount: float = 1.0) -> None:
        if amount:
            with self._lock:
                self._values[name] = self._values.get(name, 0.0) + amount

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(COUNTER_NAMES, 0.0)


def format_progress(
    values: Mapping[str, float], elapsed_s: float, recent_rate: float | None = None
) -> str:
    """One progress line; ``recent_rate`` is points/s over the last interval, if known."""
    rate = recent_rate
    if rate is None:
        rate = values.get("points", 0.0) / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"[dataflow] {elapsed_s:7.1f}s  points={int(values.get('points', 0)):,} ({rate:,.0f}/s)"
        f"  windows={int(values.get('windows', 0)):,}"
        f"  anomalies={int(values.get('anomalies', 0)):,}"
        f"  incidents={int(values.get('incidents', 0)):,}"
        f"  late={int(values.get('late_points', 0)):,}"
        f"  dlq={int(values.get('dead_letters', 0)):,}"
    )


COUNTERS = PipelineCounters()
"""The process-wide counters every dataflow step of this process adds to."""
