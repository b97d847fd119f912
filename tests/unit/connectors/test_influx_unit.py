"""The pure pieces of ``connectors.influx`` and the writer over a mock transport (no services).

``influx_tag_unescape`` below mirrors how InfluxDB 2.7's line-protocol parser reads a tag back
(checked against the real server in ``tests/integration/test_influx_connectors.py``): a
separator preceded by a backslash is escaped, and only ``\\,``, ``\\=`` and ``\\ `` are unescaped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.influx import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    WINDOW_MEASUREMENT,
    InfluxIncidentSink,
    InfluxWindowSink,
    InfluxWriter,
    PointBuffer,
    WriterStats,
    backoff_delay,
    build_lines,
    classify_status,
    escape_tag,
    format_point,
    incident_annotation,
    incident_point,
    incident_text,
    parse_retry_after,
    retry_delay,
    time_bounds,
    window_fields,
    window_point,
    window_record,
    window_tags,
)
from incidents.config import Settings
from incidents.schemas import (
    AnomalyScore,
    Category,
    IncidentEventType,
    IncidentUpdate,
    Severity,
    WindowAggregate,
    series_key,
    split_series,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S


# --------------------------------------------------------------------------- a model of InfluxDB


def _split_escaped(text: str, seps: str) -> tuple[str, str, str]:
    """Split at the first separator not preceded by a backslash (InfluxDB's scanner rule)."""
    for i, c in enumerate(text):
        if c in seps and (i == 0 or text[i - 1] != "\\"):
            return text[:i], c, text[i + 1 :]
    return text, "", ""


def influx_tag_unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def influx_parse_tags(line: str) -> tuple[str, dict[str, str], str]:
    """(measurement, tags, rest of line) the way InfluxDB reads the series part of a line."""
    measurement, sep, rest = _split_escaped(line, ", ")
    tags: dict[str, str] = {}
    while sep == ",":
        key, eq, rest = _split_escaped(rest, "=")
        assert eq == "=", f"no '=' after tag key in {line!r}"
        value, sep, rest = _split_escaped(rest, ", ")
        tags[influx_tag_unescape(key)] = influx_tag_unescape(value)
    return influx_tag_unescape(measurement), tags, rest


def field_string_unescape(text: str) -> str:
    assert text.startswith('"') and text.endswith('"')
    return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")


# --------------------------------------------------------------------------- builders


def scored(
    series: str = "cpu,host=a usage_user",
    *,
    tenant: str = "default",
    start: int = T0,
    std: float = 0.5,
    score: float = 0.25,
    components: dict[str, float] | None = None,
) -> AnomalyScore:
    agg = WindowAggregate(series, tenant, start, start + 60 * S, 12, 1.5, -2.0, 7.25, std, 3.0)
    return AnomalyScore(agg, score, score >= 0.9, components or {})


def update(**overrides) -> IncidentUpdate:
    values = dict(
        type=IncidentEventType.OPENED,
        fingerprint="f" * 16,
        tenant="acme",
        series="cpu,host=a usage_user",
        title="CPU anomaly on a",
        category=Category.COMPUTE,
        severity=Severity.HIGH,
        score=0.93,
        peak_score=0.97,
        window_start_ns=T0,
        window_end_ns=T0 + 60 * S,
        observed=98.5,
    )
    values.update(overrides)
    return IncidentUpdate(**values)


def test_escape_tag_escapes_separators_and_keeps_backslashes():
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag("C:\\temp") == "C:\\temp"
    assert escape_tag("x\\,y") == "x\\\\,y"
    assert escape_tag('q"é\t') == 'q"é\t'


@pytest.mark.parametrize("text", ["", "ends\\", "new\nline", "cr\rhere"])
def test_escape_tag_refuses_what_a_tag_cannot_carry(text):
    with pytest.raises(ValueError):
        escape_tag(text)


tag_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
    min_size=1,
    max_size=20,
).filter(lambda s: not s.endswith("\\"))


