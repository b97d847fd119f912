"""Bytewax sinks that hand the dataflow's results to a ``PipelineSink`` (the SQL store).

Each worker builds its own partition with its own store connection. Items arrive as
``(shard, list[...])`` pairs (or bare dead letters) and are written one batch per call.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from incidents.interfaces import PipelineSink
from incidents.telemetry import PipelineCounters, format_progress

SinkKind = Literal["windows", "incidents", "dead_letters"]


def flatten_items(items: Iterable[Any]) -> list[Any]:
    """Sink items as they come from the dataflow: ``(shard, [x, ...])`` pairs, ``[x, ...]``
    lists (the values of such pairs) or bare ``x``."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list):
            out.extend(item[1])
        elif isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


class _StorePartition(StatelessSinkPartition[Any]):
    def __init__(
        self, sink: PipelineSink, kind: SinkKind, reporter: TelemetryReporter | None
    ) -> None:
        self.sink = sink
        self.kind = kind
        self.reporter = reporter

    def write_batch(self, items: list[Any]) -> None:
        rows = flatten_items(items)
        if not rows:
            return
        if self.kind == "windows":
            self.sink.write_windows(rows)
        elif self.kind == "incidents":
            self.sink.apply_incident_updates(rows)
        else:
            self.sink.write_dead_letters(rows)

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.stop()
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()


class StoreSink(DynamicSink[Any]):
    """Writes one kind of result (windows, incident updates, dead letters) to the store.

    A sink given a ``reporter`` starts it when built and stops it (final report) when closed.
    """

    def __init__(
        self,
        open_sink: Callable[[], PipelineSink],
        kind: SinkKind,
        reporter: TelemetryReporter | None = None,
    ) -> None:
        self.open_sink = open_sink
        self.kind = kind
        self.reporter = reporter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        if self.reporter is not None:
            self.reporter.start()
        return _StorePartition(self.open_sink(), self.kind, self.reporter)


class TelemetryReporter:
    """Every few seconds: write this process's counters to the store and print progress."""

    def __init__(
        self,
        counters: PipelineCounters,
        open_sink: Callable[[], PipelineSink],
        *,
        interval_s: float = 5.0,
        out: TextIO | None = sys.stdout,
    ) -> None:
        self.counters = counters
        self.open_sink = open_sink
        self.interval_s = interval_s
        self.out = out
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._started = time.monotonic()
        self._last: tuple[float, float] = (self._started, 0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="telemetry-reporter", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        sink = self.open_sink()
        try:
            while not self._stop.wait(self.interval_s):
                self.report(sink)
            self.report(sink)
        finally:
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    def report(self, sink: PipelineSink) -> None:
        values = self.counters.snapshot()
        try:
            sink.record_pipeline_stats(self.worker, values)
        except Exception as exc:  # telemetry must never stop the dataflow
            print(f"[dataflow] could not record stats: {exc}", file=sys.stderr)
        if self.out is not None:
            now, points = time.monotonic(), values.get("points", 0.0)
            last_at, last_points = self._last
            rate = (points - last_points) / (now - last_at) if now > last_at else 0.0
            self._last = (now, points)
            print(format_progress(values, now - self._started, rate), file=self.out)
            self.out.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
