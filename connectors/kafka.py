"""Kafka I/O for the dataflows: the metrics source, the dead-letter and incident sinks, topic setup.

- :class:`KafkaMetricsSource` reads the metrics topic (contract 4 of ARCHITECTURE.md) and emits
  the raw message values as ``bytes``, one Bytewax partition per Kafka partition, resuming from
  the offsets in Bytewax's recovery snapshots (no consumer group, no committed offsets).
- :class:`KafkaDeadLetterSink` writes :class:`~incidents.schemas.DeadLetter` s to the DLQ topic:
  the value is the original bytes exactly, the reason travels in headers.
- :class:`KafkaIncidentSink` writes :class:`~incidents.schemas.IncidentUpdate` s to the incidents
  topic as JSON (:func:`encode_incident_update`), keyed by fingerprint.
- :func:`ensure_topics` creates missing topics, idempotently.

The message encodings are small pure functions, so they are tested without a broker; only the
classes talk to Kafka. Producers are idempotent, bounded (``queue.buffering.max.messages``) and
wait (poll) instead of failing when the queue is full; delivery failures are logged.

Delivery is at-least-once across a crash: a sink flushes every batch before it returns, so what a
Bytewax snapshot counts as written has reached the broker, and what ran after the last snapshot
is written again after a restart (downstream consumers dedupe incident events by
``(fingerprint, type, window_start_ns)``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.sinks import flatten_items
from incidents.schemas import (
    Category,
    DeadLetter,
    IncidentEventType,
    IncidentUpdate,
    Severity,
)

if TYPE_CHECKING:
    from incidents.config import Settings

log = logging.getLogger(__name__)
_librdkafka_log = logging.getLogger(__name__ + ".librdkafka")

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

StartOffset = Literal["earliest", "latest"]
Headers = list[tuple[str, bytes]]

INCIDENT_SCHEMA_VERSION = 1
"""Version of the incident JSON written by :func:`encode_incident_update`; bumped on any change
that is not a pure addition of keys."""


# --------------------------------------------------------------------------- pure pieces


class KafkaPayload(bytes):
    """A metrics message value (``bytes``) that also carries its Kafka message timestamp.

    The dataflow only needs ``bytes``; ``timestamp_ns`` (CreateTime or LogAppendTime, ms
    precision, ``None`` when the broker has none) is there for the parser's default timestamp of
    points that carry none. Slicing or decoding gives plain ``bytes``/``str`` as usual.
    """

    timestamp_ns: int | None

    def __new__(cls, value: bytes, timestamp_ns: int | None = None) -> KafkaPayload:
        self = super().__new__(cls, value)
        self.timestamp_ns = timestamp_ns
        return self

    def __reduce__(self) -> tuple[type[KafkaPayload], tuple[bytes, int | None]]:
        return (KafkaPayload, (bytes(self), self.timestamp_ns))

    def __repr__(self) -> str:
        return f"KafkaPayload({bytes(self)!r}, timestamp_ns={self.timestamp_ns})"


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One message to produce: what the pure encoders return and the sinks send."""

    key: bytes | None
    value: bytes
    headers: Headers


def kafka_timestamp_ns(timestamp: tuple[int, int]) -> int | None:
    """``Message.timestamp()`` (type, epoch milliseconds) as epoch nanoseconds, if there is one."""
    kind, millis = timestamp
    if kind == TIMESTAMP_NOT_AVAILABLE or millis < 0:
        return None
    return millis * NS_PER_MS


def part_key(topic: str, partition: int) -> str:
    """The Bytewax partition key of one Kafka partition, e.g. ``metrics:2``.

    The topic is part of the key so that recovery state of one topic is never applied to
    another (Kafka topic names cannot contain ``:``).
    """
    return f"{topic}:{partition}"


def parse_part_key(key: str) -> tuple[str, int]:
    """Inverse of :func:`part_key`."""
    topic, sep, partition = key.rpartition(":")
    if not sep or not topic or not partition.isdigit():
        raise ValueError(f"not a Kafka partition key: {key!r}")
    return topic, int(partition)


