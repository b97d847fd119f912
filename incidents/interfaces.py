"""Interfaces the domain core defines and the outer rooms implement.

``incidents`` imports nothing from ``models``/``connectors``/``pipelines``/``api``; code there
implements these protocols, and composition roots (the CLI, the dataflow builder, the API app
factory) wire implementations in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from incidents.records import Incident, WindowRecord
from incidents.schemas import AnomalyScore, DeadLetter, IncidentUpdate, WindowAggregate


@runtime_checkable
class SeriesDetector(Protocol):
    """Online anomaly detector for one series: learn/score one window at a time, bounded memory.

    ``score_one`` must use only what ``learn_one`` has seen so far plus the given window
    (strictly causal), and return a score in [0, 1].
    """

    def score_one(self, aggregate: WindowAggregate) -> float: ...

    def learn_one(self, aggregate: WindowAggregate) -> None: ...


class DetectorFactory(Protocol):
    def __call__(self) -> SeriesDetector: ...


@runtime_checkable
class BatchDetector(Protocol):
    """Online anomaly detectors of many series (one shard), scoring a batch of windows at once.

    ``score_batch`` scores each window, then learns it, taking the windows of one series in
    order; it returns, per window, a score in [0, 1] and per-member components. Scores must be
    strictly causal, as for ``SeriesDetector``.
    """

    def score_batch(
        self, windows: Sequence[WindowAggregate]
    ) -> Sequence[tuple[float, Mapping[str, float]]]: ...


class PipelineSink(Protocol):
    """Where the detection dataflow's results go (SQLite/PostgreSQL store, InfluxDB, Kafka).

    Every method must be idempotent under replay (Bytewax recovery re-emits what came after the
    last snapshot): a replayed window overwrites itself, a replayed incident update is ignored.
    """

    def write_windows(self, scored: Iterable[AnomalyScore]) -> None:
        """Store each scored window aggregate (upsert by tenant, series and window start)."""
        ...

    def apply_incident_updates(
        self, updates: Iterable[IncidentUpdate]
    ) -> Sequence[Incident] | None:
        """Apply the incident builder's steps; a store returns the incidents it changed."""
        ...

    def write_dead_letters(self, letters: Iterable[DeadLetter]) -> None: ...

    def record_pipeline_stats(self, worker: str, counters: Mapping[str, float]) -> None: ...


class WindowReader(Protocol):
    """Where the API reads window aggregates from: the SQL store, or InfluxDB when configured."""

    def window_history(
        self, tenant: str, series: str, start_ns: int | None, end_ns: int | None, limit: int
    ) -> list[WindowRecord]: ...

    def latest_windows(
        self, tenant: str, *, measurement: str | None = None, limit: int = 100
    ) -> list[WindowRecord]: ...