@given(st.dictionaries(tag_text, tag_text, min_size=1, max_size=5))
def test_tags_round_trip_through_influx_parsing_rules(tags):
    line = format_point("m", tags, {"f": 1.0}, 5)
    measurement, parsed, rest = influx_parse_tags(line)
    assert measurement == "m"
    assert parsed == tags
    assert rest == "f=1.0 5"


def test_window_point_with_spaces_commas_and_equals_in_the_series():
    series = series_key(
        "cpu load", (("host", "web 1,eu=x"), ("path", "C:\\x y"), ("tenant", "acme")), "a=b c"
    )
    line = window_point(scored(series, tenant="acme"))
    measurement, tags, rest = influx_parse_tags(line)
    assert measurement == "window_aggregates"
    assert tags == {
        "tenant": "acme",
        "measurement": "cpu load",
        "field": "a=b c",
        "series": series,
        "host": "web 1,eu=x",
        "path": "C:\\x y",
    }
    fields_part, _, timestamp = rest.rpartition(" ")
    assert int(timestamp) == T0
    assert fields_part.startswith("count=12i,window_end_ns=")
    assert "mean=1.5,min=-2.0,max=7.25,std=0.5,last=3.0,anomaly_score=0.25" in fields_part
    assert "is_anomaly=false" in fields_part


def test_window_tags_structural_tags_win_and_reserved_keys_are_not_copied():
    series = series_key(
        "cpu",
        (
            ("_field", "x"),
            ("field", "mine"),
            ("host", "a"),
            ("odd", "ends\\"),
            ("series", "s"),
            ("tenant", "acme"),
            ("time", "t"),
        ),
        "usage",
    )
    tags = window_tags("acme", series)
    assert tags == {
        "host": "a",
        "tenant": "acme",
        "measurement": "cpu",
        "field": "usage",
        "series": series,
    }
    assert split_series(tags["series"])[1]["odd"] == "ends\\"  # still in the identity


def test_window_fields_leave_out_non_finite_values_and_keep_components_as_json():
    fields = window_fields(
        scored(std=math.nan, score=math.inf, components={"iforest": 0.5, "arima": math.nan})
    )
    assert "std" not in fields and "anomaly_score" not in fields
    assert fields["count"] == 12 and isinstance(fields["count"], int)
    assert json.loads(fields["components"]) == {"arima": None, "iforest": 0.5}
    assert "components" not in window_fields(scored())


def test_a_series_whose_identity_cannot_be_a_tag_is_counted_invalid():
    good = scored()
    bad = scored("cpu,host=a\nb usage")  # a newline only comes through Telegraf JSON tags
    lines, invalid = build_lines([good, bad, good], window_point)
    assert invalid == 1
    assert lines == [window_point(good)] * 2


def test_incident_point_tags_fields_and_escaping():
    u = update(title='Disk "sda"\nfull \\ now', series="disk,path=/a\\ b used")
    line = incident_point(u)
    measurement, tags, rest = influx_parse_tags(line)
    assert measurement == "incidents"
    assert tags == {
        "tenant": "acme",
        "fingerprint": "f" * 16,
        "severity": "high",
        "category": "compute",
        "event": "opened",
    }
    assert rest.endswith(f" {T0}")
    assert '"Disk \\"sda\\" full \\\\ now"' in rest
    assert "\n" not in line
    assert "score=0.93,peak_score=0.97,observed=98.5" in rest


def test_incident_text_mentions_the_event_series_and_scores():
    text = incident_text(
        update(type=IncidentEventType.RESOLVED, metadata={"resolution": "back to normal"})
    )
    assert text.startswith("resolved: CPU anomaly on a | cpu,host=a usage_user")
    assert "score 0.93 (peak 0.97)" in text and text.endswith("| back to normal")


def test_field_strings_round_trip():
    line = format_point("m", {"t": "x"}, {"s": 'a\\b "q"'}, 1)
    value = line.split(" ", 1)[1].rsplit(" ", 1)[0].removeprefix("s=")
    assert field_string_unescape(value) == 'a\\b "q"'


# --------------------------------------------------------------------------- retry maths


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(204, "ok"), (200, "ok"), (429, "retry"), (500, "retry"), (503, "retry"), (400, "reject")]
    + [(401, "reject"), (404, "reject"), (413, "reject"), (422, "reject")],
)
def test_classify_status(status, outcome):
    assert classify_status(status) == outcome


