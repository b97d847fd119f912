"""The development deployment end to end, as the issue's outside check does it.

Real Kafka, InfluxDB and PostgreSQL from the services harness; ``incidents run --environment
development`` as a process tree; an independent Kafka producer sends an hour of line protocol and
Telegraf JSON (one series with a spike, its clean twin) and malformed messages. Then: aggregates
in InfluxDB, an incident for the spiked series through the API and none for the twin, every
malformed message in the DLQ with its reason.
"""

import json
import math
import os
import random
import time
import uuid

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from influxdb_client import InfluxDBClient

pytestmark = pytest.mark.integration

S = 1_000_000_000
MALFORMED = [
    b"cpu,host=a usage=notanumber 1700000000000000000",
    b'{"name": "cpu", "fields": ',
    b"\xff\xfe\x00 binary junk",
    b"cpu,host=a usage=1 123abc",
    b"=broken line",
]


def series_values(n: int, spike_at: int | None, seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [100 + 5 * math.sin(i / 30) + rng.gauss(0, 2) for i in range(n)]
    if spike_at is not None:
        for i in range(spike_at, spike_at + 3):
            values[i] += 300
    return values


def produce_hour(bootstrap: str, topic: str, spiky: str, twin: str) -> None:
    points = 360  # an hour at Telegraf's 10 s interval
    start = (time.time_ns() // S - points * 10) * S
    spike = series_values(points, spike_at=270, seed=1)
    clean = series_values(points, spike_at=None, seed=2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(0, points, 30):
        lines = [
            f"app,host={spiky} latency_ms={spike[j]:.3f} {start + j * 10 * S}"
            for j in range(i, i + 30)
        ]
        producer.produce(topic, "\n".join(lines).encode())
        batch = {
            "metrics": [
                {
                    "name": "app",
                    "tags": {"host": twin},
                    "fields": {"latency_ms": round(clean[j], 3)},
                    "timestamp": (start + j * 10 * S) // S,
                }
                for j in range(i, i + 30)
            ]
        }
        producer.produce(topic, json.dumps(batch).encode())
    for bad in MALFORMED:
        producer.produce(topic, bad)
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def development_run(services_env, tmp_path_factory, run_product):
    run_id = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("dev-run")
    env = {
        **os.environ,
        **services_env,
        "ENVIRONMENT": "development",
        "ADMIN_PASSWORD": "dev-" + uuid.uuid4().hex,
        "JWT_SECRET": uuid.uuid4().hex * 2,
        "KAFKA_METRICS_TOPIC": f"metrics-it-{run_id}",
        "KAFKA_DLQ_TOPIC": f"metrics.dlq-it-{run_id}",
        "KAFKA_INCIDENTS_TOPIC": f"incidents-it-{run_id}",
        "PYTHONUNBUFFERED": "1",
    }
    with run_product("development", env, workdir, 120) as run:
        spiky, twin = f"spiky-{run_id}", f"twin-{run_id}"
        produce_hour(
            services_env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_METRICS_TOPIC"], spiky, twin
        )
        token = httpx.post(
            f"{run.base}/api/v1/auth/token",
            data={"username": "admin", "password": env["ADMIN_PASSWORD"]},
        ).json()["access_token"]
        yield {
            "base": run.base,
            "env": env,
            "headers": {"Authorization": f"Bearer {token}"},
            "spiky": f"app,host={spiky} latency_ms",
            "twin": f"app,host={twin} latency_ms",
            "log": run.log,
        }


def wait_for(check, timeout_s: float, what: str, log_path):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(2)
    pytest.fail(
        f"{what} did not happen within {timeout_s:.0f} s; last: {last!r}\n"
        + log_path.read_text()[-4000:]
    )


def incidents_for(run, series: str) -> list[dict]:
    resp = httpx.get(
        f"{run['base']}/api/v1/incidents",
        params={"series": series},
        headers=run["headers"],
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def test_spiked_series_gets_an_incident_through_the_api(development_run):
    run = development_run
    items = wait_for(lambda: incidents_for(run, run["spiky"]), 150, "incident", run["log"])
    assert items[0]["kind"] == "detected" and items[0]["series"] == run["spiky"]


def test_aggregates_reach_influxdb(development_run):
    run, env = development_run, development_run["env"]

    def count() -> int:
        query = (
            "from(bucket: bucket) |> range(start: -3h) "
            '|> filter(fn: (r) => r._measurement == "window_aggregates" and r.series == series '
            'and r._field == "mean") |> count()'
        )
        with InfluxDBClient(
            url=env["INFLUX_URL"], token=env["INFLUX_TOKEN"], org=env["INFLUX_ORG"]
        ) as c:
            tables = c.query_api().query(
                query, params={"bucket": env["INFLUX_BUCKET"], "series": run["spiky"]}
            )
        return sum(int(r.get_value()) for t in tables for r in t.records)

    assert wait_for(count, 120, "aggregates in InfluxDB", run["log"]) >= 50


def test_clean_twin_has_no_incident(development_run):
    run = development_run
    wait_for(lambda: incidents_for(run, run["spiky"]), 150, "incident", run["log"])
    assert incidents_for(run, run["twin"]) == []


def test_malformed_messages_reach_the_dlq_with_reasons(development_run):
    env = development_run["env"]
    consumer = Consumer(
        {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": f"it-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([env["KAFKA_DLQ_TOPIC"]])
    seen: dict[bytes, str] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(seen) < len(MALFORMED):
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        headers = dict(msg.headers() or [])
        seen[msg.value()] = headers.get("reason", b"").decode()
    consumer.close()
    assert set(seen) == set(MALFORMED)
    assert all(reason for reason in seen.values())


def test_metrics_history_is_served(development_run):
    run = development_run
    wait_for(lambda: incidents_for(run, run["spiky"]), 150, "incident", run["log"])
    resp = httpx.get(
        f"{run['base']}/api/v1/metrics/history",
        params={"series": run["spiky"], "limit": 500},
        headers=run["headers"],
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["count"] >= 50