def start_offset(name: StartOffset) -> int:
    """The librdkafka logical offset for a fresh run's starting point."""
    offsets = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}
    try:
        return offsets[name]
    except KeyError:
        raise ValueError(f"starting_offset must be 'earliest' or 'latest', got {name!r}") from None


def bootstrap_string(servers: str | Sequence[str]) -> str:
    """``bootstrap.servers`` from a comma-separated string or a list of ``host:port``."""
    text = servers if isinstance(servers, str) else ",".join(servers)
    text = ",".join(part.strip() for part in text.split(",") if part.strip())
    if not text:
        raise ValueError("Kafka bootstrap servers must not be empty (KAFKA_BOOTSTRAP_SERVERS)")
    return text


def ns_to_iso(ns: int) -> str:
    """Epoch nanoseconds as ISO 8601 UTC with a ``Z`` (microsecond precision)."""
    seconds, rest = divmod(ns, NS_PER_S)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        seconds=seconds, microseconds=rest // 1000
    )
    return moment.isoformat().replace("+00:00", "Z")


def _header_text(text: str) -> bytes:
    return text.encode("utf-8", errors="backslashreplace")


def dead_letter_record(letter: DeadLetter, failed_at: datetime) -> KafkaRecord:
    """The DLQ message of a dead letter: the original bytes, ``reason``/``source``/``failed_at``.

    ``failed_at`` is when the dataflow gave up on the message (ISO 8601, UTC). There is no key:
    dead letters spread over the DLQ's partitions.
    """
    if not isinstance(letter, DeadLetter):
        raise TypeError(f"the dead-letter sink takes DeadLetter items, got {type(letter).__name__}")
    when = failed_at if failed_at.tzinfo is not None else failed_at.replace(tzinfo=UTC)
    headers: Headers = [
        ("reason", _header_text(letter.reason)),
        ("source", _header_text(letter.source)),
        ("failed_at", when.astimezone(UTC).isoformat(timespec="milliseconds").encode()),
    ]
    return KafkaRecord(key=None, value=bytes(letter.raw), headers=headers)


