"""``connectors.influx`` against the real InfluxDB 2.x of the services harness.

Settings come from ``INFLUX_URL``/``INFLUX_TOKEN``/``INFLUX_ORG``/``INFLUX_BUCKET`` (``eval
"$(scripts/services.sh env)"``). When they are unset or InfluxDB does not answer, the tests skip,
or fail when ``INCIDENTS_REQUIRE_SERVICES=1`` (the rule of ``tests/integration/conftest.py``'s
``services_env``, repeated here so this file works on its own).

Every test writes under its own random tenant, so runs never see each other's points.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bytewax.operators as op
import httpx
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.influx import (
    InfluxIncidentSink,
    InfluxReader,
    InfluxWindowSink,
    InfluxWriter,
    window_point,
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
)

pytestmark = pytest.mark.integration

NAMES = ("INFLUX_URL", "INFLUX_TOKEN", "INFLUX_ORG", "INFLUX_BUCKET")
HINT = 'start it with: scripts/services.sh up influxdb; eval "$(scripts/services.sh env)"'
S = 1_000_000_000
WINDOW = 60 * S
ANSWER_WITHIN_S = 10.0
"""How long an InfluxDB that is being restarted (by another test run) may take to answer."""


def _unavailable(reason: str) -> None:
    if os.environ.get("INCIDENTS_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (INCIDENTS_REQUIRE_SERVICES=1; {HINT})", pytrace=False)
    pytest.skip(f"{reason}; {HINT}")


@pytest.fixture(scope="module")
def settings() -> Settings:
    missing = [name for name in NAMES if not os.environ.get(name)]
    if missing:
        _unavailable(f"InfluxDB settings unset: {', '.join(missing)}")
    url = os.environ["INFLUX_URL"].rstrip("/")
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=3).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            _unavailable(f"InfluxDB at {url} does not answer /health")
        time.sleep(1.0)
    return Settings(
        influx_url=url,
        influx_token=os.environ["INFLUX_TOKEN"],
        influx_org=os.environ["INFLUX_ORG"],
        influx_bucket=os.environ["INFLUX_BUCKET"],
    )


@pytest.fixture
def reader(settings):
    with InfluxReader.from_settings(settings) as r:
        yield r


@pytest.fixture
def tenant(settings):
    """A tenant of this test only; its points are deleted afterwards."""
    name = f"it-{uuid.uuid4().hex[:12]}"
    yield name
    token = settings.influx_token.get_secret_value()
    with contextlib.suppress(httpx.HTTPError):  # cleanup only
        httpx.post(
            f"{settings.influx_url}/api/v2/delete",
            params={"org": settings.influx_org, "bucket": settings.influx_bucket},
            headers={"Authorization": f"Token {token}"},
            json={
                "start": "1970-01-01T00:00:00Z",
                "stop": "2200-01-01T00:00:00Z",
                "predicate": f'tenant="{name}"',
            },
            timeout=10,
        )


def recent_start(hours_ago: int = 3) -> int:
    now = time.time_ns()
    return (now - hours_ago * 3600 * S) // WINDOW * WINDOW


def scored_window(series, tenant, start, i, *, std=None, score=None, components=None):
    agg = WindowAggregate(
        series=series,
        tenant=tenant,
        window_start_ns=start + i * WINDOW,
        window_end_ns=start + (i + 1) * WINDOW,
        count=10 + i,
        mean=20.0 + i / 8,
        minimum=-1.5 - i,
        maximum=40.25 + i,
        std=0.1 * i if std is None else std,
        last=21.0 + i,
    )
    score = (i % 10) / 10 if score is None else score
    return AnomalyScore(agg, score, score >= 0.9, components or {"iforest": score / 2})


def run_flow(name: str, batches: list, sink) -> None:
    flow = Dataflow(name)
    stream = op.input("in", flow, TestingSource(batches))
    op.output("out", stream, sink)
    run_main(flow)


def assert_same(record, s: AnomalyScore) -> None:
    a = s.aggregate
    assert record.tenant == a.tenant and record.series == a.series
    assert (record.measurement, record.field) == (a.measurement, a.field)
    assert (record.window_start_ns, record.window_end_ns) == (a.window_start_ns, a.window_end_ns)
    assert record.count == a.count
    for got, want in [
        (record.mean, a.mean),
        (record.minimum, a.minimum),
        (record.maximum, a.maximum),
        (record.last, a.last),
        (record.anomaly_score, s.score),
    ]:
        assert got == want  # floats travel as repr(): exact
    assert record.std == (a.std if math.isfinite(a.std) else None)
    assert record.is_anomaly == s.is_anomaly
    assert record.components == s.components


# --------------------------------------------------------------------------- windows


def test_windows_through_the_bytewax_sink_read_back_exactly(settings, reader, tenant):
    start = recent_start()
    odd = series_key(
        "disk io",
        (("dev", "sda 1,x=y"), ("path", "C:\\data\\logs"), ("tenant", tenant)),
        "read bytes=total",
    )
    plain = series_key("cpu", (("host", "web-1"), ("tenant", tenant)), "usage_user")
    other = series_key("cpu", (("host", "web-2"), ("tenant", tenant)), "usage_user")
    windows = {
        odd: [scored_window(odd, tenant, start, i) for i in range(30)],
        plain: [scored_window(plain, tenant, start, i) for i in range(30)],
        other: [scored_window(other, tenant, start, i) for i in range(5)],
    }
    windows[plain][-1] = scored_window(plain, tenant, start, 29, std=math.nan)
    batches = []
    for i in range(30):  # (shard, list[AnomalyScore]) items, several series per batch
        batch = [w[i] for w in windows.values() if i < len(w)]
        batches.append((f"shard-{i % 3}", batch))
    sink = InfluxWindowSink(settings, flush_interval_s=0.1, batch_size=16)
    run_flow("influx_windows_it", batches, sink)
    stats = sink.stats()
    assert (stats.written, stats.failed, stats.dropped, stats.invalid) == (65, 0, 0, 0)

    history = reader.window_history(tenant, odd)
    assert len(history) == 30
    for record, s in zip(history, windows[odd], strict=True):
        assert_same(record, s)
    assert_same(reader.window_history(tenant, plain)[-1], windows[plain][-1])  # std NaN -> None

    ranged = reader.window_history(tenant, odd, start + 5 * WINDOW, start + 9 * WINDOW)
    assert [r.window_start_ns for r in ranged] == [start + i * WINDOW for i in range(5, 9)]
    newest = reader.window_history(tenant, odd, limit=3)
    assert [r.window_start_ns for r in newest] == [start + i * WINDOW for i in (27, 28, 29)]
    assert reader.window_history(tenant, odd, start + WINDOW, start + WINDOW) == []
    assert reader.window_history(f"{tenant}-other", odd) == []

    latest = reader.latest_windows(tenant)
    assert [r.series for r in latest] == sorted(windows)
    by_series = {r.series: r for r in latest}
    for series, ws in windows.items():
        assert_same(by_series[series], ws[-1])
    assert by_series[plain].std is None  # not filled in from an older window
    cpu_only = reader.latest_windows(tenant, measurement="cpu", limit=1)
    assert [r.series for r in cpu_only] == [plain]
    assert reader.latest_windows(tenant, measurement="disk io")[0].series == odd
    assert reader.latest_windows(tenant, measurement='cpu" or true') == []


def test_replayed_windows_overwrite_themselves(settings, reader, tenant):
    start = recent_start()
    series = series_key("mem", (("host", "a"),), "used")
    ws = [scored_window(series, tenant, start, i) for i in range(4)]
    for _ in range(2):  # Bytewax recovery re-emits what came after the last snapshot
        run_flow("influx_replay_it", [("s", ws)], InfluxWindowSink(settings, flush_interval_s=0.1))
    history = reader.window_history(tenant, series)
    assert len(history) == 4
    for record, s in zip(history, ws, strict=True):
        assert_same(record, s)


def test_series_that_influx_cannot_store_as_a_tag_are_skipped_not_fatal(settings, reader, tenant):
    start = recent_start()
    bad = series_key("cpu", (("host", "a"),), "ends\\")  # identity ends with a backslash
    good = series_key("cpu", (("host", "a"),), "fine")
    sink = InfluxWindowSink(settings, flush_interval_s=0.1)
    run_flow(
        "influx_invalid_it",
        [("s", [scored_window(bad, tenant, start, 0), scored_window(good, tenant, start, 0)])],
        sink,
    )
    assert (sink.stats().invalid, sink.stats().written) == (1, 1)
    assert len(reader.window_history(tenant, good)) == 1


# --------------------------------------------------------------------------- incidents


def test_incident_annotations_are_written_and_queryable(settings, reader, tenant):
    start = recent_start()
    series = series_key("postgresql", (("host", "db 1"),), "connections")
    common = dict(
        fingerprint=uuid.uuid4().hex[:16],
        tenant=tenant,
        series=series,
        title='Connections spike on "db 1"',
        category=Category.DATABASE,
    )
    updates = [
        IncidentUpdate(
            type=IncidentEventType.OPENED,
            severity=Severity.HIGH,
            score=0.91,
            peak_score=0.91,
            window_start_ns=start,
            window_end_ns=start + WINDOW,
            observed=480.0,
            **common,
        ),
        IncidentUpdate(
            type=IncidentEventType.UPDATED,
            severity=Severity.CRITICAL,
            score=0.97,
            peak_score=0.97,
            window_start_ns=start + WINDOW,
            window_end_ns=start + 2 * WINDOW,
            observed=900.0,
            **common,
        ),
        IncidentUpdate(
            type=IncidentEventType.RESOLVED,
            severity=Severity.CRITICAL,
            score=0.1,
            peak_score=0.97,
            window_start_ns=start + 5 * WINDOW,
            window_end_ns=start + 6 * WINDOW,
            observed=40.0,
            metadata={"resolution": "auto-resolved after 3 normal windows"},
            **common,
        ),
    ]
    sink = InfluxIncidentSink(settings, flush_interval_s=0.1)
    run_flow("influx_incidents_it", [("a", updates[:2]), ("b", updates[2:])], sink)
    assert sink.stats().written == 3

    notes = reader.incident_annotations(tenant)
    assert [n.event for n in notes] == ["opened", "updated", "resolved"]
    assert [n.severity for n in notes] == ["high", "critical", "critical"]
    assert [n.time_ns for n in notes] == [u.window_start_ns for u in updates]
    assert {n.fingerprint for n in notes} == {common["fingerprint"]}
    assert {n.category for n in notes} == {"database"}
    assert all(n.title == common["title"] and n.series == series for n in notes)
    assert [n.score for n in notes] == [0.91, 0.97, 0.1]
    assert notes[1].peak_score == 0.97 and notes[1].observed == 900.0
    assert notes[2].window_end_ns == start + 6 * WINDOW
    assert notes[2].text.startswith("resolved: ") and "auto-resolved after 3" in notes[2].text
    assert reader.incident_annotations(tenant, start + WINDOW, start + 2 * WINDOW)[0].event == (
        "updated"
    )


# --------------------------------------------------------------------------- failure handling


class _Flaky(BaseHTTPRequestHandler):
    """503 (with Retry-After) for the first ``failures`` writes, then a proxy to InfluxDB."""

    server: _FlakyServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        with srv.lock:
            srv.arrivals.append(time.monotonic())
            fail = len(srv.arrivals) <= srv.failures
        if fail:
            payload = b'{"code":"unavailable","message":"warming up"}'
            self.send_response(503)
            self.send_header("Retry-After", str(srv.retry_after))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = httpx.post(
            f"{srv.upstream}{self.path}",
            content=body,
            headers={"Authorization": self.headers["Authorization"]},
            timeout=10,
        )
        self.send_response(upstream.status_code)
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)


class _FlakyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, failures: int, retry_after: float) -> None:
        super().__init__(("127.0.0.1", 0), _Flaky)
        self.upstream = upstream
        self.failures = failures
        self.retry_after = retry_after
        self.arrivals: list[float] = []
        self.lock = threading.Lock()


@pytest.fixture
def flaky(settings):
    server = _FlakyServer(settings.influx_url, failures=2, retry_after=0.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_503_twice_is_retried_with_backoff_and_nothing_is_lost(settings, reader, tenant, flaky):
    host, port = flaky.server_address[:2]
    series = series_key("net", (("if", "eth0"),), "rx")
    start = recent_start()
    ws = [scored_window(series, tenant, start, i) for i in range(50)]
    writer = InfluxWriter(
        f"http://{host}:{port}",
        settings.influx_token,
        settings.influx_org,
        settings.influx_bucket,
        backoff_base_s=0.2,
        flush_interval_s=0.05,
    )
    writer.add(window_point(w) for w in ws)
    assert writer.flush(15)
    stats = writer.close()
    assert (stats.written, stats.retried, stats.failed, stats.dropped) == (50, 2, 0, 0)
    gaps = [b - a for a, b in zip(flaky.arrivals, flaky.arrivals[1:], strict=False)]
    assert len(flaky.arrivals) == 3
    assert all(gap >= 0.5 for gap in gaps), gaps  # Retry-After: 0.5 honoured each time
    history = reader.window_history(tenant, series)
    assert len(history) == 50
    for record, s in zip(history, ws, strict=True):
        assert_same(record, s)


def test_4xx_from_influx_is_not_retried_and_is_counted(settings, caplog):
    series = series_key("cpu", (), "x")
    lines = [window_point(scored_window(series, "t", recent_start(), i)) for i in range(7)]
    for options in (
        {"bucket": f"no-such-bucket-{uuid.uuid4().hex[:8]}"},  # 404
        {"token": "not-a-valid-token"},  # 401
    ):
        params = {
            "url": settings.influx_url,
            "token": settings.influx_token,
            "org": settings.influx_org,
            "bucket": settings.influx_bucket,
            **options,
        }
        writer = InfluxWriter(**params, flush_interval_s=0.05, backoff_base_s=5.0)
        started = time.monotonic()
        writer.add(lines)
        assert writer.flush(10)
        stats = writer.close()
        assert time.monotonic() - started < 4.0  # no 5 s backoff: never retried
        assert (stats.written, stats.failed, stats.retried) == (0, 7, 0)
    rejected = [r.getMessage() for r in caplog.records if "rejected a batch" in r.getMessage()]
    assert any("HTTP 404" in m and "bucket" in m for m in rejected), rejected
    assert any("HTTP 401" in m for m in rejected), rejected
    token = settings.influx_token.get_secret_value()
    assert all(token not in r.getMessage() for r in caplog.records)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_writer_never_blocks_beyond_its_deadline_when_influx_is_unreachable(settings):
    port = _closed_port()
    writer = InfluxWriter(
        f"http://127.0.0.1:{port}",
        settings.influx_token,
        settings.influx_org,
        settings.influx_bucket,
        batch_size=100,
        flush_interval_s=0.05,
        backoff_base_s=0.1,
        max_retries=1_000,
    )
    series = series_key("cpu", (), "x")
    started = time.monotonic()
    for i in range(1_000):
        writer.add([window_point(scored_window(series, "t", recent_start(), i))])
    assert time.monotonic() - started < 2.0  # adding never waits for the network
    assert writer.flush(0.3) is False
    closing = time.monotonic()
    stats = writer.close(timeout_s=1.0)
    assert time.monotonic() - closing < 1.5
    assert stats.written == 0
    assert stats.retried >= 1
    assert stats.failed + stats.dropped == 1_000
