"""The logic of each dataflow step, as small classes Bytewax calls into.

Each step wraps a pure piece of the domain core (parsing, ``WindowBook``, the per-series
detectors, ``IncidentBuilder``) and adds to the process counters. Everything here is keyed by
shard (a stable hash of the series), so one stateful call handles many series at once.
"""

from __future__ import annotations

import pickle  # nosec B403
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bytewax.operators import StatefulLogic

from incidents.interfaces import BatchDetector, SeriesDetector
from incidents.lifecycle import IncidentBuilder
from incidents.parsing import parse_message
from incidents.schemas import (
    AnomalyScore,
    DeadLetter,
    IncidentEventType,
    IncidentUpdate,
    MetricPoint,
    PartialAggregate,
    WindowAggregate,
)
from incidents.telemetry import PipelineCounters
from incidents.windowing import WindowBook, combine_points

ShardBatch = tuple[str, list[PartialAggregate]]
S = TypeVar("S")


class ParseAndCombine:
    """Parse a batch of raw messages and combine its points per (series, window) and shard.

    Emits dead letters as they are and one ``(shard, partials)`` item per shard touched.
    """

    def __init__(self, window_ns: int, shards: int, counters: PipelineCounters) -> None:
        self.window_ns = window_ns
        self.shards = shards
        self.counters = counters

    def __call__(self, messages: list[bytes]) -> Iterable[DeadLetter | ShardBatch]:
        points: list[MetricPoint] = []
        out: list[DeadLetter | ShardBatch] = []
        now_ns = time.time_ns()
        for message in messages:
            raw = message if isinstance(message, bytes) else bytes(message)
            # A Kafka payload carries the message's timestamp: the best default for points
            # without one (Telegraf always sends one; hand-written producers may not).
            default_ns = getattr(message, "timestamp_ns", None) or now_ns
            result = parse_message(raw, default_timestamp_ns=default_ns)
            points.extend(result.points)
            out.extend(result.dead_letters)
        self.counters.add("points", len(points))
        self.counters.add("dead_letters", len(out))
        out.extend(combine_points(points, self.window_ns, self.shards).items())
        return out


def is_dead_letter(item: object) -> bool:
    return isinstance(item, DeadLetter)


def restore(snapshot: bytes | None, fresh: Callable[[], S]) -> S:
    """State from a recovery snapshot written by ``snapshot_of``, else a fresh one."""
    if snapshot is None:
        return fresh()
    return pickle.loads(snapshot)  # noqa: S301  # nosec B301


def snapshot_of(state: object) -> bytes:
    """An immutable snapshot for Bytewax recovery.

    Bytewax asks every touched key for a snapshot at each epoch, with or without recovery;
    pickling is several times cheaper than the ``copy.deepcopy`` its built-in operators do.
    """
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class WindowLogic(StatefulLogic[list[PartialAggregate], list[WindowAggregate], bytes]):
    """Bytewax stateful logic around one shard's ``WindowBook``.

    Windows close on event time as partials arrive; a wall-clock timer closes the windows of
    series that went quiet, and end of input closes everything.
    """

    def __init__(
        self,
        book: WindowBook,
        counters: PipelineCounters,
        idle_close_s: float,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.book = book
        self.counters = counters
        self.idle_ns = int(idle_close_s * 1e9)
        self.clock = clock
        book.touch_all(clock())

    def on_item(self, value: list[PartialAggregate]) -> tuple[list[list[WindowAggregate]], bool]:
        result = self.book.add(value, self.clock())
        self.counters.add("late_points", result.late_points)
        return ([result.closed] if result.closed else []), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[list[WindowAggregate]], bool]:
        closed = self.book.close_idle(self.clock(), self.idle_ns)
        return ([closed] if closed else []), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[list[WindowAggregate]], bool]:
        closed = self.book.close_all()
        return ([closed] if closed else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if not self.book.open_windows:
            return None
        return datetime.now(UTC) + timedelta(seconds=max(self.idle_ns / 2e9, 0.5))

    def snapshot(self) -> bytes:
        return snapshot_of(self.book)


class PerSeriesDetectors:
    """A ``BatchDetector`` made of one ``SeriesDetector`` per series (custom or test detectors)."""

    def __init__(self, factory: Callable[[], SeriesDetector]) -> None:
        self.factory = factory
        self.detectors: dict[str, SeriesDetector] = {}

    def score_batch(
        self, windows: Sequence[WindowAggregate]
    ) -> list[tuple[float, Mapping[str, float]]]:
        out: list[tuple[float, Mapping[str, float]]] = []
        for agg in windows:
            detector = self.detectors.get(agg.series)
            if detector is None:
                detector = self.detectors[agg.series] = self.factory()
            by_member = getattr(detector, "score_components", None)
            components = dict(by_member(agg)) if by_member is not None else {}
            score = float(detector.score_one(agg))
            detector.learn_one(agg)
            out.append((score, components))
        return out


def per_series(factory: Callable[[], SeriesDetector]) -> Callable[[], BatchDetector]:
    """A shard detector factory from a one-series detector factory."""
    return lambda: PerSeriesDetectors(factory)


class ShardDetectors:
    """The online detectors of the series of one shard: score each window, then learn it."""

    def __init__(self, detectors: BatchDetector, threshold: float) -> None:
        self.detectors = detectors
        self.threshold = threshold

    def score(self, windows: Sequence[WindowAggregate]) -> list[AnomalyScore]:
        threshold = self.threshold
        out: list[AnomalyScore] = []
        for agg, (raw, components) in zip(
            windows, self.detectors.score_batch(windows), strict=True
        ):
            score = min(max(raw, 0.0), 1.0) if raw == raw else 0.0
            out.append(AnomalyScore(agg, score, score >= threshold, components))
        return out


class DetectLogic(StatefulLogic[list[WindowAggregate], list[AnomalyScore], bytes]):
    """Bytewax stateful logic around one shard's detectors."""

    def __init__(self, detectors: ShardDetectors, counters: PipelineCounters) -> None:
        self.detectors = detectors
        self.counters = counters

    def on_item(self, value: list[WindowAggregate]) -> tuple[list[list[AnomalyScore]], bool]:
        scored = self.detectors.score(value)
        self.counters.add("windows", len(scored))
        self.counters.add("anomalies", sum(1 for s in scored if s.is_anomaly))
        return ([scored] if scored else []), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return snapshot_of(self.detectors.detectors)


class IncidentLogic(StatefulLogic[list[AnomalyScore], list[IncidentUpdate], bytes]):
    """Bytewax stateful logic around one shard's ``IncidentBuilder``."""

    def __init__(self, builder: IncidentBuilder, counters: PipelineCounters) -> None:
        self.builder = builder
        self.counters = counters

    def on_item(self, value: list[AnomalyScore]) -> tuple[list[list[IncidentUpdate]], bool]:
        updates = self.builder.run(value)
        opened = sum(1 for u in updates if u.type is IncidentEventType.OPENED)
        self.counters.add("incidents", opened)
        return ([updates] if updates else []), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return snapshot_of(self.builder)
