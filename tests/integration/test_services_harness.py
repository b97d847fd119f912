"""The native services harness (``scripts/services.sh``, ``./deploy.sh services ...``) works.

Each test talks to one real service the harness started: Kafka (produce/consume round trip),
InfluxDB 2.x (write + Flux query) and PostgreSQL (password login, create a table).

Connection settings come from the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``INFLUX_URL``,
``INFLUX_TOKEN``, ``INFLUX_ORG``, ``INFLUX_BUCKET``, ``DATABASE_URL``) and, for whatever is not
set there, from ``scripts/services.sh env``. A service that does not answer makes its tests skip,
or fail when ``INCIDENTS_REQUIRE_SERVICES=1`` (as ``./deploy.sh test`` sets after starting them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVICES_SH = REPO / "scripts" / "services.sh"
HINT = "start them with: ./deploy.sh services up (or scripts/services.sh up)"
NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "INFLUX_URL",
    "INFLUX_TOKEN",
    "INFLUX_ORG",
    "INFLUX_BUCKET",
    "DATABASE_URL",
)


def _require_services() -> bool:
    return os.environ.get("INCIDENTS_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str):
    """Fail when the services are required, skip (with the reason) otherwise."""
    if _require_services():
        pytest.fail(f"{reason} (INCIDENTS_REQUIRE_SERVICES=1; {HINT})", pytrace=False)
    pytest.skip(f"{reason}; {HINT}")


def _harness_env() -> dict[str, str]:
    """The ``export NAME=value`` lines of ``scripts/services.sh env`` as a dict."""
    if not SERVICES_SH.exists():
        return {}
    try:
        out = subprocess.run(
            ["bash", str(SERVICES_SH), "env"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    values: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    values = {name: os.environ[name] for name in NAMES if os.environ.get(name)}
    if values.get("DATABASE_URL", "").startswith("sqlite"):
        values.pop("DATABASE_URL")  # local mode's default is not the harness's PostgreSQL
    if any(name not in values for name in NAMES):
        for name, value in _harness_env().items():
            values.setdefault(name, value)
    return values


def _setting(settings: dict[str, str], name: str) -> str:
    value = settings.get(name)
    if not value:
        _unavailable(f"{name} is not set and scripts/services.sh env does not provide it")
    return value


def _reachable(host: str, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        error = exc
    _unavailable(f"{what} at {host}:{port} does not answer ({error})")


# -------------------------------------------------------------------------------------------
# Kafka


@pytest.fixture(scope="module")
def kafka_bootstrap(settings) -> str:
    bootstrap = _setting(settings, "KAFKA_BOOTSTRAP_SERVERS")
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    _reachable(host or "127.0.0.1", int(port), "Kafka")
    return bootstrap


def test_kafka_has_the_contract_topics(kafka_bootstrap):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=15).topics
    for name in ("metrics", "metrics.dlq", "incidents"):
        assert name in topics, f"topic {name!r} missing; topics: {sorted(topics)}"


def test_kafka_produce_consume_round_trip(kafka_bootstrap):
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    run = uuid.uuid4().hex
    topic = f"harness.selftest.{run}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    try:
        payload = f'cpu,host=selftest usage_user=12.5,run="{run}" {time.time_ns()}'.encode()
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
        delivered: list = []
        producer.produce(
            topic, key=run.encode(), value=payload, on_delivery=lambda e, m: delivered.append(e)
        )
        assert producer.flush(30) == 0, "the message was not delivered within 30 s"
        assert delivered == [None], f"delivery failed: {delivered}"

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"harness-selftest-{run}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 60
            received = None
            while received is None and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                received = msg
            assert received is not None, "nothing consumed within 60 s"
            assert received.key() == run.encode()
            assert received.value() == payload
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(30)


# -------------------------------------------------------------------------------------------
# InfluxDB 2.x


@pytest.fixture(scope="module")
def influx(settings):
    url = _setting(settings, "INFLUX_URL")
    token = _setting(settings, "INFLUX_TOKEN")
    org = _setting(settings, "INFLUX_ORG")
    bucket = _setting(settings, "INFLUX_BUCKET")
    parts = urlsplit(url)
    _reachable(parts.hostname or "127.0.0.1", parts.port or 8086, "InfluxDB")

    from influxdb_client import InfluxDBClient

    client = InfluxDBClient(url=url, token=token, org=org, timeout=30_000)
    try:
        yield client, org, bucket
    finally:
        client.close()


def test_influxdb_is_version_2_and_healthy(influx):
    client, _, _ = influx
    assert client.ping(), "GET /ping failed"
    assert client.version().startswith("v2."), client.version()
    assert client.ready().status == "ready"


def test_influxdb_write_then_flux_query(influx):
    from influxdb_client import Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    client, org, bucket = influx
    run = uuid.uuid4().hex
    now_ns = time.time_ns()
    points = [
        Point("harness_selftest")
        .tag("run", run)
        .tag("host", "selftest")
        .field("value", float(i))
        .time(now_ns - (3 - i) * 1_000_000_000, WritePrecision.NS)
        for i in range(3)
    ]
    client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, org=org, record=points)

    flux = f"""
