"""``incidents automate`` as a real subprocess over a SQLite database: it follows the store's
timeline, fires a rule's webhook and runs an escalation's timers; and the Kafka waker's loop."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.automation_process import (
    CONSUMER_GROUP,
    ENGINE_NAME,
    KafkaIncidentWaker,
    waker_consumer_config,
)
from connectors.automation_store import AutomationStore
from connectors.escalation_store import EscalationStore
from connectors.store import Store
from incidents.automation import parse_action
from incidents.cli import automation_in_own_process
from incidents.escalation import parse_levels
from incidents.records import IncidentEvent, TimelineType

ROOT = Path(__file__).resolve().parents[3]


def wait_until(predicate, timeout_s: float, proc=None, log=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail("incidents automate exited:\n" + log.read_text())
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail("timed out" + ("\n" + log.read_text() if log is not None else ""))


def test_incidents_automate_fires_rules_and_escalations_from_the_store(tmp_path, webhook_server):
    url = f"sqlite:///{tmp_path / 'automate.db'}"
    store = Store(url)
    store.migrate()
    EscalationStore(store).create_policy(
        "acme",
        name="oncall",
        levels=parse_levels(
            [
                {
                    "after_seconds": 0.3,
                    "actions": [{"type": "webhook", "url": f"{webhook_server.url}/level1"}],
                }
            ],
            {},
        ),
    )
    AutomationStore(store).create_rule(
        "acme",
        name="db",
        condition="severity == 'critical' and category == 'database'",
        actions=[
            parse_action({"type": "webhook", "url": f"{webhook_server.url}/rule"}),
            parse_action({"type": "escalate", "policy": "oncall"}),
        ],
    )
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        ENVIRONMENT="test",
        AUTOMATION_POLL_SECONDS="0.1",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "automate.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incidents", "automate"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        automation = AutomationStore(store)
        wait_until(lambda: automation.cursor(ENGINE_NAME) is not None, 60, proc, log)
        incident, _ = store.create_incident(
            IncidentEvent(
                title="Datenbank-Verbindungs-Timeout",
                severity="critical",
                category="database",
                metadata={"database": "primary"},
            ),
            tenant="acme",
            actor="t",
        )
        received = webhook_server.wait_for(2, timeout_s=20)
        assert sorted(r.path for r in received) == ["/level1", "/rule"]
        assert all(r.json()["incident"]["id"] == incident.id for r in received)

        def completed():
            return [
                e
                for e in store.timeline("acme", incident.id)
                if e.type is TimelineType.ESCALATION_COMPLETED
            ]

        wait_until(completed, 10, proc, log)
        types = [e.type for e in store.timeline("acme", incident.id)]
        assert types.count(TimelineType.RULE_FIRED) == 1
        assert TimelineType.ESCALATION_STARTED in types

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert "automation engine stopped" in log.read_text()
        assert len(webhook_server.received) == 2  # nothing fired twice
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        store.close()


def test_automation_runs_in_its_own_process_outside_local_mode():
    assert automation_in_own_process("local") is False
    for environment in ("development", "staging", "production"):
        assert automation_in_own_process(environment) is True


# --- the Kafka waker ------------------------------------------------------------------------


class Message:
    def __init__(self, error=None):
        self._error = error

    def error(self):
        return self._error


class ScriptedConsumer:
    """A consumer that hands out a fixed list of poll results, then nothing."""

    def __init__(self, results):
        self.results = list(results)
        self.subscribed: list[str] = []
        self.closed = False

    def subscribe(self, topics):
        self.subscribed = list(topics)

    def poll(self, timeout):
        if self.results:
            return self.results.pop(0)
        time.sleep(0.01)
        return None

    def close(self):
        self.closed = True


def test_the_waker_wakes_on_messages_and_skips_errors():
    consumer = ScriptedConsumer([Message(), None, Message(error="broker down"), Message()])
    woken = []
    waker = KafkaIncidentWaker(lambda: consumer, "incidents", lambda: woken.append(1))
    waker.start()
    deadline = time.monotonic() + 5
    while len(woken) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    waker.stop()
    assert consumer.subscribed == ["incidents"]
    assert len(woken) == 2 and waker.messages == 2
    assert consumer.closed


def test_the_waker_joins_its_own_consumer_group_from_the_newest_message():
    config = waker_consumer_config("127.0.0.1:19092")
    assert config["group.id"] == CONSUMER_GROUP == "incidents-automation"
    assert config["auto.offset.reset"] == "latest"
    assert config["bootstrap.servers"] == "127.0.0.1:19092"