def _jsonable(value: Any) -> Any:
    """``value`` made strict-JSON-safe: non-finite floats become null, unknown types strings.

    Metadata is free-form (detectors put numpy scalars, tuples and enums there); one odd value
    must not stop the incidents stream.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def incident_update_document(update: IncidentUpdate) -> dict[str, Any]:
    """The JSON object of one incident update (schema version :data:`INCIDENT_SCHEMA_VERSION`).

    Keys, in this order: ``schema_version`` (int), ``type`` (``opened``/``updated``/
    ``resolved``), ``fingerprint``, ``tenant``, ``series``, ``title``, ``category``,
    ``severity``, ``score`` and ``peak_score`` (floats in [0, 1]), ``window_start`` and
    ``window_end`` (ISO 8601 UTC, ``Z``), ``window_start_ns`` and ``window_end_ns`` (epoch
    nanoseconds, exact), ``observed`` (float or null), ``metadata`` (object). Non-finite numbers
    are written as null.
    """
    return {
        "schema_version": INCIDENT_SCHEMA_VERSION,
        "type": str(update.type.value),
        "fingerprint": update.fingerprint,
        "tenant": update.tenant,
        "series": update.series,
        "title": update.title,
        "category": str(update.category.value),
        "severity": str(update.severity.value),
        "score": _jsonable(float(update.score)),
        "peak_score": _jsonable(float(update.peak_score)),
        "window_start": ns_to_iso(update.window_start_ns),
        "window_end": ns_to_iso(update.window_end_ns),
        "window_start_ns": int(update.window_start_ns),
        "window_end_ns": int(update.window_end_ns),
        "observed": _jsonable(float(update.observed)),
        "metadata": _jsonable(dict(update.metadata)),
    }


def encode_incident_update(update: IncidentUpdate) -> bytes:
    """Compact UTF-8 JSON of :func:`incident_update_document`."""
    document = incident_update_document(update)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_incident_update(data: bytes | str) -> IncidentUpdate:
    """Read an incident message back (for consumers of the incidents topic and tests).

    Null numbers come back as NaN; unknown keys are ignored, so later additive schema versions
    still decode.
    """
    doc = json.loads(data)
    version = doc.get("schema_version", INCIDENT_SCHEMA_VERSION)
    if version > INCIDENT_SCHEMA_VERSION:
        raise ValueError(f"incident schema version {version} is newer than this reader's")

    def number(name: str) -> float:
        value = doc.get(name)
        return math.nan if value is None else float(value)

    return IncidentUpdate(
        type=IncidentEventType(doc["type"]),
        fingerprint=doc["fingerprint"],
        tenant=doc["tenant"],
        series=doc["series"],
        title=doc["title"],
        category=Category(doc["category"]),
        severity=Severity(doc["severity"]),
        score=number("score"),
        peak_score=number("peak_score"),
        window_start_ns=int(doc["window_start_ns"]),
        window_end_ns=int(doc["window_end_ns"]),
        observed=number("observed"),
        metadata=dict(doc.get("metadata") or {}),
    )


def incident_record(update: IncidentUpdate) -> KafkaRecord:
    """The incidents-topic message: key = fingerprint (one incident's events stay in order in one
    partition), value = :func:`encode_incident_update`, headers ``type`` and ``tenant`` so
    consumers can route without parsing."""
    if not isinstance(update, IncidentUpdate):
        raise TypeError(
            f"the incident sink takes IncidentUpdate items, got {type(update).__name__}"
        )
    return KafkaRecord(
        key=update.fingerprint.encode(),
        value=encode_incident_update(update),
        headers=[
            ("type", str(update.type.value).encode()),
            ("tenant", _header_text(update.tenant)),
            ("content-type", b"application/json"),
        ],
    )


def producer_settings(
    bootstrap_servers: str | Sequence[str],
    *,
    client_id: str,
    queue_max_messages: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka producer settings: idempotent (``acks=all``, no duplicates or reordering on
    retries) with a bounded local queue; ``extra`` overrides."""
    if queue_max_messages < 1:
        raise ValueError(f"queue_max_messages must be at least 1, got {queue_max_messages}")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_string(bootstrap_servers),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "queue.buffering.max.messages": queue_max_messages,
        "linger.ms": 5,
    }
    config.update(extra or {})
    return config


def consumer_settings(
    bootstrap_servers: str | Sequence[str],
    *,
    topic: str,
    stop_at_end: bool,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka consumer settings for one assigned partition; ``extra`` overrides.

    Offsets live in Bytewax's recovery snapshots, so nothing is committed to Kafka (the group id
    is required by librdkafka but never joined: partitions are assigned, not subscribed). An
    offset that no longer exists (retention, a recreated topic) restarts at the earliest one.
    The prefetch queue is smaller than librdkafka's 64 MB default because every partition has
    its own consumer.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_string(bootstrap_servers),
        "group.id": f"incidents-bytewax.{topic}",
        "client.id": "incidents-metrics-source",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": stop_at_end,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "queued.max.messages.kbytes": 16_384,
    }
    config.update(extra or {})
    return config


class Throttle:
    """Decides whether to log a recurring problem: at most once per ``interval_s`` per key.

    ``__call__`` returns ``None`` to stay quiet, else how many were suppressed since the last
    time (so a broker outage logs one line every few seconds, not one per poll).
    """

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str) -> int | None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


def _suffix(suppressed: int) -> str:
    return f" ({suppressed} similar suppressed)" if suppressed else ""


def _error_key(error: KafkaError) -> str:
    return f"{error.code()}"


# --------------------------------------------------------------------------- source