from(bucket: "{bucket}")
  |> range(start: -10m)
  |> filter(fn: (r) => r._measurement == "harness_selftest" and r.run == "{run}")
  |> filter(fn: (r) => r._field == "value")
  |> sort(columns: ["_time"])
"""
    values: list[float] = []
    deadline = time.monotonic() + 20
    while len(values) < 3 and time.monotonic() < deadline:
        tables = client.query_api().query(flux, org=org)
        values = [record.get_value() for table in tables for record in table.records]
        if len(values) < 3:
            time.sleep(0.5)
    assert values == [0.0, 1.0, 2.0]

    # aggregate in Flux too, so the query engine (libflux) is exercised beyond a plain read
    total = client.query_api().query(flux + "  |> sum()\n", org=org)
    assert [r.get_value() for t in total for r in t.records] == [3.0]

    client.delete_api().delete(
        "1970-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
        f'_measurement="harness_selftest" AND run="{run}"',
        bucket=bucket,
        org=org,
    )


# -------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.fixture(scope="module")
def database_url(settings) -> str:
    url = _setting(settings, "DATABASE_URL")
    if not url.startswith(("postgresql://", "postgres://", "postgresql+")):
        _unavailable(f"DATABASE_URL is not a PostgreSQL URL ({url.split(':', 1)[0]}://...)")
    parts = urlsplit(url)
    _reachable(parts.hostname or "127.0.0.1", parts.port or 5432, "PostgreSQL")
    return url


def _psycopg_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return "postgresql://" + rest if scheme.startswith("postgresql+") else url


def test_postgres_password_login_and_create_table(database_url):
    import psycopg

    table = f"harness_selftest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_url(database_url), connect_timeout=10) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        assert int(version.split(".")[0]) >= 13, version
        assert conn.execute("SELECT current_database()").fetchone()[0] == urlsplit(
            database_url
        ).path.lstrip("/")
        assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
        try:
            conn.execute(
                f"CREATE TABLE {table} (id serial PRIMARY KEY, title text NOT NULL, "
                "opened_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                f"INSERT INTO {table} (title) VALUES (%s), (%s)", ("cpu high", "disk full")
            )
            rows = conn.execute(f"SELECT id, title FROM {table} ORDER BY id").fetchall()
            assert [title for _, title in rows] == ["cpu high", "disk full"]
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_postgres_rejects_a_wrong_password(database_url):
    import psycopg

    parts = urlsplit(_psycopg_url(database_url))
    wrong = parts._replace(
        netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}"
    )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong.geturl(), connect_timeout=10)


# -------------------------------------------------------------------------------------------
# The API's token key for the development environment


def test_env_provides_a_stable_private_jwt_secret():
    first, second = _harness_env(), _harness_env()
    if not first:
        _unavailable("scripts/services.sh env printed nothing")
    secret = first.get("JWT_SECRET", "")
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert second["JWT_SECRET"] == secret
    state = Path(
        os.environ.get("INCIDENTS_STATE_DIR")
        or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "incidents"
    )
    assert (state / "jwt-secret").stat().st_mode & 0o777 == 0o600
