"""Bytewax recovery with real services: ``kill -9`` mid-stream, restart, same results.

Two runs of ``incidents dataflow`` (``ENVIRONMENT=development``: Kafka in, PostgreSQL and
InfluxDB out) over the same two hours of line protocol (three series of 10 s points around 100,
sigma 2, each with one two-minute +300 spike), each on its own metrics topic and with its own
``tenant`` tag, side by side:

* A, the reference, reads the whole stream without interruption;
* B (``--snapshot-interval 1``) reads the first hour, then the stream goes on minute by minute;
  right after Bytewax has committed a snapshot covering windows just handed to the sinks, B's
  process group gets SIGKILL; the rest of the stream is produced and B is started again with the
  same recovery directory.

Then, tenant tag stripped, the window aggregates in PostgreSQL and in InfluxDB, the incidents
with their timelines in PostgreSQL and the incident annotations in InfluxDB must be the same for
both runs: nothing lost, nothing doubled. Each run ends when all its windows are written (the
last window of each series closes on the idle timer, WINDOW_SECONDS + ALLOWED_LATENESS_SECONDS
of wall time after its last point).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.integration

S = 1_000_000_000
WINDOW_S = 60
LATENESS_S = 5
POINT_EVERY_S = 10
MINUTES = 120
SERIES = [  # (measurement, host, field)
    ("app", "api-1", "latency_ms"),
    ("app", "api-2", "latency_ms"),
    ("db", "db-1", "connections"),
]
SPIKES = {0: (35,), 1: (66,), 2: (100,)}
"""Per series, the minutes at which a two-minute +300 spike starts."""
SPIKE_MINUTES = 2
EXPECTED_WINDOWS = len(SERIES) * MINUTES
TOTAL_POINTS = EXPECTED_WINDOWS * (WINDOW_S // POINT_EVERY_S)

FIRST_PART = 60
"""Minutes produced before B's first snapshot; the crash comes while the next ones stream in."""
KILL_AT = 72
"""B is killed right after the minute with this index has been produced and processed."""
SNAPSHOT_S = 1

START_TIMEOUT_S = 90.0
DONE_TIMEOUT_S = 150.0
INFLUX_SETTLE_S = 30.0
FLOAT_REL = 1e-9


# --------------------------------------------------------------------------- input


def series_values(index: int) -> list[float]:
    """Deterministic 10 s points: ~100 + slow wave + noise (sigma 2), +300 during spikes."""
    rng = random.Random(1000 + index)
    n = MINUTES * WINDOW_S // POINT_EVERY_S
    values = [100 + 5 * math.sin(i / 40 + index) + rng.gauss(0, 2) for i in range(n)]
    per_minute = WINDOW_S // POINT_EVERY_S
    for minute in SPIKES.get(index, ()):
        for i in range(minute * per_minute, (minute + SPIKE_MINUTES) * per_minute):
            values[i] += 300
    return values


def minute_messages(tenant: str, t0_ns: int) -> list[list[bytes]]:
    """Per minute, one message per series holding that series' six points of the minute.

    A window's points always travel together, so its aggregate is computed in the same order in
    every run whatever the batching (bit-for-bit comparable).
    """
    per_minute = WINDOW_S // POINT_EVERY_S
    values = [series_values(i) for i in range(len(SERIES))]
    out: list[list[bytes]] = []
    for minute in range(MINUTES):
        messages = []
        for index, (measurement, host, field_name) in enumerate(SERIES):
            lines = []
            for j in range(minute * per_minute, (minute + 1) * per_minute):
                ts = t0_ns + j * POINT_EVERY_S * S
                lines.append(
                    f"{measurement},host={host},tenant={tenant} "
                    f"{field_name}={values[index][j]:.3f} {ts}"
                )
            messages.append("\n".join(lines).encode())
        out.append(messages)
    return out


def series_keys(tenant: str) -> list[str]:
    return [f"{m},host={h},tenant={tenant} {f}" for m, h, f in SERIES]