class _KafkaMetricsPartition(StatefulSourcePartition[bytes, int]):
    """One Kafka partition, read by its own consumer; the resume state is the next offset."""

    def __init__(
        self,
        consumer: Any,
        topic: str,
        partition: int,
        offset: int,
        *,
        batch_size: int,
        poll_timeout_s: float,
        idle_wait_s: float,
        stop_at_end: bool,
        with_timestamps: bool,
        throttle: Throttle | None = None,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._idle_wait = timedelta(seconds=idle_wait_s)
        self._stop_at_end = stop_at_end
        self._with_timestamps = with_timestamps
        self._throttle = throttle or Throttle()
        self._at_end = False
        self._awake: datetime | None = None
        self._fatal: KafkaError | None = None
        consumer.assign([TopicPartition(topic, partition, offset)])

    @property
    def where(self) -> str:
        return f"Kafka topic {self._topic!r} partition {self._partition}"

    def on_client_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``: client-wide problems (broker down, auth, fatal states)."""
        if error.fatal():
            self._fatal = error
            return
        suppressed = self._throttle(f"client:{_error_key(error)}")
        if suppressed is not None:
            log.warning("%s: consumer error: %s%s", self.where, error.str(), _suffix(suppressed))

    def _on_message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            if self._stop_at_end:
                self._at_end = True
            return
        if error.fatal():
            self._fatal = error
            return
        suppressed = self._throttle(f"message:{_error_key(error)}")
        if suppressed is not None:
            log.warning("%s: consume error: %s%s", self.where, error.str(), _suffix(suppressed))

    def next_batch(self) -> list[bytes]:
        if self._at_end:
            raise StopIteration
        self._raise_if_fatal()
        messages = self._consumer.consume(self._batch_size, self._poll_timeout_s)
        batch: list[bytes] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            self._offset = message.offset() + 1
            value = message.value()
            if not value:  # tombstones and empty messages hold no points
                continue
            if self._with_timestamps:
                value = KafkaPayload(value, kafka_timestamp_ns(message.timestamp()))
            batch.append(value)
        self._raise_if_fatal()
        # Nothing there: come back a little later instead of spinning (Bytewax would otherwise
        # call again after 1 ms); with data, call again at once.
        self._awake = None if batch else datetime.now(UTC) + self._idle_wait
        return batch

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise RuntimeError(
                f"fatal Kafka error while consuming {self.where}: {self._fatal.str()}; "
                "the dataflow stops and resumes from its last snapshot when restarted"
            )

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class KafkaMetricsSource(FixedPartitionedSource[bytes, int]):
    """The metrics topic as a Bytewax input: raw message values, one partition per Kafka one.

    Bytewax spreads the partitions over the workers of all processes, and its recovery snapshots
    keep the next offset of each, so a restart (even after ``kill -9``) continues at the last
    snapshot (at-least-once: what came after it is read again). ``starting_offset`` applies only
    to partitions without a snapshot. Kafka offsets are neither read from nor committed to a
    consumer group.

    Items are ``bytes``; with ``with_timestamps`` they are :class:`KafkaPayload` s that also
    carry the Kafka message timestamp. Empty values and tombstones are skipped.

    ``batch_size`` bounds the messages of one ``next_batch``; ``poll_timeout_s`` is how long one
    call may block waiting for messages (0: never, Bytewax's cooperative scheduling), and after
    an empty poll the partition sleeps ``idle_wait_s`` through ``next_awake``. With
    ``stop_at_end`` each partition ends at the end of the partition as seen when reached (tests,
    backfills); otherwise it tails forever.

    Consumer errors are logged (throttled) and consumption continues (librdkafka reconnects and
    retries by itself); fatal ones raise ``RuntimeError``.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str = "metrics",
        *,
        batch_size: int = 1000,
        poll_timeout_s: float = 0.0,
        idle_wait_s: float = 0.05,
        starting_offset: StartOffset = "earliest",
        stop_at_end: bool = False,
        with_timestamps: bool = True,
        consumer_config: Mapping[str, Any] | None = None,
        metadata_timeout_s: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if poll_timeout_s < 0 or idle_wait_s < 0:
            raise ValueError("poll_timeout_s and idle_wait_s must not be negative")
        if not topic or ":" in topic:
            raise ValueError(f"invalid Kafka topic name: {topic!r}")
        self.bootstrap_servers = bootstrap_string(bootstrap_servers)
        self.topic = topic
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.idle_wait_s = idle_wait_s
        self.starting_offset = starting_offset
        start_offset(starting_offset)  # fail fast on a bad name
        self.stop_at_end = stop_at_end
        self.with_timestamps = with_timestamps
        self.consumer_config = dict(consumer_config or {})
        self.metadata_timeout_s = metadata_timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> KafkaMetricsSource:
        """``KAFKA_BOOTSTRAP_SERVERS`` and ``KAFKA_METRICS_TOPIC``; options as in ``__init__``."""
        return cls(_required_bootstrap(settings), settings.kafka_metrics_topic, **options)

    def list_parts(self) -> list[str]:
        partitions = topic_partitions(
            self.bootstrap_servers,
            self.topic,
            timeout_s=self.metadata_timeout_s,
            extra=self.consumer_config,
        )
        return [part_key(self.topic, p) for p in partitions]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _KafkaMetricsPartition:
        topic, partition = parse_part_key(for_part)
        if topic != self.topic:
            raise ValueError(f"partition {for_part!r} is not of topic {self.topic!r}")
        throttle = Throttle()
        holder: list[_KafkaMetricsPartition] = []

        def on_error(error: KafkaError) -> None:
            if holder:
                holder[0].on_client_error(error)
            elif throttle(f"client:{_error_key(error)}") is not None:
                log.warning("Kafka consumer error for %s: %s", for_part, error.str())

        config = consumer_settings(
            self.bootstrap_servers,
            topic=topic,
            stop_at_end=self.stop_at_end,
            extra={"error_cb": on_error, "logger": _librdkafka_log, **self.consumer_config},
        )
        consumer = Consumer(config)
        if resume_state is not None:
            offset = resume_state
        else:
            offset = self._fresh_offset(consumer, partition)
        log.info(
            "reading Kafka topic %r partition %d from %s",
            topic,
            partition,
            f"offset {offset} (snapshot)" if resume_state is not None else _offset_name(offset),
        )
        part = _KafkaMetricsPartition(
            consumer,
            topic,
            partition,
            offset,
            batch_size=self.batch_size,
            poll_timeout_s=self.poll_timeout_s,
            idle_wait_s=self.idle_wait_s,
            stop_at_end=self.stop_at_end,
            with_timestamps=self.with_timestamps,
            throttle=throttle,
        )
        holder.append(part)
        return part

    def _fresh_offset(self, consumer: Any, partition: int) -> int:
        """Where a partition without a snapshot starts.

        ``latest`` is resolved to the concrete high watermark now: a snapshot holding the logical
        ``OFFSET_END`` would skip everything produced while the dataflow was down.
        """
        logical = start_offset(self.starting_offset)
        if logical != OFFSET_END:
            return logical
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=self.metadata_timeout_s
            )
        except KafkaException as exc:
            log.warning(
                "could not read the end offset of %s[%d] (%s); starting at its end as seen later",
                self.topic,
                partition,
                exc,
            )
            return OFFSET_END
        return int(high)


def _offset_name(offset: int) -> str:
    names = {OFFSET_BEGINNING: "the earliest offset", OFFSET_END: "the end"}
    return names.get(offset, f"offset {offset}")


def _required_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set; Kafka connectors need it")
    return settings.kafka_bootstrap_servers


def topic_partitions(
    bootstrap_servers: str | Sequence[str],
    topic: str,
    *,
    timeout_s: float = 30.0,
    extra: Mapping[str, Any] | None = None,
) -> list[int]:
    """The partition ids of ``topic``, retrying until ``timeout_s`` while the broker is away.

    Raises ``RuntimeError`` when the topic does not exist (it is never auto-created here) or the
    broker does not answer in time.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_string(bootstrap_servers),
        "allow.auto.create.topics": False,
        "logger": _librdkafka_log,
    }
    config.update(
        {k: v for k, v in (extra or {}).items() if k.startswith(("security.", "sasl.", "ssl."))}
    )
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    problem = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = admin.list_topics(topic=topic, timeout=max(min(remaining, 10.0), 0.5))
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return sorted(found.partitions)
            problem = found.error.str() if found is not None and found.error else "no partitions"
        except KafkaException as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"cannot list the partitions of Kafka topic {topic!r} at "
                f"{config['bootstrap.servers']} within {timeout_s:g} s: {problem} "
                "(is the broker up and the topic created? see connectors.kafka.ensure_topics)"
            )
        time.sleep(0.5)


# --------------------------------------------------------------------------- sinks


class _ProducerPartition(StatelessSinkPartition[Any]):
    """Produces every item of a batch, then flushes, so a returned batch is on the broker."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        encode: Callable[[Any], KafkaRecord],
        *,
        flush_every_batch: bool,
        fail_on_delivery_error: bool,
        close_timeout_s: float,
        throttle: Throttle | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._flush_every_batch = flush_every_batch
        self._fail_on_delivery_error = fail_on_delivery_error
        self._close_timeout_s = close_timeout_s
        self._throttle = throttle or Throttle(5.0)
        self._fatal: KafkaError | None = None
        self._failed_since_check = 0
        self.delivered = 0
        self.delivery_failures = 0

    def on_client_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``; a fatal error (idempotence broken) stops the sink."""
        if error.fatal():
            self._fatal = error
            return
        suppressed = self._throttle(f"client:{_error_key(error)}")
        if suppressed is not None:
            log.warning(
                "Kafka producer for %r: %s%s", self._topic, error.str(), _suffix(suppressed)
            )

    def on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.delivered += 1
            return
        self.delivery_failures += 1
        self._failed_since_check += 1
        key = message.key() if message is not None else None
        size = len(message.value() or b"") if message is not None else 0
        log.error(
            "message to Kafka topic %r was NOT delivered (key=%r, %d bytes): %s",
            self._topic,
            key,
            size,
            error.str(),
        )

    def write_batch(self, items: list[Any]) -> None:
        self._check()
        for item in flatten_items(items):
            self._produce(self._encode(item))
        if self._flush_every_batch:
            self._flush_all(timeout_s=None)
        self._check()

    def _produce(self, record: KafkaRecord) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=self.on_delivery,
                )
                break
            except BufferError:
                # Local queue full (queue.buffering.max.messages): serve delivery reports until
                # there is room again. This is the backpressure on the dataflow.
                suppressed = self._throttle("queue-full")
                if suppressed is not None:
                    log.warning(
                        "Kafka producer queue for %r is full; waiting for the broker%s",
                        self._topic,
                        _suffix(suppressed),
                    )
                self._producer.poll(0.1)
                self._check()
        self._producer.poll(0)

    def _flush_all(self, timeout_s: float | None) -> int:
        """Flush until everything is delivered or failed (librdkafka gives up after
        ``delivery.timeout.ms``), or until ``timeout_s``; returns what is still queued."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            step = 5.0 if deadline is None else max(0.0, min(5.0, deadline - time.monotonic()))
            remaining = self._producer.flush(step)
            if remaining == 0 or (deadline is not None and time.monotonic() >= deadline):
                return remaining
            log.warning(
                "still waiting for %d message(s) to Kafka topic %r to be delivered",
                remaining,
                self._topic,
            )

    def _check(self) -> None:
        if self._fatal is not None:
            raise RuntimeError(
                f"fatal Kafka producer error for topic {self._topic!r}: {self._fatal.str()}"
            )
        if self._fail_on_delivery_error and self._failed_since_check:
            failed, self._failed_since_check = self._failed_since_check, 0
            raise RuntimeError(
                f"{failed} message(s) to Kafka topic {self._topic!r} could not be delivered"
            )

    def close(self) -> None:
        remaining = self._flush_all(timeout_s=self._close_timeout_s)
        if remaining:
            log.error(
                "closing the Kafka producer for %r with %d undelivered message(s)",
                self._topic,
                remaining,
            )


class _KafkaProducerSink(DynamicSink[Any]):
    """A Bytewax sink producing to one topic with one idempotent producer per worker."""

    client_id = "incidents-sink"

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        producer_config: Mapping[str, Any] | None = None,
        queue_max_messages: int = 100_000,
        flush_every_batch: bool = True,
        fail_on_delivery_error: bool = False,
        close_timeout_s: float = 30.0,
    ) -> None:
        if not topic:
            raise ValueError("the Kafka topic must not be empty")
        self.bootstrap_servers = bootstrap_string(bootstrap_servers)
        self.topic = topic
        self.producer_config = dict(producer_config or {})
        self.queue_max_messages = queue_max_messages
        self.flush_every_batch = flush_every_batch
        self.fail_on_delivery_error = fail_on_delivery_error
        self.close_timeout_s = close_timeout_s
        producer_settings(  # fail fast on bad settings
            self.bootstrap_servers, client_id="check", queue_max_messages=queue_max_messages
        )

    def encode(self, item: Any) -> KafkaRecord:
        raise NotImplementedError

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        holder: list[_ProducerPartition] = []

        def on_error(error: KafkaError) -> None:
            if holder:
                holder[0].on_client_error(error)

        config = producer_settings(
            self.bootstrap_servers,
            client_id=f"{self.client_id}-{worker_index}",
            queue_max_messages=self.queue_max_messages,
            extra={"error_cb": on_error, "logger": _librdkafka_log, **self.producer_config},
        )
        part = _ProducerPartition(
            Producer(config),
            self.topic,
            self.encode,
            flush_every_batch=self.flush_every_batch,
            fail_on_delivery_error=self.fail_on_delivery_error,
            close_timeout_s=self.close_timeout_s,
        )
        holder.append(part)
        return part


