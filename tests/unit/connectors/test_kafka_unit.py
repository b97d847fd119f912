"""The Kafka connectors' pure pieces and their partition logic, with fake clients (no broker)."""

from __future__ import annotations

import json
import logging
import math
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
)

from connectors.kafka import (
    INCIDENT_SCHEMA_VERSION,
    KafkaDeadLetterSink,
    KafkaIncidentSink,
    KafkaMetricsSource,
    KafkaPayload,
    Throttle,
    _KafkaMetricsPartition,
    _ProducerPartition,
    bootstrap_string,
    consumer_settings,
    dead_letter_record,
    decode_incident_update,
    encode_incident_update,
    flatten_items,
    incident_record,
    incident_update_document,
    kafka_timestamp_ns,
    ns_to_iso,
    parse_part_key,
    part_key,
    producer_settings,
    settings_topics,
    start_offset,
)
from incidents.config import Settings
from incidents.parsing import parse_message
from incidents.schemas import Category, DeadLetter, IncidentEventType, IncidentUpdate, Severity

S = 1_000_000_000
T0 = 1_700_000_040 * S


def update(**changes: Any) -> IncidentUpdate:
    fields: dict[str, Any] = {
        "type": IncidentEventType.OPENED,
        "fingerprint": "fp-1",
        "tenant": "acme",
        "series": "postgresql,host=db-1 connections",
        "title": "connections anomalous",
        "category": Category.DATABASE,
        "severity": Severity.HIGH,
        "score": 0.97,
        "peak_score": 0.99,
        "window_start_ns": T0,
        "window_end_ns": T0 + 60 * S,
        "observed": 71.5,
        "metadata": {"detector": "ensemble"},
    }
    fields.update(changes)
    return IncidentUpdate(**fields)


# --------------------------------------------------------------------------- pure pieces