class Stream:
    """B's (or A's) messages and where the producer is in them."""

    def __init__(self, bootstrap: str, topic: str, tenant: str, t0_ns: int) -> None:
        self.topic = topic
        self.minutes = minute_messages(tenant, t0_ns)
        self.next_minute = 0
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

    def produce(self, until_minute: int, pause_s: float = 0.0) -> None:
        """Produce the minutes up to (excluding) ``until_minute``, flushing each if paced."""
        while self.next_minute < min(until_minute, MINUTES):
            for index, message in enumerate(self.minutes[self.next_minute]):
                self.producer.produce(self.topic, message, key=SERIES[index][1].encode())
            self.next_minute += 1
            if pause_s:
                assert self.producer.flush(30) == 0
                time.sleep(pause_s)
        assert self.producer.flush(30) == 0


# --------------------------------------------------------------------------- processes


@dataclass
class Dataflow:
    """``incidents dataflow`` as its own process group, logging to files under ``workdir``."""

    name: str
    env: dict[str, str]
    workdir: Path
    recovery_dir: Path
    proc: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log_path = self.workdir / f"{self.name}-{len(self.logs) + 1}.log"
        self.logs.append(log_path)
        with log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "incidents",
                    "dataflow",
                    "--recovery-dir",
                    str(self.recovery_dir),
                    "--snapshot-interval",
                    str(SNAPSHOT_S),
                ],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def assert_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(
                f"dataflow {self.name} exited with {self.proc.returncode}:\n{self.tail()}",
                pytrace=False,
            )

    def frontier(self) -> int | None:
        """Bytewax's recovery frontier: the epoch a restart would resume from (None: unknown).

        Read from the recovery partition's ``fronts`` table (bytewax 0.21's SQLite schema),
        only to time the crash; nothing is asserted on it.
        """
        path = next(iter(sorted(self.recovery_dir.glob("part-*.sqlite3"))), None)
        if path is None:
            return None
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            ) as db:
                row = db.execute(
                    "SELECT min(worker_frontier) FROM fronts "
                    "WHERE ex_num = (SELECT max(ex_num) FROM fronts)"
                ).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None or row[0] is None else int(row[0])

    def wait_for_next_snapshot(self, timeout_s: float = 10.0) -> str:
        """Return as soon as Bytewax has committed the epoch running now (or after 1.5 s if
        its recovery tables cannot be read); says which."""
        first = self.frontier()
        deadline = time.monotonic() + (timeout_s if first is not None else 1.5 * SNAPSHOT_S)
        while time.monotonic() < deadline:
            now = self.frontier()
            if first is not None and now is not None and now > first:
                return f"frontier {first} -> {now}"
            time.sleep(0.005)
        return f"no new frontier seen after {first}"

    def kill9(self) -> None:
        """SIGKILL to the CLI and the Bytewax process under it, at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in self.logs)

    def progress(self, run: int) -> dict[str, int]:
        """The counters of the last progress line of the ``run``-th start (1-based)."""
        lines = [
            line
            for line in self.logs[run - 1].read_text().splitlines()
            if line.startswith("[dataflow]")
        ]
        if not lines:
            return {}
        return {k: int(v.replace(",", "")) for k, v in re.findall(r"(\w+)=([\d,]+)", lines[-1])}


# --------------------------------------------------------------------------- reading results


@dataclass
class Results:
    """What one tenant's run left in PostgreSQL and InfluxDB, with the tenant tag stripped."""

    windows_pg: dict[str, list[dict[str, Any]]]
    windows_influx: dict[str, list[dict[str, Any]]]
    incidents: list[dict[str, Any]]
    annotations: list[dict[str, Any]]


def window_dict(record: Any) -> dict[str, Any]:
    return {
        "window_start_ns": record.window_start_ns,
        "window_end_ns": record.window_end_ns,
        "count": record.count,
        "mean": record.mean,
        "min": record.minimum,
        "max": record.maximum,
        "std": record.std,
        "last": record.last,
        "anomaly_score": record.anomaly_score,
        "is_anomaly": record.is_anomaly,
        "components": dict(record.components),
    }


def strip_tenant(value: Any, tenant: str) -> Any:
    """``value`` with every mention of ``tenant`` replaced, so two tenants' rows compare."""
    if isinstance(value, str):
        return value.replace(f",tenant={tenant}", "").replace(tenant, "<tenant>")
    if isinstance(value, dict):
        return {strip_tenant(k, tenant): strip_tenant(v, tenant) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_tenant(v, tenant) for v in value]
    return value