class KafkaDeadLetterSink(_KafkaProducerSink):
    """Dead letters to the DLQ topic (:func:`dead_letter_record`): original bytes + headers.

    Items are bare :class:`DeadLetter` s (as the dataflow's branch emits them) or
    ``(shard, [DeadLetter, ...])`` pairs. ``failed_at`` is the time the sink writes them.
    Options (all sinks): ``queue_max_messages`` bounds the local queue (a full queue makes the
    sink wait: backpressure); ``flush_every_batch`` waits for delivery before a batch counts as
    written (needed for at-least-once with recovery); delivery failures are logged, and with
    ``fail_on_delivery_error`` they also stop the dataflow.
    """

    client_id = "incidents-dlq"

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str = "metrics.dlq",
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        **options: Any,
    ) -> None:
        super().__init__(bootstrap_servers, topic, **options)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> KafkaDeadLetterSink:
        """``KAFKA_BOOTSTRAP_SERVERS`` and ``KAFKA_DLQ_TOPIC``."""
        return cls(_required_bootstrap(settings), settings.kafka_dlq_topic, **options)

    def encode(self, item: Any) -> KafkaRecord:
        return dead_letter_record(item, self.clock())


class KafkaIncidentSink(_KafkaProducerSink):
    """Incident updates to the incidents topic as JSON (:func:`incident_record`), key =
    fingerprint. Items are ``(shard, [IncidentUpdate, ...])`` pairs or bare updates."""

    client_id = "incidents-events"

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str = "incidents",
        **options: Any,
    ) -> None:
        super().__init__(bootstrap_servers, topic, **options)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> KafkaIncidentSink:
        """``KAFKA_BOOTSTRAP_SERVERS`` and ``KAFKA_INCIDENTS_TOPIC``."""
        return cls(_required_bootstrap(settings), settings.kafka_incidents_topic, **options)

    def encode(self, item: Any) -> KafkaRecord:
        return incident_record(item)


