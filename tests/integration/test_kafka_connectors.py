"""The Kafka connectors against the real broker: source, DLQ and incident sinks, topics, recovery.

Every test works on its own fresh topics (``kafka_topic`` in conftest), so tests do not see each
other's messages and can run while the product uses the configured topics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from connectors.kafka import (
    INCIDENT_SCHEMA_VERSION,
    KafkaDeadLetterSink,
    KafkaIncidentSink,
    KafkaMetricsSource,
    KafkaPayload,
    decode_incident_update,
    ensure_topics,
    topic_partitions,
)
from incidents.parsing import parse_message
from incidents.schemas import (
    Category,
    DeadLetter,
    IncidentEventType,
    IncidentUpdate,
    Severity,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000
T0 = 1_700_000_040 * S


# --------------------------------------------------------------------------- helpers


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes | None],
    *,
    partition: int | None = None,
    timestamp_ms: int = 0,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[Any] = []
    for value in values:
        kwargs: dict[str, Any] = {"value": value, "timestamp": timestamp_ms}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, on_delivery=lambda err, _msg: err and errors.append(err), **kwargs)
    assert producer.flush(30) == 0
    assert not errors


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every message of ``topic`` now, read up to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "it-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        parts = topic_partitions(bootstrap, topic)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Any] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(parts):
            assert time.monotonic() < deadline, f"{topic}: no end of partitions {at_end}"
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    out.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                else:
                    raise AssertionError(error)
        return out
    finally:
        consumer.close()


def consume_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    """All messages of ``topic``, which must be ``count`` (sinks flush before they return)."""
    messages = read_topic(bootstrap, topic)
    assert len(messages) == count, f"got {len(messages)} of {count} messages from {topic}"
    return messages


def run_source(source: KafkaMetricsSource) -> list[bytes]:
    out: list[bytes] = []
    flow = Dataflow("kafka_source_test")
    op.output("out", op.input("in", flow, source), TestingSink(out))
    run_main(flow)
    return out


class _WorkerPartition(StatelessSinkPartition[bytes]):
    def __init__(self, out: list[tuple[int, bytes]], worker: int) -> None:
        self.out = out
        self.worker = worker

    def write_batch(self, items: list[bytes]) -> None:
        self.out.extend((self.worker, item) for item in items)


class WorkerSink(DynamicSink[bytes]):
    """Like TestingSink, but remembers which worker wrote each item."""

    def __init__(self, out: list[tuple[int, bytes]]) -> None:
        self.out = out

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WorkerPartition:
        return _WorkerPartition(self.out, worker_index)


def headers_of(message: Any) -> dict[str, bytes]:
    return dict(message.headers() or [])


def update(fingerprint: str, kind: IncidentEventType, i: int, **extra: Any) -> IncidentUpdate:
    return IncidentUpdate(
        type=kind,
        fingerprint=fingerprint,
        tenant="acme",
        series="postgresql,host=db-1 connections",
        title=f"postgresql connections anomalous on db-1 ({fingerprint})",
        category=Category.DATABASE,
        severity=Severity.HIGH,
        score=0.97,
        peak_score=0.99,
        window_start_ns=T0 + i * 60 * S,
        window_end_ns=T0 + (i + 1) * 60 * S,
        observed=71.5,
        metadata={"detector": "ensemble", "components": {"iforest": 0.9}, **extra},
    )


# --------------------------------------------------------------------------- source


def test_source_emits_each_message_value_as_bytes_with_its_timestamp(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("metrics", partitions=1)
    messages = [
        b"cpu,host=a usage_user=12.5 1700000000000000000",
        b"cpu,host=a usage_user=13.5 1700000010000000000\nmem,host=a used=1i 1700000010000000000",
        b'{"name":"cpu","tags":{"host":"b"},"fields":{"usage_user":3.5},"timestamp":1700000000}',
        b'{"metrics":[{"name":"disk","tags":{"host":"b"},"fields":{"free":1,"used":2},'
        b'"timestamp":1700000000}]}',
        b"\xff\xfe this is not a metric",
        b"cpu,host=c usage_user=1",  # no timestamp in the point
    ]
    produced_ms = 1_700_000_123_456
    produce(
        kafka_bootstrap, topic, [*messages[:3], None, b"", *messages[3:]], timestamp_ms=produced_ms
    )

    out = run_source(KafkaMetricsSource(kafka_bootstrap, topic, stop_at_end=True, batch_size=2))

    assert out == messages  # tombstone and empty message skipped, order kept
    assert all(isinstance(m, bytes) and isinstance(m, KafkaPayload) for m in out)
    assert {m.timestamp_ns for m in out} == {produced_ms * 1_000_000}
    points = [len(parse_message(m).points) for m in out]
    assert points == [1, 2, 1, 2, 0, 1]
    assert parse_message(out[-1], default_timestamp_ns=out[-1].timestamp_ns).points[
        0
    ].timestamp_ns == (produced_ms * 1_000_000)


def test_source_without_timestamps_emits_plain_bytes(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("metrics", partitions=1)
    produce(kafka_bootstrap, topic, [b"cpu v=1 1", b"cpu v=2 2"])

    out = run_source(
        KafkaMetricsSource(kafka_bootstrap, topic, stop_at_end=True, with_timestamps=False)
    )

    assert out == [b"cpu v=1 1", b"cpu v=2 2"]
    assert all(type(m) is bytes for m in out)


def test_three_partitions_over_two_workers_each_read_once_in_order(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("metrics", partitions=3)
    expected: dict[int, list[bytes]] = {}
    for p in range(3):
        expected[p] = [f"m,part={p} seq={i}i {T0 + i * S}".encode() for i in range(40)]
        produce(kafka_bootstrap, topic, expected[p], partition=p)

    out: list[tuple[int, bytes]] = []
    flow = Dataflow("kafka_two_workers")
    source = KafkaMetricsSource(kafka_bootstrap, topic, stop_at_end=True, batch_size=7)
    op.output("out", op.input("in", flow, source), WorkerSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)

    by_part: dict[int, list[bytes]] = defaultdict(list)
    workers_of_part: dict[int, set[int]] = defaultdict(set)
    for worker, message in out:
        part = int(message.split(b"part=")[1].split(b" ")[0])
        by_part[part].append(message)
        workers_of_part[part].add(worker)
    assert dict(by_part) == expected  # everything, exactly once, in partition order
    assert all(len(workers) == 1 for workers in workers_of_part.values())


def test_latest_start_skips_what_is_already_there(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("metrics", partitions=2)
    produce(kafka_bootstrap, topic, [b"cpu v=1 1", b"cpu v=2 2"])

    source = KafkaMetricsSource(kafka_bootstrap, topic, stop_at_end=True, starting_offset="latest")
    assert run_source(source) == []


def test_missing_topic_is_a_clear_error(kafka_bootstrap, kafka_topic):
    source = KafkaMetricsSource(kafka_bootstrap, kafka_topic("never-created"), metadata_timeout_s=1)
    with pytest.raises(RuntimeError, match="never-created"):
        source.list_parts()


# --------------------------------------------------------------------------- sinks


def run_sink(items: list[Any], sink: DynamicSink) -> None:
    flow = Dataflow("kafka_sink_test")
    op.output("out", op.input("in", flow, TestingSource(items, batch_size=3)), sink)
    run_main(flow)


def test_dead_letter_sink_writes_the_original_bytes_and_the_reason(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("dlq", partitions=2)
    letters = [
        DeadLetter(b"cpu,host=a usage=oops 17", "line 1: invalid field value 'oops'"),
        DeadLetter(b"\x00\xff\xfe binary \r\n junk", "not UTF-8: invalid start byte"),
        DeadLetter(b"", "empty message", source="replay"),
        DeadLetter(b'{"name": "cpu"', "JSON: Expecting ',' delimiter - \u00e9\u2713"),
    ]
    before = datetime.now(UTC)
    # Bare dead letters, as the dataflow's branch emits them, and one (shard, [...]) pair.
    run_sink([*letters[:3], ("shard-1", [letters[3]])], KafkaDeadLetterSink(kafka_bootstrap, topic))
    after = datetime.now(UTC)

    messages = consume_all(kafka_bootstrap, topic, len(letters))
    got = {m.value(): headers_of(m) for m in messages}
    assert set(got) == {letter.raw for letter in letters}
    for letter in letters:
        headers = got[letter.raw]
        assert headers["reason"].decode() == letter.reason
        assert headers["source"].decode() == letter.source
        failed_at = datetime.fromisoformat(headers["failed_at"].decode())
        assert failed_at.tzinfo is not None
        assert before.replace(microsecond=0) <= failed_at <= after
    assert all(m.key() is None for m in messages)


def test_dead_letter_sink_waits_when_its_queue_is_full(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("dlq", partitions=1)
    letters = [DeadLetter(f"bad {i}".encode(), "bad") for i in range(600)]

    flow = Dataflow("kafka_backpressure")
    stream = op.input("in", flow, TestingSource([("s", letters)]))
    op.output("out", stream, KafkaDeadLetterSink(kafka_bootstrap, topic, queue_max_messages=5))
    run_main(flow)

    values = [m.value() for m in consume_all(kafka_bootstrap, topic, len(letters))]
    assert values == [letter.raw for letter in letters]  # one partition: order kept


def test_incident_sink_writes_json_keyed_by_fingerprint(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("incidents", partitions=3)
    kinds = [IncidentEventType.OPENED, IncidentEventType.UPDATED, IncidentEventType.RESOLVED]
    fingerprints = [f"fp-{i:02d}" for i in range(6)]
    updates = [update(fp, kind, i) for i, kind in enumerate(kinds) for fp in fingerprints]
    items = [(f"shard-{i}", updates[i : i + 4]) for i in range(0, len(updates), 4)]

    run_sink(items, KafkaIncidentSink(kafka_bootstrap, topic))

    messages = consume_all(kafka_bootstrap, topic, len(updates))
    partitions_of: dict[str, set[int]] = defaultdict(set)
    events_of: dict[str, list[IncidentUpdate]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        key = message.key().decode()
        decoded = decode_incident_update(message.value())
        assert key == decoded.fingerprint
        assert headers_of(message)["type"] == decoded.type.value.encode()
        partitions_of[key].add(message.partition())
        events_of[key].append(decoded)
    assert all(len(parts) == 1 for parts in partitions_of.values())
    for fp in fingerprints:
        assert events_of[fp] == [u for u in updates if u.fingerprint == fp]  # in order

    document = json.loads(messages[0].value())
    assert list(document) == [
        "schema_version",
        "type",
        "fingerprint",
        "tenant",
        "series",
        "title",
        "category",
        "severity",
        "score",
        "peak_score",
        "window_start",
        "window_end",
        "window_start_ns",
        "window_end_ns",
        "observed",
        "metadata",
    ]
    assert document["schema_version"] == INCIDENT_SCHEMA_VERSION
    start = datetime.fromisoformat(document["window_start"])
    assert int(start.timestamp()) * S == document["window_start_ns"]


# --------------------------------------------------------------------------- topics


def test_ensure_topics_creates_missing_topics_once(kafka_bootstrap, kafka_topic):
    first, second = kafka_topic("a"), kafka_topic("b")

    assert sorted(ensure_topics(kafka_bootstrap, {first: 3, second: 1})) == sorted([first, second])
    assert ensure_topics(kafka_bootstrap, {first: 3, second: 1}) == []

    assert topic_partitions(kafka_bootstrap, first) == [0, 1, 2]
    assert topic_partitions(kafka_bootstrap, second) == [0]


# --------------------------------------------------------------------------- whole pipeline


def detection_messages() -> list[bytes]:
    """Two series over 90 minutes with a spike (the pattern of the unit recovery test)."""
    out = []
    for i in range(6 * 90):
        value = 10.0 + (i % 9) * 0.5 + (60.0 if 6 * 70 <= i < 6 * 72 else 0.0)
        out.append(f"postgresql,host=db-1 connections={value} {T0 + 10 * i * S}".encode())
        out.append(f"cpu,host=web-1 usage={20 + i % 4} {T0 + 10 * i * S}".encode())
    return out


def test_detection_dataflow_through_kafka(kafka_bootstrap, kafka_topic):
    from incidents.config import Settings
    from incidents.telemetry import PipelineCounters
    from models.detector import DetectorConfig, build_bank
    from pipelines.detect import FlowParts, build_detection_flow

    metrics = kafka_topic("metrics", partitions=3)
    dlq = kafka_topic("dlq", partitions=1)
    incidents = kafka_topic("incidents", partitions=3)
    bad = [b"cpu,host=a usage=not-a-number 1700000000000000000", b"\xff\xfe\x00garbage"]
    good = detection_messages()
    # One series per partition, so each keeps its event-time order.
    produce(kafka_bootstrap, metrics, [m for m in good if m.startswith(b"postgresql")], partition=0)
    produce(kafka_bootstrap, metrics, [m for m in good if m.startswith(b"cpu")], partition=1)
    produce(kafka_bootstrap, metrics, bad, partition=2)

    windows: list[Any] = []
    parts = FlowParts(
        source=KafkaMetricsSource(kafka_bootstrap, metrics, stop_at_end=True, batch_size=50),
        windows_sink=TestingSink(windows),
        incidents_sink=KafkaIncidentSink(kafka_bootstrap, incidents),
        dead_letters_sink=KafkaDeadLetterSink(kafka_bootstrap, dlq),
        detector_factory=lambda: build_bank(DetectorConfig(min_history=24)),
        counters=PipelineCounters(),
    )
    run_main(build_detection_flow(Settings(window_seconds=60), parts, shards=4))

    assert sum(len(batch) for _, batch in windows) == 2 * 90
    dead = consume_all(kafka_bootstrap, dlq, len(bad))
    assert sorted(m.value() for m in dead) == sorted(bad)
    assert all(headers_of(m)["reason"] for m in dead)

    events = read_topic(kafka_bootstrap, incidents)
    opened = [decode_incident_update(m.value()) for m in events]
    assert any(u.type is IncidentEventType.OPENED and "postgresql" in u.series for u in opened)
    assert all(m.key().decode() == decode_incident_update(m.value()).fingerprint for m in events)


# --------------------------------------------------------------------------- recovery

FLOW_MODULE = """
import os
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.kafka import KafkaMetricsSource