def test_payload_is_bytes_with_a_timestamp_and_survives_pickling():
    payload = KafkaPayload(b"cpu v=1", 1_700_000_000_000_000_000)
    assert isinstance(payload, bytes)
    assert payload == b"cpu v=1"
    assert payload.timestamp_ns == 1_700_000_000_000_000_000
    copy = pickle.loads(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(copy) is KafkaPayload
    assert copy == payload and copy.timestamp_ns == payload.timestamp_ns
    assert type(payload[:3]) is bytes
    assert "timestamp_ns" in repr(payload)


def test_payload_parses_like_bytes():
    payload = KafkaPayload(b"cpu,host=a usage=1.5", 5 * S)
    points = parse_message(payload, default_timestamp_ns=payload.timestamp_ns).points
    assert [(p.series, p.value, p.timestamp_ns) for p in points] == [
        ("cpu,host=a usage", 1.5, 5 * S)
    ]


def test_kafka_timestamps_become_nanoseconds():
    assert kafka_timestamp_ns((TIMESTAMP_CREATE_TIME, 1_700_000_000_123)) == (
        1_700_000_000_123_000_000
    )
    assert kafka_timestamp_ns((TIMESTAMP_NOT_AVAILABLE, 0)) is None
    assert kafka_timestamp_ns((TIMESTAMP_CREATE_TIME, -1)) is None


@pytest.mark.parametrize("topic", ["metrics", "metrics.dlq", "a-b_c.d"])
def test_part_keys_round_trip(topic):
    assert parse_part_key(part_key(topic, 7)) == (topic, 7)


@pytest.mark.parametrize("key", ["metrics", "metrics:", ":1", "metrics:x", "metrics:-1"])
def test_bad_part_keys_are_refused(key):
    with pytest.raises(ValueError):
        parse_part_key(key)


def test_start_offsets():
    assert start_offset("earliest") == OFFSET_BEGINNING
    assert start_offset("latest") == OFFSET_END
    with pytest.raises(ValueError, match="earliest"):
        start_offset("beginning")  # type: ignore[arg-type]


def test_bootstrap_strings():
    assert bootstrap_string("a:1, b:2,") == "a:1,b:2"
    assert bootstrap_string(["a:1", "b:2"]) == "a:1,b:2"
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap_string(" , ")


def test_iso_times():
    assert ns_to_iso(0) == "1970-01-01T00:00:00Z"
    assert ns_to_iso(T0) == "2023-11-14T22:14:00Z"
    assert ns_to_iso(T0 + 1_234_567) == "2023-11-14T22:14:00.001234Z"
    assert ns_to_iso(-1) == "1969-12-31T23:59:59.999999Z"


def test_flatten_takes_pairs_and_bare_items():
    a, b, c = DeadLetter(b"a", "r"), DeadLetter(b"b", "r"), DeadLetter(b"c", "r")
    assert flatten_items([a, ("shard", [b, c]), ("shard", [])]) == [a, b, c]


def test_dead_letter_record_keeps_the_bytes_and_sets_headers():
    raw = b"\x00\xff cpu,host=a usage=bad \r\n"
    when = datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    record = dead_letter_record(DeadLetter(raw, "bad value \u00e9", "replay"), when)
    assert record.key is None
    assert record.value == raw and type(record.value) is bytes
    headers = dict(record.headers)
    assert headers["reason"].decode() == "bad value \u00e9"
    assert headers["source"] == b"replay"
    assert headers["failed_at"] == b"2024-01-02T03:04:05.678+00:00"


def test_dead_letter_times_are_written_in_utc():
    when = datetime(2024, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    headers = dict(dead_letter_record(DeadLetter(b"x", "r"), when).headers)
    assert headers["failed_at"] == b"2024-01-02T03:00:00.000+00:00"
    naive = dict(dead_letter_record(DeadLetter(b"x", "r"), datetime(2024, 1, 2)).headers)
    assert naive["failed_at"] == b"2024-01-02T00:00:00.000+00:00"


def test_dead_letter_record_refuses_other_items():
    with pytest.raises(TypeError, match="DeadLetter"):
        dead_letter_record(b"raw", datetime.now(UTC))  # type: ignore[arg-type]


def test_dead_letter_reason_with_lone_surrogates_still_encodes():
    record = dead_letter_record(DeadLetter(b"x", "bad \udcff"), datetime.now(UTC))
    assert dict(record.headers)["reason"] == b"bad \\udcff"


def test_incident_json_schema():
    doc = json.loads(encode_incident_update(update()))
    assert doc == {
        "schema_version": INCIDENT_SCHEMA_VERSION,
        "type": "opened",
        "fingerprint": "fp-1",
        "tenant": "acme",
        "series": "postgresql,host=db-1 connections",
        "title": "connections anomalous",
        "category": "database",
        "severity": "high",
        "score": 0.97,
        "peak_score": 0.99,
        "window_start": "2023-11-14T22:14:00Z",
        "window_end": "2023-11-14T22:15:00Z",
        "window_start_ns": T0,
        "window_end_ns": T0 + 60 * S,
        "observed": 71.5,
        "metadata": {"detector": "ensemble"},
    }


def test_incident_json_round_trip():
    original = update(type=IncidentEventType.RESOLVED, metadata={"a": [1, 2], "b": {"c": "d"}})
    assert decode_incident_update(encode_incident_update(original)) == original


def test_incident_json_is_strict_with_odd_metadata():
    class Scalar:  # like a numpy scalar
        def item(self) -> float:
            return 2.5

    odd = update(
        observed=math.inf,
        metadata={
            "nan": math.nan,
            "tuple": (1, 2),
            "set": {3},
            "enum": Severity.LOW,
            "when": datetime(2024, 1, 1, tzinfo=UTC),
            "scalar": Scalar(),
            "bytes": b"\xff",
            7: object,
        },
    )
    text = encode_incident_update(odd).decode()
    doc = json.loads(text)  # strict JSON: no NaN/Infinity
    assert "NaN" not in text and "Infinity" not in text
    assert doc["observed"] is None
    meta = doc["metadata"]
    assert meta["nan"] is None and meta["tuple"] == [1, 2] and meta["set"] == [3]
    assert meta["enum"] == "low" and meta["when"].startswith("2024-01-01T00:00:00")
    assert meta["scalar"] == 2.5 and meta["bytes"] == "\\xff" and meta["7"].startswith("<class")
    assert math.isnan(decode_incident_update(text).observed)


def test_incident_documents_of_newer_schemas_are_refused():
    doc = incident_update_document(update())
    doc["schema_version"] = INCIDENT_SCHEMA_VERSION + 1
    with pytest.raises(ValueError, match="newer"):
        decode_incident_update(json.dumps(doc))


def test_incident_record_is_keyed_by_fingerprint():
    record = incident_record(update(fingerprint="abc", tenant="t1"))
    assert record.key == b"abc"
    assert dict(record.headers) == {
        "type": b"opened",
        "tenant": b"t1",
        "content-type": b"application/json",
    }
    with pytest.raises(TypeError, match="IncidentUpdate"):
        incident_record({"fingerprint": "abc"})  # type: ignore[arg-type]


def test_producer_settings_are_idempotent_and_bounded():
    config = producer_settings("k:1", client_id="c", queue_max_messages=10, extra={"linger.ms": 1})
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["queue.buffering.max.messages"] == 10
    assert config["linger.ms"] == 1
    with pytest.raises(ValueError, match="queue_max_messages"):
        producer_settings("k:1", client_id="c", queue_max_messages=0)


def test_consumer_settings_commit_nothing():
    config = consumer_settings("k:1", topic="metrics", stop_at_end=True)
    assert config["enable.auto.commit"] is False
    assert config["enable.partition.eof"] is True
    assert config["allow.auto.create.topics"] is False
    assert consumer_settings("k:1", topic="m", stop_at_end=False)["enable.partition.eof"] is False


def test_throttle_counts_what_it_suppressed():
    now = [0.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle("a") == 0
    assert throttle("a") is None
    assert throttle("b") == 0
    now[0] = 5.0
    assert throttle("a") is None
    now[0] = 10.0
    assert throttle("a") == 2


def test_settings_wire_topics_and_servers():
    settings = Settings(
        kafka_bootstrap_servers="k:1",
        kafka_metrics_topic="m",
        kafka_dlq_topic="d",
        kafka_incidents_topic="i",
    )
    # The metrics topic follows KAFKA_METRICS_PARTITIONS (default 1: series stay in order).
    assert settings_topics(settings, 6) == {"m": 1, "d": 6, "i": 6}
    wide = settings.model_copy(update={"kafka_metrics_partitions": 4})
    assert settings_topics(wide, 6)["m"] == 4
    assert KafkaMetricsSource.from_settings(settings).topic == "m"
    assert KafkaDeadLetterSink.from_settings(settings).topic == "d"
    assert KafkaIncidentSink.from_settings(settings).topic == "i"
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        KafkaMetricsSource.from_settings(Settings(kafka_bootstrap_servers=None))


@pytest.mark.parametrize(
    "options",
    [{"batch_size": 0}, {"poll_timeout_s": -1}, {"starting_offset": "first"}, {"topic": "a:b"}],
)
def test_source_refuses_bad_options(options):
    with pytest.raises(ValueError):
        KafkaMetricsSource("k:1", **{"topic": "metrics", **options})


def test_source_refuses_partitions_of_another_topic():
    with pytest.raises(ValueError, match="not of topic"):
        KafkaMetricsSource("k:1", "metrics").build_part("in", "other:0", None)


# --------------------------------------------------------------------------- source partition


class FakeMessage:
    def __init__(
        self,
        value: bytes | None = None,
        offset: int = 0,
        error: KafkaError | None = None,
        ts_ms: int = 1_000,
    ) -> None:
        self._value, self._offset, self._error, self._ts_ms = value, offset, error, ts_ms

    def error(self) -> KafkaError | None:
        return self._error

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_CREATE_TIME, self._ts_ms)

    def key(self) -> bytes | None:
        return None


class FakeConsumer:
    def __init__(self, batches: list[list[FakeMessage]]) -> None:
        self.batches = batches
        self.assigned: list[Any] = []
        self.closed = False

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = partitions

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closed = True


def partition(consumer: FakeConsumer, offset: int = OFFSET_BEGINNING, **options: Any):
    kwargs: dict[str, Any] = {
        "batch_size": 10,
        "poll_timeout_s": 0.0,
        "idle_wait_s": 0.5,
        "stop_at_end": False,
        "with_timestamps": True,
    }
    kwargs.update(options)
    return _KafkaMetricsPartition(consumer, "metrics", 2, offset, **kwargs)


def eof() -> FakeMessage:
    return FakeMessage(error=KafkaError(KafkaError._PARTITION_EOF))


def test_partition_assigns_its_offset_and_tracks_the_next_one():
    consumer = FakeConsumer([[FakeMessage(b"a", 41), FakeMessage(b"b", 42, ts_ms=7)], []])
    part = partition(consumer, offset=41)
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.assigned] == [("metrics", 2, 41)]

    batch = part.next_batch()
    assert batch == [b"a", b"b"]
    assert [m.timestamp_ns for m in batch] == [1_000_000_000, 7_000_000]
    assert part.snapshot() == 43
    assert part.next_awake() is None

    assert part.next_batch() == []
    awake = part.next_awake()
    assert awake is not None and awake > datetime.now(UTC)
    assert part.snapshot() == 43
    part.close()
    assert consumer.closed


def test_partition_skips_empty_values_but_moves_past_them():
    part = partition(FakeConsumer([[FakeMessage(None, 5), FakeMessage(b"", 6)]]), offset=5)
    assert part.next_batch() == []
    assert part.snapshot() == 7


def test_partition_without_timestamps_emits_plain_bytes():
    part = partition(FakeConsumer([[FakeMessage(b"a", 0)]]), with_timestamps=False)
    assert [type(m) for m in part.next_batch()] == [bytes]


def test_partition_stops_at_end_only_when_asked():
    tailing = partition(FakeConsumer([[FakeMessage(b"a", 0), eof()], [FakeMessage(b"b", 1)]]))
    assert tailing.next_batch() == [b"a"]
    assert tailing.next_batch() == [b"b"]

    stopping = partition(FakeConsumer([[FakeMessage(b"a", 0), eof()]]), stop_at_end=True)
    assert stopping.next_batch() == [b"a"]
    with pytest.raises(StopIteration):
        stopping.next_batch()


def test_partition_logs_errors_and_goes_on(caplog):
    transport = KafkaError(KafkaError._TRANSPORT, "broker went away")
    consumer = FakeConsumer([[FakeMessage(error=transport), FakeMessage(b"a", 0)]] * 3)
    part = partition(consumer)
    with caplog.at_level(logging.WARNING, logger="connectors.kafka"):
        assert part.next_batch() == [b"a"]
        assert part.next_batch() == [b"a"]  # same error again: throttled
        part.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all down"))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("broker went away" in m for m in messages) == 1
    assert any("all down" in m for m in messages)
    assert all("metrics" in m and "partition 2" in m for m in messages)


def test_partition_raises_on_fatal_errors():
    fatal = KafkaError(KafkaError._FATAL, "fenced", fatal=True)
    part = partition(FakeConsumer([[FakeMessage(b"a", 0), FakeMessage(error=fatal)]]))
    with pytest.raises(RuntimeError, match="fatal Kafka error.*fenced"):
        part.next_batch()

    part = partition(FakeConsumer([]))
    part.on_client_error(fatal)
    with pytest.raises(RuntimeError, match="fenced"):
        part.next_batch()


# --------------------------------------------------------------------------- producer partition


class FakeProducer:
    """Accepts ``room`` messages before raising BufferError until polled; reports deliveries on
    flush, failing the values listed in ``fail``."""

    def __init__(self, room: int = 1_000, fail: frozenset[bytes] = frozenset()) -> None:
        self.room = room
        self.fail = fail
        self.queued: list[tuple[dict[str, Any], Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.polls = 0
        self.flushes = 0

    def produce(self, topic: str, *, value, key, headers, on_delivery) -> None:
        if len(self.queued) >= self.room:
            raise BufferError("Local: Queue full")
        self.queued.append(
            ({"topic": topic, "value": value, "key": key, "headers": headers}, on_delivery)
        )

    def _deliver(self) -> None:
        for message, callback in self.queued:
            fake = FakeMessage(message["value"])
            if message["value"] in self.fail:
                callback(KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"), fake)
            else:
                self.sent.append(message)
                callback(None, fake)
        self.queued = []

    def poll(self, timeout: float) -> int:
        self.polls += 1
        if timeout > 0:
            self._deliver()
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        self._deliver()
        return 0


def sink_partition(producer: FakeProducer, **options: Any) -> _ProducerPartition:
    kwargs: dict[str, Any] = {
        "flush_every_batch": True,
        "fail_on_delivery_error": False,
        "close_timeout_s": 1.0,
    }
    kwargs.update(options)
    when = datetime(2024, 1, 1, tzinfo=UTC)
    return _ProducerPartition(
        producer, "metrics.dlq", lambda item: dead_letter_record(item, when), **kwargs
    )


def test_sink_partition_produces_everything_and_flushes_each_batch():
    producer = FakeProducer()
    part = sink_partition(producer)
    letters = [DeadLetter(f"m{i}".encode(), "r") for i in range(5)]
    part.write_batch([letters[0], ("shard", letters[1:])])
    assert [m["value"] for m in producer.sent] == [d.raw for d in letters]
    assert producer.flushes == 1 and part.delivered == 5
    assert all(m["topic"] == "metrics.dlq" for m in producer.sent)


def test_sink_partition_waits_when_the_queue_is_full(caplog):
    producer = FakeProducer(room=3)
    part = sink_partition(producer)
    letters = [DeadLetter(f"m{i}".encode(), "r") for i in range(10)]
    with caplog.at_level(logging.WARNING, logger="connectors.kafka"):
        part.write_batch(letters)
    assert [m["value"] for m in producer.sent] == [d.raw for d in letters]
    assert any("queue" in r.getMessage() and "full" in r.getMessage() for r in caplog.records)


def test_sink_partition_logs_delivery_failures(caplog):
    producer = FakeProducer(fail=frozenset({b"lost"}))
    part = sink_partition(producer)
    with caplog.at_level(logging.ERROR, logger="connectors.kafka"):
        part.write_batch([DeadLetter(b"kept", "r"), DeadLetter(b"lost", "r")])
    assert part.delivery_failures == 1 and part.delivered == 1
    assert any("NOT delivered" in r.getMessage() for r in caplog.records)


def test_sink_partition_can_stop_on_delivery_failures():
    part = sink_partition(FakeProducer(fail=frozenset({b"lost"})), fail_on_delivery_error=True)
    with pytest.raises(RuntimeError, match="could not be delivered"):
        part.write_batch([DeadLetter(b"lost", "r")])


def test_sink_partition_stops_on_fatal_producer_errors():
    part = sink_partition(FakeProducer())
    part.on_client_error(KafkaError(KafkaError._FATAL, "idempotence broken", fatal=True))
    with pytest.raises(RuntimeError, match="idempotence broken"):
        part.write_batch([DeadLetter(b"x", "r")])


def test_sink_partition_flushes_on_close():
    producer = FakeProducer()
    part = sink_partition(producer, flush_every_batch=False)
    part.write_batch([DeadLetter(b"x", "r")])
    assert producer.sent == []
    part.close()
    assert [m["value"] for m in producer.sent] == [b"x"]