# --------------------------------------------------------------------------- topics


def settings_topics(settings: Settings, partitions: int = 1) -> dict[str, int]:
    """The configured topics for :func:`ensure_topics`.

    The dead-letter and incident topics carry little traffic: one partition each unless asked.

    The metrics topic gets ``KAFKA_METRICS_PARTITIONS`` (default 1): windows close on each
    series' own event time, so a series whose messages are spread over several partitions
    (producers that send without a key) arrives out of order by as much as the partitions' lag
    differ, and a backlog read partition by partition would be mostly late. More partitions
    (to spread the work over workers) want producers that key by host or series, e.g. Telegraf's
    ``routing_tag = "host"``.
    """
    return {
        settings.kafka_metrics_topic: settings.kafka_metrics_partitions,
        settings.kafka_dlq_topic: partitions,
        settings.kafka_incidents_topic: partitions,
    }


def ensure_topics(
    bootstrap_servers: str | Sequence[str],
    topics: Mapping[str, int],
    *,
    replication_factor: int = -1,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics of ``topics`` (name -> partitions) that do not exist yet.

    Idempotent: existing topics are left as they are (a warning if one has fewer partitions than
    asked; partitions are never added, that would move keys). ``replication_factor=-1`` takes
    the broker's default. Returns the names created by this call, after their partitions have
    leaders (so a consumer started right after does not see an unknown topic).
    """
    for name, count in topics.items():
        if not name or count < 1:
            raise ValueError(f"topic {name!r}: need a name and at least one partition")
    if not topics:
        return []
    admin = AdminClient(
        {"bootstrap.servers": bootstrap_string(bootstrap_servers), "logger": _librdkafka_log}
    )
    existing = admin.list_topics(timeout=timeout_s).topics
    for name, count in topics.items():
        found = existing.get(name)
        if found is not None and found.partitions and len(found.partitions) < count:
            log.warning(
                "Kafka topic %r has %d partition(s), fewer than the %d asked; left as it is",
                name,
                len(found.partitions),
                count,
            )
    missing = [
        NewTopic(
            name,
            num_partitions=count,
            replication_factor=replication_factor,
            config=dict(config or {}),
        )
        for name, count in topics.items()
        if name not in existing
    ]
    if not missing:
        return []
    futures = admin.create_topics(missing, operation_timeout=timeout_s, request_timeout=timeout_s)
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise RuntimeError(f"could not create Kafka topic {name!r}: {exc}") from exc
    _wait_for_leaders(admin, {n: topics[n] for n in created}, timeout_s)
    return created


def _wait_for_leaders(admin: AdminClient, topics: Mapping[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(topics)
    while pending:
        metadata = admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0)).topics
        for name, count in list(pending.items()):
            found = metadata.get(name)
            if (
                found is not None
                and found.error is None
                and len(found.partitions) >= count
                and all(p.leader >= 0 for p in found.partitions.values())
            ):
                del pending[name]
        if not pending:
            return
        if time.monotonic() >= deadline:
            log.warning(
                "Kafka topics %s have no leaders yet after %g s", sorted(pending), timeout_s
            )
            return
        time.sleep(0.2)


__all__ = [
    "INCIDENT_SCHEMA_VERSION",
    "KafkaDeadLetterSink",
    "KafkaIncidentSink",
    "KafkaMetricsSource",
    "KafkaPayload",
    "KafkaRecord",
    "bootstrap_string",
    "consumer_settings",
    "dead_letter_record",
    "decode_incident_update",
    "encode_incident_update",
    "ensure_topics",
    "flatten_items",
    "incident_record",
    "incident_update_document",
    "kafka_timestamp_ns",
    "ns_to_iso",
    "parse_part_key",
    "part_key",
    "producer_settings",
    "settings_topics",
    "start_offset",
    "topic_partitions",
]