class _Lines(StatelessSinkPartition):
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")

    def write_batch(self, items):
        self.file.write("".join(item.decode() + "\\n" for item in items))
        self.file.flush()

    def close(self):
        self.file.close()


class LinesSink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return _Lines(os.environ["OUT_PATH"] + f".{worker_index}")


def slowly(batch):
    time.sleep(float(os.environ["DELAY_S"]))
    return batch


flow = Dataflow("kafka_recovery")
source = KafkaMetricsSource(
    os.environ["KAFKA_BOOTSTRAP_SERVERS"],
    os.environ["TOPIC"],
    batch_size=5,
    stop_at_end=os.environ["STOP_AT_END"] == "1",
)
op.output("out", op.flat_map_batch("slowly", op.input("in", flow, source), slowly), LinesSink())
"""


def read_lines(out_dir: Path, prefix: str) -> list[str]:
    lines: list[str] = []
    for path in sorted(out_dir.glob(prefix + ".*")):
        text = path.read_text(encoding="utf-8")
        lines.extend(line for line in text.split("\n")[:-1])  # a torn last line is not counted
    return lines


def test_restart_after_kill_9_resumes_from_the_snapshot(kafka_bootstrap, kafka_topic, tmp_path):
    topic = kafka_topic("metrics", partitions=3)
    by_part = [[f"m,part={p} seq={i}i {T0 + i * S}" for i in range(300)] for p in range(3)]
    for p, lines in enumerate(by_part):
        produce(kafka_bootstrap, topic, [line.encode() for line in lines], partition=p)
    expected = {line for lines in by_part for line in lines}
    (tmp_path / "kafka_recovery_flow.py").write_text(textwrap.dedent(FLOW_MODULE))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    def start(run: str, stop_at_end: bool) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC": topic,
            "OUT_PATH": str(tmp_path / run),
            "STOP_AT_END": "1" if stop_at_end else "0",
            "DELAY_S": "0.05",
        }
        command = [sys.executable, "-m", "bytewax.run", "kafka_recovery_flow:flow", "-w", "2"]
        command += ["-r", str(recovery), "-s", "1", "-b", "0"]
        return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)

    first = start("first", stop_at_end=False)  # tails: never ends by itself
    try:
        deadline = time.monotonic() + 60
        first_output_at = None
        while time.monotonic() < deadline:
            seen = len(read_lines(tmp_path, "first"))
            if seen and first_output_at is None:
                first_output_at = time.monotonic()
            # Past a few 1 s snapshots, well before the end of the topic.
            if first_output_at is not None and time.monotonic() - first_output_at > 2.5:
                break
            assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    first_lines = read_lines(tmp_path, "first")
    assert 0 < len(first_lines) < len(expected), "the first run must stop mid-topic"

    second = start("second", stop_at_end=True)
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr.decode()
    second_lines = read_lines(tmp_path, "second")

    assert set(first_lines) | set(second_lines) == expected  # nothing lost
    # Resumed from the snapshot, not from the beginning: what the first run had processed before
    # its last snapshot is not read again (only what came after it is, at least once).
    assert len(second_lines) < len(expected)
    assert len(set(first_lines) - set(second_lines)) > 0
