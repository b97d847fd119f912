"""InfluxDB 2.x: the dashboards' copy of window aggregates and incident annotations.

Schema (documented for Grafana in ``docs/influx-schema.md``):

* ``window_aggregates``: one point per scored window, time = window start (ns). Tags
  ``tenant``, ``measurement``, ``field``, ``series`` (the full series key) plus the series' own
  tags; fields ``count``, ``mean``, ``min``, ``max``, ``std``, ``last``, ``anomaly_score``,
  ``is_anomaly``, ``window_end_ns`` and ``components`` (JSON text).
* ``incidents``: one point per incident update, time = window start. Tags ``tenant``,
  ``fingerprint``, ``severity``, ``category``, ``event``; fields ``title``, ``text``, ``score``,
  ``peak_score``, ``series``, ``observed``, ``window_end_ns``.

A point's identity in InfluxDB is measurement + tag set + time, so a window or update replayed
by Bytewax recovery overwrites itself: both sinks are idempotent without any bookkeeping.

Pieces:

* pure point builders (``window_point``, ``incident_point``) producing line protocol with
  InfluxDB's own tag escaping (``escape_tag``: it differs from ``incidents.parsing`` on
  backslashes);
* pure retry maths (``backoff_delay``, ``retry_delay``, ``parse_retry_after``) and a bounded
  ``PointBuffer`` that drops (and counts) the oldest points when full;
* ``InfluxWriter``: batches, sends and retries on one background thread;
* ``InfluxWindowSink`` / ``InfluxIncidentSink``: Bytewax sinks, one writer per partition;
* ``InfluxReader``: Flux queries returning the store's ``WindowRecord``.

Why httpx against ``/api/v2/write`` instead of influxdb-client's ``WriteApi``: the batching mode
of ``WriteApi`` runs its own RxPY pipeline with no bound on what waits during retries and no
counters to read, and its synchronous mode is a blocking call that would need the same buffer,
thread, retry loop and counters around it anyway. Writing is one POST of line protocol, so doing
it directly keeps the buffer bound, the drop policy, the retry rule (``Retry-After`` included)
and the close deadline in this file where they can be read and tested. Reads do use
influxdb-client: its ``params`` support turns Python values into Flux AST literals, so user input
is never formatted into query text.

Delivery is at least once across a crash, as for the SQL store and the Kafka sinks: a sink
partition flushes its writer before ``write_batch`` returns (within the writer's retry budget),
so what a Bytewax snapshot counts as written is in InfluxDB, and what ran after the last snapshot
is written again after a restart (and overwrites itself). Without that flush, points waiting in
the writer's buffer when the process is killed after a snapshot were lost for good.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal

import httpx
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import SecretStr

from connectors.sinks import flatten_items
from connectors.store import finite
from incidents.config import Settings
from incidents.parsing import format_field_value
from incidents.records import WindowRecord
from incidents.schemas import AnomalyScore, IncidentUpdate, split_series

log = logging.getLogger(__name__)

WINDOW_MEASUREMENT = "window_aggregates"
INCIDENT_MEASUREMENT = "incidents"

STRUCTURAL_TAGS = frozenset({"tenant", "measurement", "field", "series"})
"""Tags every window point has; a series' own tag with one of these names is not copied."""

# InfluxDB's valid time range (influxdb/models: MinNanoTime, MaxNanoTime).
MIN_TIME_NS = -(2**63) + 2
MAX_TIME_NS = 2**63 - 2

DROP_LOG_INTERVAL_S = 10.0
"""A full buffer is logged at most this often (a dead InfluxDB would otherwise flood the log)."""

_STRING_FIELD_MAX = 32_000  # keep annotation text well below InfluxDB's 64 KiB field limit


# --------------------------------------------------------------------------- point building


def _one_line(text: str) -> str:
    """String field text on one line (line protocol has no newline in values), bounded."""
    if "\n" in text or "\r" in text:
        text = " ".join(text.splitlines())
    return text[:_STRING_FIELD_MAX]


_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


