"""Background sink writes: order, back-pressure, errors, and the drain at every epoch."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from connectors.background import BackgroundSink, BackgroundWriter
from connectors.sinks import flatten_items


class Recorder(DynamicSink):
    """Records every item it is given and the thread that wrote it; optionally slow or failing."""

    def __init__(self, delay_s: float = 0.0, fail_on: object = None) -> None:
        self.items: list = []
        self.threads: set[str] = set()
        self.closed = 0
        self.delay_s = delay_s
        self.fail_on = fail_on

    def build(self, step_id, worker_index, worker_count):
        recorder = self

        class Part(StatelessSinkPartition):
            def write_batch(self, items):
                time.sleep(recorder.delay_s)
                flat = flatten_items(items)
                if recorder.fail_on in flat:
                    raise ValueError(f"cannot write {recorder.fail_on!r}")
                recorder.items.extend(flat)
                recorder.threads.add(threading.current_thread().name)

            def close(self):
                recorder.closed += 1

        return Part()


def test_writer_keeps_order_and_drain_waits_for_everything():
    written = []

    def slow_write(batch):
        time.sleep(0.005)
        written.extend(batch)

    writer = BackgroundWriter("w", slow_write, max_pending=2)
    for i in range(20):
        writer.submit([i])
    writer.drain()
    assert written == list(range(20))
    writer.close()


def test_writer_error_is_raised_in_the_caller_and_later_batches_are_not_written():
    written = []

    def write(batch):
        if batch == ["bad"]:
            raise ValueError("database is down")
        written.extend(batch)

    writer = BackgroundWriter("w", write, max_pending=4)
    writer.submit(["a"])
    writer.submit(["bad"])
    with pytest.raises(RuntimeError, match="database is down"):
        writer.drain()
    with pytest.raises(RuntimeError, match="database is down"):
        writer.submit(["c"])
    assert written == ["a"]


def flow_into(sink: BackgroundSink, items: list) -> Dataflow:
    flow = Dataflow("background")
    stream = op.input("in", flow, TestingSource(items, batch_size=3))
    keyed = op.map("key", stream, lambda x: (f"s{x % 7}", [x]))
    op.output("out", keyed, sink)
    return flow


def test_every_item_is_written_off_the_dataflow_thread_and_the_inner_sink_is_closed():
    recorder = Recorder()
    run_main(flow_into(BackgroundSink(recorder, partitions=2), list(range(100))))
    assert sorted(recorder.items) == list(range(100))
    assert threading.current_thread().name not in recorder.threads
    assert all(name.startswith("sink-") for name in recorder.threads)
    assert len(recorder.threads) == 2
    assert recorder.closed == 2


def test_a_failing_write_stops_the_dataflow_with_its_error():
    recorder = Recorder(fail_on=13)
    with pytest.raises(Exception, match="cannot write 13"):
        run_main(flow_into(BackgroundSink(recorder), list(range(100))))


def test_each_epoch_waits_for_its_writes(tmp_path, monkeypatch):
    """Bytewax snapshots the sink at each epoch; the snapshot returns with nothing pending."""
    pending_at_snapshot = []
    original = BackgroundWriter.drain

    def observed(self):
        original(self)
        pending_at_snapshot.append(self._queue.unfinished_tasks)

    monkeypatch.setattr(BackgroundWriter, "drain", observed)
    init_db_dir(tmp_path, 1)
    recorder = Recorder(delay_s=0.002)
    run_main(
        flow_into(BackgroundSink(recorder), list(range(60))),
        epoch_interval=timedelta(0),
        recovery_config=RecoveryConfig(str(tmp_path)),
    )
    assert len(pending_at_snapshot) >= 10
    assert set(pending_at_snapshot) == {0}
    assert sorted(recorder.items) == list(range(60))


def test_partitions_must_be_positive():
    with pytest.raises(ValueError, match="partitions"):
        BackgroundSink(Recorder(), partitions=0)