def incident_dict(incident: Any, timeline: list[Any]) -> dict[str, Any]:
    """An incident without its ids and wall-clock times (those differ between runs by nature)."""
    return {
        "series": incident.series,
        "title": incident.title,
        "description": incident.description,
        "severity": str(incident.severity),
        "category": str(incident.category),
        "status": str(incident.status),
        "kind": str(incident.kind),
        "source": incident.source,
        "score": incident.score,
        "peak_score": incident.peak_score,
        "repeat_count": incident.repeat_count,
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "window_start_ns": incident.window_start_ns,
        "window_end_ns": incident.window_end_ns,
        "resolved_by": incident.resolved_by,
        "resolution": incident.resolution,
        "metadata": incident.metadata,
        "timeline": [
            {"type": str(e.type), "actor": e.actor, "details": e.details} for e in timeline
        ],
    }


def annotation_dict(annotation: Any) -> dict[str, Any]:
    """An InfluxDB incident point without its fingerprint (a hash of the tenant)."""
    return {
        "series": annotation.series,
        "time_ns": annotation.time_ns,
        "event": annotation.event,
        "severity": annotation.severity,
        "category": annotation.category,
        "title": annotation.title,
        "text": annotation.text,
        "score": annotation.score,
        "peak_score": annotation.peak_score,
        "observed": annotation.observed,
        "window_end_ns": annotation.window_end_ns,
    }


def pg_window_count(store: Any, tenant: str) -> int:
    return sum(len(store.window_history(tenant, s, limit=10_000)) for s in series_keys(tenant))


def influx_window_count(reader: Any, tenant: str, t0_ns: int) -> int:
    return sum(
        len(reader.window_history(tenant, s, start_ns=t0_ns, limit=10_000))
        for s in series_keys(tenant)
    )