def escape_tag(text: str) -> str:
    """A tag key or value as InfluxDB 2.x's parser reads it back exactly.

    InfluxDB unescapes only ``\\,``, ``\\=`` and ``\\ `` in tags and keeps every other
    backslash literally (``a\\\\b`` is stored with two backslashes), so backslashes are NOT
    doubled here, unlike ``incidents.parsing.format_line_protocol``. That leaves three things
    line protocol cannot carry in a tag: an empty text, a newline, and a trailing backslash
    (InfluxDB would read the following separator as escaped); they raise ``ValueError``.
    """
    if not text:
        raise ValueError("empty tag key or value")
    if "\n" in text or "\r" in text:
        raise ValueError(f"tag text with a newline: {text!r}")
    if text[-1] == "\\":
        raise ValueError(f"tag text ending with a backslash: {text!r}")
    if "," in text or "=" in text or " " in text:
        return text.translate(_TAG_ESCAPES)
    return text


def format_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | bool | str],
    timestamp_ns: int,
) -> str:
    """One line of line protocol with InfluxDB's tag escaping (``escape_tag``), tags sorted.

    Field values use ``incidents.parsing.format_field_value``, whose string escaping (``\\`` and
    ``"``) is what InfluxDB expects; it raises ``ValueError`` for non-finite floats.
    """
    return f"{format_head(measurement, tags)} {format_fields(fields)} {int(timestamp_ns)}"


