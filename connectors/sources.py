"""Bytewax input sources for the embedded default: the metrics simulator and file replay.

Both emit ``bytes`` messages, exactly what the Kafka source emits as message values, so the
detection dataflow does not care where its input comes from. Both are single-partition
:class:`~bytewax.inputs.FixedPartitionedSource` s and resume from snapshots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.replay import iter_replay_chunks
from connectors.simulator import DEFAULT_BACKFILL_S, NS_PER_S, MetricsSimulator

Clock = Callable[[], int]
"""Wall clock in nanoseconds since the epoch (``time.time_ns``; replaceable in tests)."""


@dataclass(frozen=True)
class SimulatorState:
    """Resume state of the simulator partition: where the run started and how far it got.

    The anchors map event time to wall time for pacing (``event_anchor_ns`` was "now" at
    ``wall_anchor_ns``); they survive restarts, so after downtime the source catches up as fast
    as possible, like a real producer whose backlog waited in Kafka.
    """

    start_ns: int
    next_tick: int
    wall_anchor_ns: int
    event_anchor_ns: int


@dataclass(frozen=True)
class SimulatorParams:
    """Everything that defines the simulated world (not the pacing)."""

    hosts: int = 8
    interval_s: float = 10.0
    seed: int = 7
    anomaly_every_s: float = 900.0
    anomaly_duration_s: float = 300.0
    warmup_s: float = 1800.0
    tenants: tuple[str, ...] = ("default",)
    lines_per_message: int = 50
    filling_disks: int = 0

    def build(self, start_ns: int, start_tick: int) -> MetricsSimulator:
        return MetricsSimulator(
            hosts=self.hosts,
            interval_s=self.interval_s,
            start_ns=start_ns,
            seed=self.seed,
            anomaly_every_s=self.anomaly_every_s,
            anomaly_duration_s=self.anomaly_duration_s,
            warmup_s=self.warmup_s,
            tenants=self.tenants,
            lines_per_message=self.lines_per_message,
            start_tick=start_tick,
            filling_disks=self.filling_disks,
        )


def is_unpaced(speed: float) -> bool:
    """``speed <= 0`` or infinite means as fast as possible."""
    return speed <= 0 or math.isinf(speed) or math.isnan(speed)


def due_wall_ns(event_ns: int, state: SimulatorState, speed: float) -> int:
    """Wall time at which the tick of event time ``event_ns`` should be emitted."""
    return state.wall_anchor_ns + math.ceil((event_ns - state.event_anchor_ns) / speed)


class _SimulatorPartition(StatefulSourcePartition[bytes, SimulatorState]):
    def __init__(
        self,
        simulator: MetricsSimulator,
        state: SimulatorState,
        *,
        speed: float,
        max_ticks: int | None,
        batch_messages: int,
        clock: Clock,
    ) -> None:
        self._sim = simulator
        self._anchors = state
        self._paced = not is_unpaced(speed)
        self._speed = speed
        self._max_ticks = max_ticks
        self._batch_messages = batch_messages
        self._clock = clock

    def _finished(self) -> bool:
        return self._max_ticks is not None and self._sim.tick_index >= self._max_ticks

    def _due(self, now_ns: int) -> bool:
        if not self._paced:
            return True
        return due_wall_ns(self._sim.now_ns, self._anchors, self._speed) <= now_ns

    def next_batch(self) -> list[bytes]:
        if self._finished():
            raise StopIteration
        now_ns = self._clock()
        batch: list[bytes] = []
        while len(batch) < self._batch_messages and not self._finished() and self._due(now_ns):
            batch.extend(self._sim.tick())
        return batch

    def next_awake(self) -> datetime | None:
        if not self._paced or self._finished():
            return None
        due = due_wall_ns(self._sim.now_ns, self._anchors, self._speed)
        return datetime.fromtimestamp(due / NS_PER_S, tz=UTC)

    def snapshot(self) -> SimulatorState:
        return SimulatorState(
            start_ns=self._sim.start_ns,
            next_tick=self._sim.tick_index,
            wall_anchor_ns=self._anchors.wall_anchor_ns,
            event_anchor_ns=self._anchors.event_anchor_ns,
        )


class SimulatorSource(FixedPartitionedSource[bytes, SimulatorState]):
    """The built-in metrics simulator as a Bytewax source (one partition).

    Event time starts ``backfill_s`` before the wall clock; that history is emitted as fast as
    possible, then event time advances ``speed`` seconds per wall second (``speed <= 0`` or
    ``math.inf``: never wait). Waiting is done through ``next_awake``, never by sleeping. With
    ``max_ticks`` the source ends after that many ticks (counted from the first, backfill
    included). Each batch holds whole ticks, at least ``batch_messages`` messages when that many
    are due.
    """

    PARTITION = "simulator"

    def __init__(
        self,
        *,
        hosts: int = 8,
        interval_s: float = 10.0,
        seed: int = 7,
        anomaly_every_s: float = 900.0,
        anomaly_duration_s: float = 300.0,
        warmup_s: float = 1800.0,
        tenants: Sequence[str] = ("default",),
        lines_per_message: int = 50,
        speed: float = 60.0,
        backfill_s: float = DEFAULT_BACKFILL_S,
        max_ticks: int | None = None,
        batch_messages: int = 64,
        clock: Clock = time.time_ns,
        filling_disks: int = 0,
    ) -> None:
        if backfill_s < 0:
            raise ValueError(f"backfill_s must not be negative, got {backfill_s}")
        if batch_messages < 1:
            raise ValueError(f"batch_messages must be at least 1, got {batch_messages}")
        if max_ticks is not None and max_ticks < 0:
            raise ValueError(f"max_ticks must not be negative, got {max_ticks}")
        self.params = SimulatorParams(
            hosts=hosts,
            interval_s=interval_s,
            seed=seed,
            anomaly_every_s=anomaly_every_s,
            anomaly_duration_s=anomaly_duration_s,
            warmup_s=warmup_s,
            tenants=tuple(tenants),
            lines_per_message=lines_per_message,
            filling_disks=filling_disks,
        )
        self.params.build(start_ns=0, start_tick=0)  # fail fast on bad parameters
        self.speed = speed
        self.backfill_s = backfill_s
        self.max_ticks = max_ticks
        self.batch_messages = batch_messages
        self.clock = clock

    def list_parts(self) -> list[str]:
        return [self.PARTITION]

    def initial_state(self) -> SimulatorState:
        """A fresh run: start ``backfill_s`` ago on the interval grid, anchored at now."""
        now_ns = self.clock()
        interval_ns = max(1, round(self.params.interval_s * NS_PER_S))
        start_ns = now_ns - round(self.backfill_s * NS_PER_S)
        start_ns -= start_ns % interval_ns
        return SimulatorState(start_ns, 0, now_ns, now_ns)

    def build_part(
        self, step_id: str, for_part: str, resume_state: SimulatorState | None
    ) -> _SimulatorPartition:
        state = resume_state if resume_state is not None else self.initial_state()
        return _SimulatorPartition(
            self.params.build(state.start_ns, state.next_tick),
            state,
            speed=self.speed,
            max_ticks=self.max_ticks,
            batch_messages=self.batch_messages,
            clock=self.clock,
        )


class _ReplayPartition(StatefulSourcePartition[bytes, int]):
    def __init__(self, path: Path, batch_lines: int, batch_messages: int, offset: int) -> None:
        self._offset = offset
        self._batch_messages = batch_messages
        self._chunks: Generator[tuple[bytes, int], None, None] = iter_replay_chunks(
            path, batch_lines=batch_lines, start_offset=offset
        )

    def next_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        for message, offset in self._chunks:
            batch.append(message)
            self._offset = offset
            if len(batch) >= self._batch_messages:
                break
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._chunks.close()


class ReplaySource(FixedPartitionedSource[bytes, int]):
    """Replays one file of line protocol and/or JSON lines (see :mod:`connectors.replay`).

    One partition; the resume state is the byte offset after the last emitted message. Ends at
    the end of the file. A missing file raises ``FileNotFoundError`` when the partition is built.
    """

    def __init__(
        self, path: Path | str, *, batch_lines: int = 500, batch_messages: int = 16
    ) -> None:
        if batch_messages < 1:
            raise ValueError(f"batch_messages must be at least 1, got {batch_messages}")
        self.path = Path(path)
        self.batch_lines = batch_lines
        self.batch_messages = batch_messages

    def list_parts(self) -> list[str]:
        return [f"replay:{self.path}"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ReplayPartition:
        offset = 0 if resume_state is None else resume_state
        return _ReplayPartition(self.path, self.batch_lines, self.batch_messages, offset)