def read_results(store: Any, reader: Any, tenant: str, t0_ns: int) -> Results:
    from incidents.records import IncidentQuery

    pg: dict[str, list[dict[str, Any]]] = {}
    influx: dict[str, list[dict[str, Any]]] = {}
    for series in series_keys(tenant):
        key = strip_tenant(series, tenant)
        pg[key] = [window_dict(r) for r in store.window_history(tenant, series, limit=10_000)]
        influx[key] = [
            window_dict(r)
            for r in reader.window_history(tenant, series, start_ns=t0_ns, limit=10_000)
        ]
    found, total = store.list_incidents(tenant, IncidentQuery(limit=1000, order="oldest"))
    assert total == len(found)
    incidents = [
        strip_tenant(incident_dict(i, store.timeline(tenant, i.id)), tenant) for i in found
    ]
    incidents.sort(key=lambda i: (i["series"], i["first_seen"]))
    annotations = [
        strip_tenant(annotation_dict(a), tenant)
        for a in reader.incident_annotations(tenant, start_ns=t0_ns, limit=10_000)
    ]
    annotations.sort(key=lambda a: (a["series"], a["time_ns"], a["event"]))
    return Results(pg, influx, incidents, annotations)


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two nested values differ (floats within ``FLOAT_REL``), as readable lines."""
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isclose(expected, actual, rel_tol=FLOAT_REL, abs_tol=1e-12):
            return []
        return [f"{path}: {expected!r} != {actual!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual), key=str):
            if key not in expected or key not in actual:
                out.append(f"{path}.{key}: only in {'actual' if key in actual else 'expected'}")
            else:
                out.extend(differences(expected[key], actual[key], f"{path}.{key}"))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items != {len(actual)} items"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(differences(e, a, f"{path}[{i}]"))
        return out
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def windows_differences(
    expected: dict[str, list[dict[str, Any]]], actual: dict[str, list[dict[str, Any]]], where: str
) -> list[str]:
    out = []
    for series in sorted(set(expected) | set(actual)):
        want = {w["window_start_ns"]: w for w in expected.get(series, [])}
        got = {w["window_start_ns"]: w for w in actual.get(series, [])}
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        if missing:
            out.append(f"{where} {series}: {len(missing)} windows missing: {_times(missing)}")
        if extra:
            out.append(f"{where} {series}: {len(extra)} windows extra: {_times(extra)}")
        for start in sorted(set(want) & set(got)):
            out.extend(differences(want[start], got[start], f"{where} {series} @{_times([start])}"))
    return out


def _times(starts: list[int]) -> str:
    shown = [datetime.fromtimestamp(s / S, UTC).strftime("%H:%M") for s in starts[:12]]
    return ", ".join(shown) + (" ..." if len(starts) > 12 else "")


def wait_for(
    check: Callable[[], Any],
    timeout_s: float,
    what: str,
    flows: list[Dataflow],
    poll_s: float = 0.5,
) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        for flow in flows:
            flow.assert_running()
        last = check()
        if last:
            return last
        time.sleep(poll_s)
    logs = "\n".join(flow.tail() for flow in flows)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f} s (last: {last!r})\n{logs}")


# --------------------------------------------------------------------------- the test

NEEDED = {
    "DATABASE_URL": "postgres",
    "INFLUX_URL": "http",
    "INFLUX_TOKEN": "",
    "INFLUX_ORG": "",
    "INFLUX_BUCKET": "",
}


def unavailable(reason: str) -> None:
    """Fail when the services are required (``INCIDENTS_REQUIRE_SERVICES=1``), else skip."""
    hint = 'start them with ./deploy.sh services up, then eval "$(./deploy.sh services env)"'
    if os.environ.get("INCIDENTS_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (INCIDENTS_REQUIRE_SERVICES=1; {hint})", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def test_kill9_mid_stream_and_restart_gives_the_same_results_as_a_clean_run(
    services_env, kafka_bootstrap, kafka_topic, tmp_path
):
    missing = [n for n, prefix in NEEDED.items() if not services_env.get(n, "").startswith(prefix)]
    missing += [n for n in NEEDED if n not in services_env and n not in missing]
    if missing:
        unavailable(f"{', '.join(missing)} not set (or not PostgreSQL/InfluxDB)")

    from connectors.influx import InfluxReader
    from connectors.store import Store

    run_id = uuid.uuid4().hex[:10]
    t0_ns = (time.time_ns() // (WINDOW_S * S) - MINUTES - 10) * WINDOW_S * S
    flows: dict[str, Dataflow] = {}
    streams: dict[str, Stream] = {}
    tenants: dict[str, str] = {}
    for name in ("a", "b"):
        tenants[name] = f"kill9-{name}-{run_id}"
        topic = kafka_topic(f"metrics-{name}", partitions=1)
        env = {
            **os.environ,
            **services_env,
            "ENVIRONMENT": "development",
            "KAFKA_METRICS_TOPIC": topic,
            "KAFKA_DLQ_TOPIC": kafka_topic(f"dlq-{name}"),
            "KAFKA_INCIDENTS_TOPIC": kafka_topic(f"incidents-{name}"),
            "WINDOW_SECONDS": str(WINDOW_S),
            "ALLOWED_LATENESS_SECONDS": str(LATENESS_S),
            "PYTHONUNBUFFERED": "1",
        }
        workdir = tmp_path / name
        workdir.mkdir()
        flows[name] = Dataflow(name, env, workdir, workdir / "recovery")
        streams[name] = Stream(kafka_bootstrap, topic, tenants[name], t0_ns)

    store = Store(services_env["DATABASE_URL"])
    reader = InfluxReader(
        services_env["INFLUX_URL"],
        services_env["INFLUX_TOKEN"],
        services_env["INFLUX_ORG"],
        services_env["INFLUX_BUCKET"],
    )
    a, b = flows["a"], flows["b"]
    ta, tb = tenants["a"], tenants["b"]
    started = time.monotonic()
    try:
        # A: the whole stream at once. B: the first hour, then a paced stream and the crash.
        streams["a"].produce(MINUTES)
        streams["b"].produce(FIRST_PART)
        a.start()
        b.start()
        # Windows of minutes < FIRST_PART - 1 close on event time; the last one waits.
        first_part_windows = len(SERIES) * (FIRST_PART - 1)
        wait_for(
            lambda: pg_window_count(store, tb) >= first_part_windows,
            START_TIMEOUT_S,
            "B's first hour of windows",
            [a, b],
        )
        time.sleep(2.5 * SNAPSHOT_S)  # B's state after the first hour is in a snapshot
        b.assert_running()
        streams["b"].produce(KILL_AT, pause_s=0.1)
        # The crash: right after the snapshot that covers the windows just handed to the sinks.
        # A pause longer than any sink's buffering first, so they start from empty buffers;
        # then one more minute, which closes the previous minute's windows.
        time.sleep(1.5)
        streams["b"].produce(KILL_AT + 1)
        wait_for(
            lambda: pg_window_count(store, tb) >= len(SERIES) * KILL_AT,
            START_TIMEOUT_S,
            f"B's windows up to minute {KILL_AT}",
            [b],
            poll_s=0.01,
        )
        snapshot = b.wait_for_next_snapshot()
        b.kill9()
        windows_at_kill = pg_window_count(store, tb)
        streams["b"].produce(MINUTES)
        b.start()

        wait_for(
            lambda: pg_window_count(store, ta) >= EXPECTED_WINDOWS,
            DONE_TIMEOUT_S,
            "all of A's windows in PostgreSQL",
            [a, b],
        )
        wait_for(
            lambda: influx_window_count(reader, ta, t0_ns) >= EXPECTED_WINDOWS,
            INFLUX_SETTLE_S,
            "all of A's windows in InfluxDB",
            [a, b],
        )
        wait_for(
            lambda: pg_window_count(store, tb) >= EXPECTED_WINDOWS,
            DONE_TIMEOUT_S,
            "all of B's windows in PostgreSQL",
            [b],
        )
        # B's InfluxDB copy gets the same time to settle as A's had, then is compared as is.
        deadline = time.monotonic() + INFLUX_SETTLE_S
        while (
            influx_window_count(reader, tb, t0_ns) < EXPECTED_WINDOWS
            and time.monotonic() < deadline
        ):
            b.assert_running()
            time.sleep(0.5)
        time.sleep(2.0)  # anything still on its way (a duplicate, a late incident update)
        reference = read_results(store, reader, ta, t0_ns)
        crashed = read_results(store, reader, tb, t0_ns)
        resumed = b.progress(2)
        reference_progress = a.progress(1)
    finally:
        for flow in flows.values():
            flow.stop()
        store.close()
        reader.close()
    elapsed = time.monotonic() - started
    print(
        f"\nrecovery run: {elapsed:.0f} s; B had {windows_at_kill} of {EXPECTED_WINDOWS} windows "
        f"when killed ({snapshot}); after the restart it parsed {resumed.get('points')} of "
        f"{TOTAL_POINTS} points; A: {reference_progress}; incidents: {len(reference.incidents)}"
    )

    # The run is a real test of recovery: killed mid-stream, resumed from a snapshot (not from
    # the start of the topic), and the reference run found the incidents the input holds.
    assert first_part_windows <= windows_at_kill < EXPECTED_WINDOWS
    assert 0 < resumed.get("points", 0) < TOTAL_POINTS, b.tail()
    assert resumed.get("late", 0) == 0 and reference_progress.get("late", 0) == 0
    spiked = {strip_tenant(series_keys(ta)[i], ta) for i in SPIKES}
    assert {i["series"] for i in reference.incidents} == spiked, reference.incidents
    assert len(reference.incidents) >= sum(len(m) for m in SPIKES.values())
    assert all(
        i["status"] == "resolved" and i["resolved_by"] == "auto" for i in reference.incidents
    )

    # Window aggregates: every window exactly once, in both stores, with the same values.
    for results in (reference, crashed):
        for where, windows in (("pg", results.windows_pg), ("influx", results.windows_influx)):
            for series, rows in windows.items():
                starts = [w["window_start_ns"] for w in rows]
                assert len(starts) == len(set(starts)), f"duplicate windows in {where} {series}"
    assert sum(map(len, reference.windows_pg.values())) == EXPECTED_WINDOWS
    problems = windows_differences(reference.windows_pg, crashed.windows_pg, "postgresql")
    problems += windows_differences(reference.windows_influx, crashed.windows_influx, "influxdb")
    problems += windows_differences(reference.windows_pg, reference.windows_influx, "A pg/influx")

    # Incidents: the same ones, once each, with the same scores, resolution and timeline.
    keys = [(i["series"], i["first_seen"]) for i in crashed.incidents]
    assert len(keys) == len(set(keys)), f"duplicate incidents after the restart: {keys}"
    problems += differences(reference.incidents, crashed.incidents, "incidents")
    assert reference.annotations, "no incident annotations in InfluxDB"
    problems += differences(reference.annotations, crashed.annotations, "influxdb incidents")
    assert not problems, "\n".join(problems[:60])