def format_head(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tag=value,...`` part of a line, tags sorted by key."""
    return ",".join(
        [escape_tag(measurement)]
        + [f"{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items())]
    )


def format_fields(fields: Mapping[str, float | int | bool | str]) -> str:
    """The ``key=value,...`` part of a line (keys escaped like tags)."""
    if not fields:
        raise ValueError("at least one field is required")
    return ",".join(f"{escape_tag(k)}={format_field_value(v)}" for k, v in fields.items())


def _representable(text: str) -> bool:
    return bool(text) and not text.endswith("\\") and "\n" not in text and "\r" not in text


def _is_copyable_tag(key: str, value: str) -> bool:
    # InfluxDB reserves keys starting with "_" (_measurement, _field, ...) and "time".
    return (
        key not in STRUCTURAL_TAGS
        and not key.startswith("_")
        and key != "time"
        and _representable(key)
        and _representable(value)
    )


def window_tags(tenant: str, series: str) -> dict[str, str]:
    """All tags of a window point: the structural ones win over the series' own tags.

    A series tag named ``tenant``/``measurement``/``field``/``series``, ``time`` or starting with
    ``_``, or one that a tag cannot carry (``escape_tag``), is not copied; nothing is lost
    because the ``series`` tag holds the whole identity.
    """
    measurement, tags, field_name = split_series(series)
    out = {k: v for k, v in tags.items() if _is_copyable_tag(k, v)}
    out.update(tenant=tenant, measurement=measurement, field=field_name, series=series)
    return out


def window_fields(scored: AnomalyScore) -> dict[str, float | int | bool | str]:
    """Fields of a window point; a NaN/inf value is left out (InfluxDB has no NaN)."""
    agg = scored.aggregate
    fields: dict[str, float | int | bool | str] = {
        "count": int(agg.count),
        "window_end_ns": int(agg.window_end_ns),
        "is_anomaly": bool(scored.is_anomaly),
    }
    for name, value in (
        ("mean", agg.mean),
        ("min", agg.minimum),
        ("max", agg.maximum),
        ("std", agg.std),
        ("last", agg.last),
        ("anomaly_score", scored.score),
    ):
        number = finite(value)
        if number is not None:
            fields[name] = number
    if scored.components:
        components = {str(k): finite(v) for k, v in sorted(scored.components.items())}
        fields["components"] = json.dumps(components, separators=(",", ":"), allow_nan=False)
    return fields


@lru_cache(maxsize=1 << 16)
def window_head(tenant: str, series: str) -> str:
    """The measurement and tag part of a window point; cached, as series repeat every window."""
    return format_head(WINDOW_MEASUREMENT, window_tags(tenant, series))


def window_point(scored: AnomalyScore) -> str:
    """One line of line protocol for a scored window (``ValueError`` if unrepresentable).

    The same line as ``format_point(WINDOW_MEASUREMENT, window_tags(...), window_fields(...))``
    (a test checks this), built without the intermediate dicts: it runs once per window, and
    the generic path cost about a third of the dataflow's time.
    """
    agg = scored.aggregate
    fields = [
        f"count={int(agg.count)}i",
        f"window_end_ns={int(agg.window_end_ns)}i",
        "is_anomaly=true" if scored.is_anomaly else "is_anomaly=false",
    ]
    for prefix, value in (
        ("mean=", agg.mean),
        ("min=", agg.minimum),
        ("max=", agg.maximum),
        ("std=", agg.std),
        ("last=", agg.last),
        ("anomaly_score=", scored.score),
    ):
        if value - value == 0.0:
            fields.append(prefix + repr(float(value)))
    if scored.components:
        fields.append(components_field(scored.components))
    head = window_head(agg.tenant, agg.series)
    return f"{head} {','.join(fields)} {int(agg.window_start_ns)}"


def components_field(components: Mapping[str, float]) -> str:
    """``components="{...}"``: the JSON of ``window_fields`` escaped as a string field value."""
    parts = []
    for key in sorted(components):
        value = float(components[key])
        number = repr(value) if value - value == 0.0 else "null"
        parts.append(_component_key(str(key)) + number)
    return 'components="{' + ",".join(parts) + '}"'


@lru_cache(maxsize=1024)
def _component_key(key: str) -> str:
    quoted = json.dumps(key) + ":"
    return quoted.replace("\\", "\\\\").replace('"', '\\"')


def incident_text(update: IncidentUpdate) -> str:
    """The annotation text Grafana shows on hover."""
    text = (
        f"{update.type.value}: {update.title} | {update.series} | "
        f"score {update.score:.2f} (peak {update.peak_score:.2f}) | observed {update.observed:g}"
    )
    for key in ("description", "resolution"):
        given = update.metadata.get(key)
        if isinstance(given, str) and given:
            text += f" | {given}"
    return _one_line(text)


def incident_point(update: IncidentUpdate) -> str:
    """One line of line protocol for an incident update (a Grafana annotation)."""
    tags = {
        "tenant": update.tenant,
        "severity": update.severity.value,
        "category": update.category.value,
        "event": update.type.value,
    }
    if update.fingerprint:
        tags["fingerprint"] = update.fingerprint
    fields: dict[str, float | int | bool | str] = {
        "title": _one_line(update.title),
        "text": incident_text(update),
        "series": _one_line(update.series),
        "window_end_ns": int(update.window_end_ns),
    }
    for name, value in (
        ("score", update.score),
        ("peak_score", update.peak_score),
        ("observed", update.observed),
    ):
        number = finite(value)
        if number is not None:
            fields[name] = number
    return format_point(INCIDENT_MEASUREMENT, tags, fields, update.window_start_ns)


def build_lines(items: Iterable[Any], builder: Callable[[Any], str]) -> tuple[list[str], int]:
    """Lines for the items that line protocol can carry, and how many it cannot.

    Only a tag with a newline or a trailing backslash is unrepresentable (see ``escape_tag``);
    such an item is skipped rather than failing the whole batch.
    """
    lines: list[str] = []
    invalid = 0
    for item in items:
        try:
            lines.append(builder(item))
        except ValueError:
            invalid += 1
    return lines, invalid


# --------------------------------------------------------------------------- retry maths

Outcome = Literal["ok", "retry", "reject"]


def classify_status(status: int) -> Outcome:
    """2xx written; 429 and 5xx worth retrying; any other status will not get better."""
    if 200 <= status < 300:
        return "ok"
    if status == 429 or status >= 500:
        return "retry"
    return "reject"


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rand: float) -> float:
    """Exponential backoff with "equal jitter" for retry number ``attempt`` (0 = first retry).

    The delay lies in ``[d/2, d]`` with ``d = min(max_s, base_s * 2**attempt)``: half of it is
    guaranteed, so writers that failed together back off for real, and the random half spreads
    them apart. ``rand`` is a uniform number in [0, 1).
    """
    ceiling = min(max_s, base_s * 2.0 ** min(max(attempt, 0), 62))
    return ceiling / 2 + ceiling / 2 * min(max(rand, 0.0), 1.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def retry_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rand: float,
    retry_after_s: float | None = None,
    max_retry_after_s: float = 300.0,
) -> float:
    """The wait before retry ``attempt``: backoff, but never shorter than the server asked.

    ``Retry-After`` is honoured up to ``max_retry_after_s`` so that a wrong header cannot stall
    the writer for hours (the close deadline bounds it anyway).
    """
    delay = backoff_delay(attempt, base_s=base_s, max_s=max_s, rand=rand)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_retry_after_s))
    return delay


# --------------------------------------------------------------------------- bounded buffer


class PointBuffer:
    """FIFO of line-protocol lines holding at most ``max_points``; not thread-safe by itself.

    When full, the OLDEST lines are dropped to make room. Why the oldest: while InfluxDB is
    down, the newest windows are what a dashboard needs when it comes back, and dropping at the
    tail would freeze the dashboards at the moment of the outage. Dropping instead of blocking
    keeps a slow or dead InfluxDB from stalling the dataflow (and with it the SQL store and the
    incident builder), which matters far more than the dashboards' copy.
    """

    __slots__ = ("_lines", "max_points", "dropped")

    def __init__(self, max_points: int) -> None:
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        self.max_points = max_points
        self._lines: deque[str] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    def extend(self, lines: Iterable[str]) -> int:
        """Append lines; return how many (old or new) had to be dropped."""
        before = self.dropped
        for line in lines:
            if len(self._lines) >= self.max_points:
                self._lines.popleft()
                self.dropped += 1
            self._lines.append(line)
        return self.dropped - before

    def take(self, n: int) -> list[str]:
        """Remove and return up to ``n`` of the oldest lines."""
        n = min(n, len(self._lines))
        return [self._lines.popleft() for _ in range(n)]

    def clear(self) -> int:
        """Drop everything (counted); return how many lines that was."""
        n = len(self._lines)
        self._lines.clear()
        self.dropped += n
        return n


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of one writer, in points (``retried`` counts re-sent requests).

    ``dropped``: never sent (buffer overflow, added after close, still buffered at the close
    deadline). ``failed``: sent but not stored (rejected with a 4xx, retries exhausted, or the
    batch in flight when the close deadline passed). ``invalid``: items that line protocol cannot
    carry (counted by the sinks).
    """

    written: int = 0
    dropped: int = 0
    retried: int = 0
    failed: int = 0
    invalid: int = 0
    buffered: int = 0

    def __add__(self, other: WriterStats) -> WriterStats:
        return WriterStats(
            self.written + other.written,
            self.dropped + other.dropped,
            self.retried + other.retried,
            self.failed + other.failed,
            self.invalid + other.invalid,
            self.buffered + other.buffered,
        )


def influx_settings(settings: Settings) -> tuple[str, SecretStr, str, str]:
    """(url, token, org, bucket) from the settings, or ``ValueError`` if any is missing."""
    url, token = settings.influx_url, settings.influx_token
    org, bucket = settings.influx_org, settings.influx_bucket
    if not (url and token and org and bucket):
        raise ValueError("InfluxDB is not configured (INFLUX_URL/TOKEN/ORG/BUCKET)")
    return url, token, org, bucket


def _response_message(response: httpx.Response) -> str:
    """InfluxDB's error message (``{"code": ..., "message": ...}``) or the raw body, short."""
    try:
        body = response.json()
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    if not isinstance(message, str):
        message = response.text
    return " ".join(message.split())[:500]


class InfluxWriter:
    """Batched, retried writes of line protocol to one bucket, on one background thread.

    ``add`` never blocks on the network: it appends to a bounded buffer (see ``PointBuffer``)
    and wakes the sender. The sender posts a batch when ``batch_size`` lines are waiting, when
    the oldest waiting line is ``flush_interval_s`` old, or on ``flush``/``close``. A batch that
    fails with a connection error, a timeout, 429 or 5xx is retried up to ``max_retries`` times
    (``retry_delay``); any other 4xx is logged (once per distinct message) and counted as failed.
    ``close`` flushes what it can before its deadline and never waits longer.
    """

    def __init__(
        self,
        url: str,
        token: str | SecretStr,
        org: str,
        bucket: str,
        *,
        batch_size: int = 5_000,
        flush_interval_s: float = 1.0,
        max_buffer_points: int = 200_000,
        max_retries: int = 8,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 300.0,
        request_timeout_s: float = 10.0,
        close_timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        name: str = "influx-writer",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval_s <= 0 or request_timeout_s <= 0:
            raise ValueError("flush_interval_s and request_timeout_s must be positive")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.request_timeout_s = request_timeout_s
        self.close_timeout_s = close_timeout_s
        # Jitter only needs to spread writers apart, not to be unpredictable.
        self._rng = rng or random.Random()  # noqa: S311  # nosec B311
        self._client = httpx.Client(
            base_url=self.url,
            headers={
                "Authorization": f"Token {secret}",
                "Content-Type": "text/plain; charset=utf-8",
                "Accept": "application/json",
            },
            timeout=request_timeout_s,
            transport=transport,
        )
        self._params = {"org": org, "bucket": bucket, "precision": "ns"}
        self._buffer = PointBuffer(max_buffer_points)
        self._cond = threading.Condition()
        self._oldest_at: float | None = None  # monotonic time the buffer became non-empty
        self._inflight = 0
        self._flush_waiters = 0
        self._closing = False
        self._deadline = math.inf
        self._written = 0
        self._retried = 0
        self._failed = 0
        self._late_dropped = 0
        self._drop_logged_at = -math.inf
        self._logged: set[tuple[int, str]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> InfluxWriter:
        return cls(*influx_settings(settings), **options)

    def __repr__(self) -> str:  # never the token
        return f"InfluxWriter(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    # -- producer side (the dataflow's thread) -----------------------------------------------

    def add(self, lines: Iterable[str]) -> int:
        """Queue lines for writing; return how many were accepted. Never blocks on I/O."""
        lines = list(lines)
        if not lines:
            return 0
        with self._cond:
            if self._closing:
                self._late_dropped += len(lines)
                return 0
            dropped = self._buffer.extend(lines)
            now = time.monotonic()
            if self._oldest_at is None:
                # The sender sleeps without a timeout while the buffer is empty: wake it so
                # that it starts the flush-interval clock for these lines.
                self._oldest_at = now
                self._cond.notify_all()
            if dropped and now - self._drop_logged_at >= DROP_LOG_INTERVAL_S:
                self._drop_logged_at = now
                log.warning(
                    "InfluxDB writer buffer full (%d points): %d oldest points dropped so far",
                    self._buffer.max_points,
                    self._buffer.dropped,
                )
            if len(self._buffer) >= self.batch_size:
                self._cond.notify_all()
        return len(lines)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything queued so far; True when nothing is left buffered or in flight."""
        end = math.inf if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while (len(self._buffer) or self._inflight) and self._thread.is_alive():
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.5))
                return not (len(self._buffer) or self._inflight)
            finally:
                self._flush_waiters -= 1

    def close(self, timeout_s: float | None = None) -> WriterStats:
        """Flush, then stop the sender; returns within ``timeout_s`` (default ``close_timeout_s``).

        Whatever is not written by the deadline is given up and counted (``dropped`` if it was
        never sent, ``failed`` if it was in flight).
        """
        timeout = self.close_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(timeout, 0.0)
            deadline = self._deadline
            self._cond.notify_all()
        self._thread.join(max(deadline - time.monotonic(), 0.0) + 0.05)
        if self._thread.is_alive():  # stuck in a request that began before close()
            with self._cond:
                self._buffer.clear()
        return self.stats()

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                written=self._written,
                dropped=self._buffer.dropped + self._late_dropped,
                retried=self._retried,
                failed=self._failed,
                buffered=len(self._buffer) + self._inflight,
            )

    def __enter__(self) -> InfluxWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sender side (the writer's thread) -----------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._send(batch)
                except Exception:  # a bug or an odd URL must not silently stop the writer
                    log.exception("InfluxDB writer: unexpected error; batch given up")
                    self._count_failed(len(batch), None)
                finally:
                    with self._cond:
                        self._inflight = 0
                        self._cond.notify_all()
        finally:
            self._client.close()

    def _next_batch(self) -> list[str] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._closing and now >= self._deadline:
                    self._buffer.clear()
                    return None
                if len(self._buffer):
                    age = now - (self._oldest_at or now)
                    if (
                        len(self._buffer) >= self.batch_size
                        or age >= self.flush_interval_s
                        or self._closing
                        or self._flush_waiters
                    ):
                        batch = self._buffer.take(self.batch_size)
                        self._inflight = len(batch)
                        if not len(self._buffer):
                            self._oldest_at = None
                        return batch
                    self._cond.wait(self.flush_interval_s - age)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _request_timeout(self) -> float | None:
        """The timeout of the next request, or None if the close deadline has passed."""
        with self._cond:
            if not self._closing:
                return self.request_timeout_s
            remaining = self._deadline - time.monotonic()
        return min(self.request_timeout_s, remaining) if remaining > 0 else None

    def _post(self, body: bytes, timeout: float) -> tuple[Outcome, float | None, str]:
        """One attempt: (outcome, Retry-After seconds, message)."""
        try:
            response = self._client.post(
                "/api/v2/write", params=self._params, content=body, timeout=timeout
            )
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            return "retry", None, f"{type(exc).__name__}: {exc}"
        outcome = classify_status(response.status_code)
        if outcome == "ok":
            return outcome, None, ""
        message = f"HTTP {response.status_code}: {_response_message(response)}"
        if outcome == "reject":
            self._log_rejection(response.status_code, message)
        return outcome, parse_retry_after(response.headers.get("Retry-After")), message

    def _send(self, batch: list[str]) -> None:
        body = "\n".join(batch).encode("utf-8")
        n = len(batch)
        attempt = 0
        while True:
            timeout = self._request_timeout()
            if timeout is None:
                self._count_failed(n, "the close deadline passed")
                return
            outcome, retry_after, message = self._post(body, timeout)
            if outcome == "ok":
                with self._cond:
                    self._written += n
                return
            if outcome == "reject":
                self._count_failed(n, None)
                return
            if attempt >= self.max_retries:
                self._count_failed(n, f"{self.max_retries} retries exhausted ({message})")
                return
            delay = retry_delay(
                attempt,
                base_s=self.backoff_base_s,
                max_s=self.backoff_max_s,
                rand=self._rng.random(),
                retry_after_s=retry_after,
                max_retry_after_s=self.max_retry_after_s,
            )
            log.info("InfluxDB write failed (%s); retry %d in %.2fs", message, attempt + 1, delay)
            if not self._sleep(delay):
                self._count_failed(n, f"the close deadline passed ({message})")
                return
            with self._cond:
                self._retried += 1
            attempt += 1

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False (at once) if the close deadline comes first."""
        end = time.monotonic() + delay
        with self._cond:
            while True:
                if self._closing and end > self._deadline:
                    return False
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)

    def _count_failed(self, n: int, reason: str | None) -> None:
        with self._cond:
            self._failed += n
        if reason is not None:
            log.warning("InfluxDB write of %d points given up: %s", n, reason)

    def _log_rejection(self, status: int, message: str) -> None:
        """Log a rejected batch once per distinct (status, message); later ones at debug."""
        key = (status, message)
        if key in self._logged:
            log.debug("InfluxDB rejected a batch again: %s", message)
            return
        if len(self._logged) < 256:
            self._logged.add(key)
        log.error("InfluxDB rejected a batch (not retried): %s", message)


# --------------------------------------------------------------------------- Bytewax sinks


class _InfluxPartition(StatelessSinkPartition[Any]):
    def __init__(self, writer: InfluxWriter, builder: Callable[[Any], str]) -> None:
        self.writer = writer
        self.builder = builder
        self.invalid = 0

    def write_batch(self, items: list[Any]) -> None:
        lines, invalid = build_lines(flatten_items(items), self.builder)
        if invalid:
            self.invalid += invalid
            log.warning("skipped %d items that line protocol cannot carry", invalid)
        self.writer.add(lines)
        self.writer.flush()  # sent before Bytewax can snapshot past them: at-least-once

    def close(self) -> None:
        self.writer.close()

    def stats(self) -> WriterStats:
        s = self.writer.stats()
        return WriterStats(s.written, s.dropped, s.retried, s.failed, self.invalid, s.buffered)


class _InfluxSink(DynamicSink[Any]):
    builder: Callable[[Any], str]

    def __init__(self, settings: Settings, **writer_options: Any) -> None:
        influx_settings(settings)  # fail at flow build time, not in a worker
        self.settings = settings
        self.writer_options = writer_options
        self.partitions: list[_InfluxPartition] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InfluxPartition:
        options = {"name": f"influx-{step_id}-{worker_index}", **self.writer_options}
        partition = _InfluxPartition(
            InfluxWriter.from_settings(self.settings, **options), type(self).builder
        )
        self.partitions.append(partition)
        return partition

    def stats(self) -> WriterStats:
        """Counters summed over the partitions this process built."""
        total = WriterStats()
        for partition in self.partitions:
            total = total + partition.stats()
        return total


class InfluxWindowSink(_InfluxSink):
    """Writes ``(shard, list[AnomalyScore])`` items to ``window_aggregates``."""

    builder = staticmethod(window_point)


class InfluxIncidentSink(_InfluxSink):
    """Writes ``(shard, list[IncidentUpdate])`` items to ``incidents`` (Grafana annotations)."""

    builder = staticmethod(incident_point)


# --------------------------------------------------------------------------- reader

# Query texts are constants; every value comes in through ``params`` (Flux AST literals).
_RANGE = "range(start: time(v: p_start), stop: time(v: p_stop))"
_TIME_NS = "map(fn: (r) => ({r with time_ns: int(v: r._time)}))"

_HISTORY_FLUX = f"""
from(bucket: p_bucket)
  |> {_RANGE}
  |> filter(fn: (r) => r._measurement == "{WINDOW_MEASUREMENT}")
  |> filter(fn: (r) => r.tenant == p_tenant and r.series == p_series)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: p_limit)
  |> {_TIME_NS}
"""

_LATEST_HEAD = f"""
from(bucket: p_bucket)
  |> {_RANGE}
  |> filter(fn: (r) => r._measurement == "{WINDOW_MEASUREMENT}")
  |> filter(fn: (r) => r.tenant == p_tenant)
"""
# ``last()`` per field, then the newest row per series: a field missing from the newest window
# (a NaN that was left out) must not be filled in from an older window. ``sort |> limit(n: 1)``
# rather than ``last(column: "_time")``: in InfluxDB 2.7 the latter turned the null fields of
# the row it picked into zeros.
_LATEST_TAIL = (
    """
  |> last()
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group(columns: ["series"])
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: 1)
  |> group()
  |> sort(columns: ["series"])
  |> limit(n: p_limit)
  |> """
    + _TIME_NS
)

_LATEST_FLUX = _LATEST_HEAD + _LATEST_TAIL
_LATEST_BY_MEASUREMENT_FLUX = (
    _LATEST_HEAD + "  |> filter(fn: (r) => r.measurement == p_measurement)\n" + _LATEST_TAIL
)

_ANNOTATIONS_FLUX = f"""
from(bucket: p_bucket)
  |> {_RANGE}
  |> filter(fn: (r) => r._measurement == "{INCIDENT_MEASUREMENT}")
  |> filter(fn: (r) => r.tenant == p_tenant)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["_time", "fingerprint"])
  |> limit(n: p_limit)
  |> {_TIME_NS}
"""


@dataclass(frozen=True, slots=True)
class IncidentAnnotation:
    """One point of the ``incidents`` measurement, as read back."""

    tenant: str
    fingerprint: str | None
    severity: str
    category: str
    event: str
    time_ns: int
    title: str
    text: str
    series: str | None
    score: float | None
    peak_score: float | None
    observed: float | None
    window_end_ns: int | None


def time_bounds(start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
    """``[start, stop)`` in InfluxDB's valid range; open ends become its limits."""
    start = MIN_TIME_NS if start_ns is None else max(MIN_TIME_NS, min(MAX_TIME_NS, start_ns))
    stop = MAX_TIME_NS if end_ns is None else max(MIN_TIME_NS, min(MAX_TIME_NS, end_ns))
    return start, stop


def _float(values: Mapping[str, Any], name: str) -> float | None:
    value = values.get(name)
    return None if value is None else float(value)


def _components(text: Any) -> dict[str, float]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def window_record(values: Mapping[str, Any]) -> WindowRecord:
    """A pivoted ``window_aggregates`` row (tags, fields, ``time_ns``) to a ``WindowRecord``."""
    start = int(values["time_ns"])
    end = values.get("window_end_ns")
    return WindowRecord(
        tenant=values["tenant"],
        series=values["series"],
        measurement=values["measurement"],
        field=values["field"],
        window_start_ns=start,
        window_end_ns=start if end is None else int(end),
        count=int(values.get("count") or 0),
        mean=_float(values, "mean"),
        minimum=_float(values, "min"),
        maximum=_float(values, "max"),
        std=_float(values, "std"),
        last=_float(values, "last"),
        anomaly_score=_float(values, "anomaly_score"),
        is_anomaly=bool(values.get("is_anomaly")),
        components=_components(values.get("components")),
    )


def incident_annotation(values: Mapping[str, Any]) -> IncidentAnnotation:
    """A pivoted ``incidents`` row to an ``IncidentAnnotation``."""
    end = values.get("window_end_ns")
    return IncidentAnnotation(
        tenant=values["tenant"],
        fingerprint=values.get("fingerprint"),
        severity=values["severity"],
        category=values["category"],
        event=values["event"],
        time_ns=int(values["time_ns"]),
        title=values.get("title") or "",
        text=values.get("text") or "",
        series=values.get("series"),
        score=_float(values, "score"),
        peak_score=_float(values, "peak_score"),
        observed=_float(values, "observed"),
        window_end_ns=None if end is None else int(end),
    )


class InfluxReader:
    """Flux queries over the schema above; returns the same records as ``connectors.store``."""

    def __init__(
        self, url: str, token: str | SecretStr, org: str, bucket: str, *, timeout_s: float = 30.0
    ) -> None:
        from influxdb_client import InfluxDBClient

        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self.url = url
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(url=url, token=secret, org=org, timeout=int(timeout_s * 1000))
        self._query = self._client.query_api()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> InfluxReader:
        return cls(*influx_settings(settings), **options)

    def __repr__(self) -> str:  # never the token
        return f"InfluxReader(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> InfluxReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, flux: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        tables = self._query.query(flux, org=self.org, params={"p_bucket": self.bucket, **params})
        return [dict(record.values) for table in tables for record in table.records]

    def window_history(
        self,
        tenant: str,
        series: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int = 1000,
    ) -> list[WindowRecord]:
        """The newest ``limit`` windows of a series starting in [start_ns, end_ns), oldest first."""
        start, stop = time_bounds(start_ns, end_ns)
        if limit <= 0 or start >= stop:
            return []
        params = {
            "p_start": start,
            "p_stop": stop,
            "p_tenant": tenant,
            "p_series": series,
            "p_limit": int(limit),
        }
        records = [window_record(row) for row in self._rows(_HISTORY_FLUX, params)]
        records.sort(key=lambda r: r.window_start_ns)
        return records

    def latest_windows(
        self,
        tenant: str,
        *,
        measurement: str | None = None,
        limit: int = 100,
        start_ns: int | None = None,
    ) -> list[WindowRecord]:
        """The newest window of each series of the tenant, ordered by series.

        ``start_ns`` (an extension over the store's signature) bounds how far back to look;
        without it the whole bucket is scanned, as the store does.
        """
        start, stop = time_bounds(start_ns, None)
        if limit <= 0:
            return []
        params: dict[str, Any] = {
            "p_start": start,
            "p_stop": stop,
            "p_tenant": tenant,
            "p_limit": int(limit),
        }
        flux = _LATEST_FLUX
        if measurement is not None:
            flux = _LATEST_BY_MEASUREMENT_FLUX
            params["p_measurement"] = measurement
        return [window_record(row) for row in self._rows(flux, params)]

    def incident_annotations(
        self,
        tenant: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int = 1000,
    ) -> list[IncidentAnnotation]:
        """Incident points of the tenant with time in [start_ns, end_ns), oldest first."""
        start, stop = time_bounds(start_ns, end_ns)
        if limit <= 0 or start >= stop:
            return []
        params = {"p_start": start, "p_stop": stop, "p_tenant": tenant, "p_limit": int(limit)}
        return [incident_annotation(row) for row in self._rows(_ANNOTATIONS_FLUX, params)]