def test_backoff_doubles_with_equal_jitter_and_is_capped():
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (500, 30.0)]:
        low = backoff_delay(attempt, base_s=0.5, max_s=30.0, rand=0.0)
        high = backoff_delay(attempt, base_s=0.5, max_s=30.0, rand=0.999999)
        assert low == pytest.approx(ceiling / 2)
        assert high == pytest.approx(ceiling, rel=1e-5)
    rng = random.Random(1)
    delays = [backoff_delay(4, base_s=0.5, max_s=30.0, rand=rng.random()) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 2.0  # the jitter really spreads


def test_retry_after_is_honoured_but_bounded():
    kwargs = dict(base_s=0.5, max_s=30.0, rand=0.0)
    assert retry_delay(0, **kwargs) == 0.25
    assert retry_delay(0, retry_after_s=7.0, **kwargs) == 7.0
    assert retry_delay(6, retry_after_s=1.0, **kwargs) == 15.0  # backoff longer: backoff wins
    assert retry_delay(0, retry_after_s=10_000.0, max_retry_after_s=300.0, **kwargs) == 300.0


def test_parse_retry_after():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("  ") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(date, now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0


# --------------------------------------------------------------------------- buffer


def test_buffer_drops_and_counts_the_oldest_when_full():
    buf = PointBuffer(3)
    assert buf.extend(["a", "b"]) == 0
    assert buf.extend(["c", "d", "e"]) == 2
    assert len(buf) == 3 and buf.dropped == 2
    assert buf.take(2) == ["c", "d"]
    assert buf.extend([str(i) for i in range(10)]) == 8  # bigger than the buffer: newest stay
    assert buf.take(10) == ["7", "8", "9"]
    assert buf.dropped == 10
    buf.extend(["x"])
    assert buf.clear() == 1 and buf.dropped == 11 and len(buf) == 0
    with pytest.raises(ValueError):
        PointBuffer(0)


# --------------------------------------------------------------------------- reader helpers


def test_time_bounds_clamp_to_influx_range():
    assert time_bounds(None, None) == (MIN_TIME_NS, MAX_TIME_NS)
    assert time_bounds(5, 10) == (5, 10)
    assert time_bounds(-(2**70), 2**70) == (MIN_TIME_NS, MAX_TIME_NS)


def test_window_record_from_a_pivoted_row():
    row = {
        "tenant": "acme",
        "series": "cpu,host=a usage",
        "measurement": "cpu",
        "field": "usage",
        "host": "a",
        "time_ns": T0,
        "window_end_ns": T0 + 60 * S,
        "count": 4,
        "mean": 1.0,
        "min": 0.0,
        "max": 2,
        "last": 1.5,
        "anomaly_score": 0.5,
        "is_anomaly": True,
        "components": '{"iforest": 0.5, "arima": null}',
    }
    record = window_record(row)
    assert record.window_start_ns == T0 and record.window_end_ns == T0 + 60 * S
    assert record.maximum == 2.0 and isinstance(record.maximum, float)
    assert record.std is None
    assert record.is_anomaly is True
    assert record.components == {"iforest": 0.5}
    assert window_record({**row, "components": None}).components == {}


def test_incident_annotation_from_a_pivoted_row():
    row = {
        "tenant": "acme",
        "fingerprint": "abc",
        "severity": "high",
        "category": "compute",
        "event": "opened",
        "time_ns": T0,
        "title": "t",
        "text": "x",
        "series": "s",
        "score": 0.9,
        "peak_score": 0.95,
        "window_end_ns": T0 + 1,
    }
    a = incident_annotation(row)
    assert (a.time_ns, a.observed, a.window_end_ns) == (T0, None, T0 + 1)


# --------------------------------------------------------------------------- writer (mock HTTP)


class FakeInflux:
    """A ``httpx.MockTransport`` handler answering from a script, recording every request."""

    def __init__(self, script: list[httpx.Response] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[float, httpx.Request, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((time.monotonic(), request, request.read()))
            if self.script:
                return self.script.pop(0)
        return httpx.Response(204)

    @property
    def lines(self) -> list[str]:
        return [ln for _, _, body in self.requests for ln in body.decode().split("\n")]


def make_writer(fake: FakeInflux, **options) -> InfluxWriter:
    defaults = dict(
        flush_interval_s=0.05,
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        close_timeout_s=5.0,
        transport=httpx.MockTransport(fake),
        rng=random.Random(0),
    )
    return InfluxWriter(
        "http://influx.test", "s3cr3t-token", "org", "bucket", **{**defaults, **options}
    )


def test_writer_posts_line_protocol_with_token_org_bucket_and_precision():
    fake = FakeInflux()
    writer = make_writer(fake)
    writer.add(["m,t=a f=1 1", "m,t=a f=2 2"])
    assert writer.flush(5)
    stats = writer.close()
    assert stats == WriterStats(written=2)
    _, request, body = fake.requests[0]
    assert request.url.path == "/api/v2/write"
    assert dict(request.url.params) == {"org": "org", "bucket": "bucket", "precision": "ns"}
    assert request.headers["authorization"] == "Token s3cr3t-token"
    assert body == b"m,t=a f=1 1\nm,t=a f=2 2"
    assert "s3cr3t" not in repr(writer)


def test_writer_batches_by_size_and_by_interval():
    fake = FakeInflux()
    writer = make_writer(fake, batch_size=100, flush_interval_s=0.3)
    writer.add([f"m f={i} {i}" for i in range(250)])
    deadline = time.monotonic() + 5
    while len(fake.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(body.split(b"\n")) for _, _, body in fake.requests[:2]] == [100, 100]
    # the 50 left over go out once the oldest of them is flush_interval_s old
    while len(fake.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake.requests[2][2].split(b"\n")) == 50
    assert writer.close().written == 250
    assert fake.lines == [f"m f={i} {i}" for i in range(250)]


def test_writer_retries_5xx_and_429_honouring_retry_after_without_loss():
    fake = FakeInflux(
        [
            httpx.Response(503, json={"message": "busy"}),
            httpx.Response(429, headers={"Retry-After": "0.4"}),
        ]
    )
    writer = make_writer(fake)
    writer.add(["m f=1 1"])
    assert writer.flush(5)
    stats = writer.close()
    assert (stats.written, stats.retried, stats.failed, stats.dropped) == (1, 2, 0, 0)
    times = [t for t, _, _ in fake.requests]
    assert times[1] - times[0] >= 0.025  # backoff: at least half of base_s
    assert times[2] - times[1] >= 0.4  # Retry-After honoured


def test_writer_retries_connection_errors():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(204)

    writer = InfluxWriter(
        "http://influx.test",
        "t",
        "o",
        "b",
        backoff_base_s=0.01,
        flush_interval_s=0.01,
        transport=httpx.MockTransport(handler),
    )
    writer.add(["m f=1 1"])
    assert writer.flush(5)
    assert writer.close() == WriterStats(written=1, retried=2)


def test_writer_does_not_retry_4xx_and_logs_each_message_once(caplog):
    fake = FakeInflux(
        [
            httpx.Response(400, json={"code": "invalid", "message": "unable to parse 'x'"}),
            httpx.Response(400, json={"code": "invalid", "message": "unable to parse 'x'"}),
        ]
    )
    writer = make_writer(fake)
    with caplog.at_level(logging.DEBUG, logger="connectors.influx"):
        writer.add(["bad 1"])
        assert writer.flush(5)
        writer.add(["bad 2"])
        assert writer.flush(5)
        writer.add(["good f=1 1"])
        assert writer.flush(5)
    stats = writer.close()
    assert (stats.written, stats.failed, stats.retried) == (1, 2, 0)
    assert len(fake.requests) == 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "HTTP 400: unable to parse 'x'" in errors[0].getMessage()


def test_writer_gives_up_after_max_retries():
    fake = FakeInflux([httpx.Response(500)] * 10)
    writer = make_writer(fake, max_retries=2)
    writer.add(["m f=1 1"])
    assert writer.flush(5)
    assert writer.close() == WriterStats(failed=1, retried=2)
    assert len(fake.requests) == 3


def test_full_buffer_drops_oldest_instead_of_blocking_add():
    gate = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        gate.wait(5)
        return httpx.Response(204)

    writer = InfluxWriter(
        "http://influx.test",
        "t",
        "o",
        "b",
        batch_size=10,
        max_buffer_points=50,
        flush_interval_s=0.01,
        transport=httpx.MockTransport(slow),
    )
    writer.add([f"m f={i} {i}" for i in range(10)])  # becomes the stuck in-flight batch
    time.sleep(0.1)
    started = time.monotonic()
    for i in range(10, 1010, 10):
        writer.add([f"m f={j} {j}" for j in range(i, i + 10)])
    assert time.monotonic() - started < 1.0
    stats = writer.stats()
    assert stats.dropped == 1000 - 50 and stats.buffered == 60
    gate.set()
    assert writer.flush(5)
    assert writer.close().written == 60


def test_close_returns_by_its_deadline_when_influx_never_answers():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    writer = InfluxWriter(
        "http://influx.test",
        "t",
        "o",
        "b",
        backoff_base_s=0.2,
        max_retries=1000,
        flush_interval_s=0.01,
        batch_size=10,
        transport=httpx.MockTransport(refuse),
    )
    writer.add([f"m f={i} {i}" for i in range(35)])
    started = time.monotonic()
    stats = writer.close(timeout_s=0.5)
    assert time.monotonic() - started < 0.8
    assert stats.written == 0
    assert stats.failed + stats.dropped == 35
    assert writer.add(["late f=1 1"]) == 0
    assert writer.stats().dropped == stats.dropped + 1


def test_sinks_need_influx_settings():
    with pytest.raises(ValueError):
        InfluxWindowSink(Settings(influx_url=None))
    with pytest.raises(ValueError):
        InfluxIncidentSink(Settings(influx_url="http://x", influx_token=None))


def test_an_unexpected_error_fails_the_batch_but_not_the_writer():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return httpx.Response(204)

    writer = InfluxWriter(
        "http://influx.test",
        "t",
        "o",
        "b",
        flush_interval_s=0.01,
        transport=httpx.MockTransport(handler),
    )
    writer.add(["m f=1 1"])
    assert writer.flush(5)
    writer.add(["m f=2 2"])
    assert writer.flush(5)
    assert writer.close() == WriterStats(written=1, failed=1)


def test_a_small_batch_is_sent_after_the_flush_interval_without_close() -> None:
    """Regression: lines below batch_size waited for close() because nothing woke the sender."""
    import time as _time

    import httpx as _httpx

    from connectors.influx import InfluxWriter as _Writer

    received: list[bytes] = []

    def handler(request: _httpx.Request) -> _httpx.Response:
        received.append(request.content)
        return _httpx.Response(204)

    writer = _Writer(
        "http://influx.invalid",
        "token",
        "org",
        "bucket",
        batch_size=1000,
        flush_interval_s=0.2,
        transport=_httpx.MockTransport(handler),
    )
    try:
        writer.add(["m v=1 1"])
        deadline = _time.monotonic() + 3
        while not received and _time.monotonic() < deadline:
            _time.sleep(0.05)
        assert received == [b"m v=1 1"]
    finally:
        writer.close(1.0)


@given(
    series=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
        min_size=1,
        max_size=30,
    ).filter(lambda s: not s.endswith("\\")),
    std=st.floats(allow_nan=True, allow_infinity=True),
    score=st.floats(min_value=0.0, max_value=1.0),
    components=st.dictionaries(
        st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True), max_size=3
    ),
)
def test_fast_window_point_equals_the_generic_line(series, std, score, components):
    item = scored(series, tenant="t,1", std=std, score=score, components=components)
    try:
        generic = format_point(
            WINDOW_MEASUREMENT,
            window_tags(item.aggregate.tenant, series),
            window_fields(item),
            item.aggregate.window_start_ns,
        )
    except ValueError:
        with pytest.raises(ValueError):
            window_point(item)
        return
    assert window_point(item) == generic
