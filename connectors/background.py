"""Sink writes on a background thread, made durable at every epoch.

A sink that writes synchronously makes the dataflow wait for PostgreSQL's COPY and InfluxDB's
ingest on every batch. ``BackgroundSink`` hands each batch to a writer thread instead and lets
the dataflow go on; the waits on the servers (which release the GIL) overlap with parsing,
windowing and detection.

Nothing is lost on a crash: the sink is a Bytewax ``FixedPartitionedSink``, whose partitions are
asked for a snapshot at the end of every epoch, and ``snapshot`` returns only once every batch
of the epoch is written. Bytewax commits an epoch's recovery snapshot (Kafka offsets, windows,
detectors) only after that, so a restart replays whatever was not yet written, and the
idempotent writes of the inner sink absorb the replay: at-least-once, as before.

Back-pressure: at most ``max_pending`` batches wait for the thread; beyond that ``write_batch``
blocks. A write that raises stops the thread, and the error is raised again in the dataflow at
its next write or snapshot, so a broken database still stops the flow (and recovery resumes it).
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from typing import Any

from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition

log = logging.getLogger(__name__)

_STOP = object()


class BackgroundWriter:
    """A thread that passes batches to ``write`` in order; ``drain`` waits for all of them."""

    def __init__(self, name: str, write: Any, max_pending: int) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(max_pending, 1))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, batch: list[Any]) -> None:
        self.raise_if_failed()
        self._queue.put(batch)

    def drain(self) -> None:
        """Block until every submitted batch is written; raise the writer's error if any."""
        self._queue.join()
        self.raise_if_failed()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"background sink writer {self._thread.name!r} failed: {self._error}"
            ) from self._error

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is _STOP:
                    return
                if self._error is None:
                    self._write(batch)
            except BaseException as exc:  # re-raised in the dataflow's thread
                self._error = exc
            finally:
                self._queue.task_done()


class _BackgroundPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, inner: Any, name: str, max_pending: int) -> None:
        self.inner = inner
        self.writer = BackgroundWriter(name, inner.write_batch, max_pending)

    def write_batch(self, values: list[Any]) -> None:
        self.writer.submit(values)

    def snapshot(self) -> None:
        self.writer.drain()

    def close(self) -> None:
        # Bytewax calls close while shutting down, where an exception aborts the process; the
        # epoch's snapshot (just before) has already raised any write error.
        try:
            self.writer.close()
        except RuntimeError as exc:
            log.error("%s", exc)
        finally:
            self.inner.close()


class BackgroundSink(FixedPartitionedSink[Any, None]):
    """Runs ``inner``'s partitions on writer threads, ``partitions`` of them per dataflow.

    Items must be ``(key, value)`` pairs (the dataflow's ``(shard, [...])`` items); a key always
    goes to the same partition. The inner partitions receive the values, which
    ``connectors.sinks.flatten_items`` accepts like the pairs.
    """

    def __init__(self, inner: DynamicSink[Any], partitions: int = 1, max_pending: int = 16):
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.inner = inner
        self.partitions = partitions
        self.max_pending = max_pending

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BackgroundPartition:
        index = int(for_part)
        inner = self.inner.build(step_id, index, self.partitions)
        return _BackgroundPartition(inner, f"sink-{step_id}-{index}", self.max_pending)
