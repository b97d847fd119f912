"""Shared fixtures of the integration tests: the services' environment and per-test Kafka topics.

The tests talk to the real services whose addresses are in the environment (contract 3 of
ARCHITECTURE.md), typically after ``eval "$(scripts/services.sh env)"``. A service that is not
configured or does not answer makes its tests skip with the reason, or fail when
``INCIDENTS_REQUIRE_SERVICES=1`` (as ``./deploy.sh test`` sets after starting them).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest

from tests.conftest import SERVICE_VARIABLES

HINT = 'start them with ./deploy.sh services up, then eval "$(./deploy.sh services env)"'
KAFKA_ANSWER_WITHIN_S = 20.0
"""How long a Kafka that is being restarted (by another test run) may take to answer."""


def services_required() -> bool:
    return os.environ.get("INCIDENTS_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(reason: str) -> NoReturn:
    """Fail when the services are required, skip (with the reason) otherwise."""
    if services_required():
        pytest.fail(f"{reason} (INCIDENTS_REQUIRE_SERVICES=1; {HINT})", pytrace=False)
    pytest.skip(f"{reason}; {HINT}")


@pytest.fixture(scope="session")
def services_env() -> dict[str, str]:
    """The services' variables that are set in the environment (empty ones left out)."""
    return {name: os.environ[name] for name in SERVICE_VARIABLES if os.environ.get(name)}


@pytest.fixture(scope="session")
def kafka_bootstrap(services_env: dict[str, str]) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS`` of a broker that answers; skips (or fails) otherwise."""
    bootstrap = services_env.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        service_unavailable("KAFKA_BOOTSTRAP_SERVERS is not set, so there is no Kafka to test")
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + KAFKA_ANSWER_WITHIN_S
    while True:
        try:
            admin.list_topics(timeout=5)
            return bootstrap
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                service_unavailable(f"Kafka at {bootstrap} does not answer: {exc}")
        time.sleep(1.0)


TopicFactory = Callable[..., str]


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """A factory of topic names unique to this test (and run): ``kafka_topic("metrics")``.

    With ``partitions=N`` the topic is also created. Every topic named here is deleted after the
    test, so runs do not pile topics up on the broker.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    test_part = re.sub(r"[^a-zA-Z0-9.-]+", "-", request.node.name)[:80].strip("-")
    names: list[str] = []

    def make(label: str = "topic", partitions: int | None = None) -> str:
        clean = re.sub(r"[^a-zA-Z0-9.-]+", "-", label)[:40]
        name = f"it.{test_part}.{clean}.{uuid.uuid4().hex[:10]}"
        names.append(name)
        if partitions is not None:
            futures = admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1)],
                operation_timeout=30,
            )
            futures[name].result(timeout=60)
            _wait_until_listed(admin, name, partitions)
        return name

    yield make

    if names:
        futures = admin.delete_topics(names, operation_timeout=10)
        for future in futures.values():
            # Cleanup of topics a test may never have created: nothing to do if that fails.
            with contextlib.suppress(Exception):
                future.result(timeout=15)


def _wait_until_listed(admin: object, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = admin.list_topics(topic=name, timeout=5).topics.get(name)  # type: ignore[attr-defined]
        if (
            found is not None
            and found.error is None
            and len(found.partitions) == partitions
            and all(p.leader >= 0 for p in found.partitions.values())
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topic {name} has no leaders after {timeout_s} s")


@pytest.fixture
def postgres_url(services_env: dict[str, str]) -> Iterator[str]:
    """A ``DATABASE_URL`` whose ``search_path`` is a fresh schema with the store's tables
    (dropped afterwards), so a test sees only its own rows."""
    url = services_env.get("DATABASE_URL", "")
    if not url.startswith(("postgresql://", "postgres://", "postgresql+")):
        service_unavailable("DATABASE_URL is not set to a PostgreSQL URL")
    import sqlalchemy as sa

    from connectors.store import Store, engine_url

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(engine_url(url))
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable(f"PostgreSQL does not answer: {exc.orig}")
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    store = Store(scoped)
    store.migrate()
    store.close()
    try:
        yield scoped
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
