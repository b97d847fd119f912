"""Event-time tumbling windows: pure maths, no I/O, no Bytewax.

Two pieces:

* ``combine_points`` is the per-batch combiner. It folds the points of one input batch into one
  ``PartialAggregate`` per (series, window) and groups them by shard, so the keyed window step
  downstream handles one item per shard and batch instead of one per point.
* ``WindowBook`` holds the open windows of the series of one shard. A window ``[s, s + W)`` of a
  series closes once that series has seen an event at or after ``s + W + lateness`` (its own
  event-time high-water mark), when the series has been idle for a while on the wall clock, or at
  the end of input. A point whose window has already closed is late: counted and dropped.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from incidents.schemas import MetricPoint, PartialAggregate, WindowAggregate


def window_start(ts_ns: int, window_ns: int) -> int:
    return ts_ns - ts_ns % window_ns


def shard_of(series: str, shards: int) -> str:
    """Stable shard key of a series (crc32: the same in every process and every run)."""
    return f"{zlib.crc32(series.encode()) % shards:04d}"


def combine_points(
    points: Iterable[MetricPoint], window_ns: int, shards: int
) -> dict[str, list[PartialAggregate]]:
    """Fold points into one partial per (series, window), grouped by shard key."""
    partials: dict[tuple[str, int], PartialAggregate] = {}
    for p in points:
        ts = p.timestamp_ns
        start = ts - ts % window_ns
        key = (p.series, start)
        partial = partials.get(key)
        if partial is None:
            partials[key] = PartialAggregate.of_point(key[0], p.tenant, start, p.value, ts)
        else:
            partial.add(p.value, ts)
    by_shard: dict[str, list[PartialAggregate]] = {}
    shard_cache: dict[str, str] = {}
    for (series, _), partial in partials.items():
        shard = shard_cache.get(series)
        if shard is None:
            shard = shard_cache[series] = shard_of(series, shards)
        by_shard.setdefault(shard, []).append(partial)
    return by_shard


@dataclass(slots=True)
class SeriesWindows:
    """Open windows of one series and its event-time high-water mark."""

    max_ts_ns: int
    last_wall_ns: int
    closed_before_ns: int = -(2**63)
    open: dict[int, PartialAggregate] = field(default_factory=dict)


@dataclass
class AddResult:
    closed: list[WindowAggregate]
    late_points: int


class WindowBook:
    """Open tumbling windows of the series of one shard."""

    def __init__(self, window_ns: int, lateness_ns: int) -> None:
        if window_ns <= 0:
            raise ValueError("window length must be positive")
        if lateness_ns < 0:
            raise ValueError("allowed lateness must not be negative")
        self.window_ns = window_ns
        self.lateness_ns = lateness_ns
        self.series: dict[str, SeriesWindows] = {}

    def add(self, partials: Iterable[PartialAggregate], wall_ns: int) -> AddResult:
        """Merge partials into their windows, then close every window that became due."""
        late = 0
        touched: set[str] = set()
        horizon = self.window_ns + self.lateness_ns
        for partial in partials:
            state = self.series.get(partial.series)
            if state is None:
                state = SeriesWindows(max_ts_ns=partial.last_ts_ns, last_wall_ns=wall_ns)
                self.series[partial.series] = state
            elif (
                partial.window_start_ns + horizon <= state.max_ts_ns
                or partial.window_start_ns < state.closed_before_ns
            ):
                late += partial.count
                continue
            current = state.open.get(partial.window_start_ns)
            if current is None:
                state.open[partial.window_start_ns] = partial
            else:
                current.merge(partial)
            if partial.last_ts_ns > state.max_ts_ns:
                state.max_ts_ns = partial.last_ts_ns
            state.last_wall_ns = wall_ns
            touched.add(partial.series)
        closed: list[WindowAggregate] = []
        for series in touched:
            closed.extend(self._close_due(self.series[series]))
        return AddResult(closed=closed, late_points=late)

    def _close_due(self, state: SeriesWindows) -> list[WindowAggregate]:
        horizon = self.window_ns + self.lateness_ns
        due = [s for s in state.open if s + horizon <= state.max_ts_ns]
        return [self._finish(state, s) for s in sorted(due)]

    def _finish(self, state: SeriesWindows, start: int) -> WindowAggregate:
        end = start + self.window_ns
        if end > state.closed_before_ns:
            state.closed_before_ns = end
        return WindowAggregate.from_partial(state.open.pop(start), self.window_ns)

    def close_idle(self, wall_ns: int, idle_ns: int) -> list[WindowAggregate]:
        """Close every window of the series that received nothing for ``idle_ns`` of wall time.

        An idle series keeps its high-water mark, so a point that arrives later for an already
        closed window is still recognised as late.
        """
        closed: list[WindowAggregate] = []
        for state in self.series.values():
            if state.open and wall_ns - state.last_wall_ns >= idle_ns:
                closed.extend(self._finish(state, s) for s in sorted(state.open))
        return closed

    def touch_all(self, wall_ns: int) -> None:
        """Count ``wall_ns`` as activity of every series (after a restart from a snapshot, the
        downtime must not make every series look idle)."""
        for state in self.series.values():
            state.last_wall_ns = wall_ns

    def close_all(self) -> list[WindowAggregate]:
        closed: list[WindowAggregate] = []
        for state in self.series.values():
            closed.extend(self._finish(state, s) for s in sorted(state.open))
        return closed

    @property
    def open_windows(self) -> int:
        return sum(len(s.open) for s in self.series.values())
