"""``incidents automate``: the automation engine (rules + escalation timers) as its own process.

What it consumes. The system of record for incident changes is the store's timeline
(``incident_events``): the API's changes (new incidents, edits, acknowledgements, resolutions,
Alertmanager and Grafana intake) are only there, and the dataflow writes its incident updates
there too. The Kafka incidents topic carries only the dataflow's updates. So the process follows
the timeline by id like the in-process engine (its own cursor ``automate`` in
``automation_cursors``), and — when ``KAFKA_BOOTSTRAP_SERVERS`` is set — also consumes the
incidents topic (consumer group ``incidents-automation``) only to wake up at once when the
dataflow published something, instead of at the next ``AUTOMATION_POLL_SECONDS`` poll. A lost
or early Kafka message costs latency, never an action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from connectors.automation_engine import AutomationEngine
from connectors.escalation import attach_escalation
from connectors.kafka import Throttle, bootstrap_string
from connectors.store import Store
from incidents.config import Settings

log = logging.getLogger(__name__)

ENGINE_NAME = "automate"
CONSUMER_GROUP = "incidents-automation"
POLL_S = 1.0


class MessageLike(Protocol):
    def error(self) -> Any: ...


class ConsumerLike(Protocol):
    """The part of ``confluent_kafka.Consumer`` the waker uses."""

    def subscribe(self, topics: list[str]) -> None: ...

    def poll(self, timeout: float) -> MessageLike | None: ...

    def close(self) -> None: ...


def waker_consumer_config(bootstrap_servers: str) -> dict[str, Any]:
    """A subscribed consumer in group ``incidents-automation`` that starts at the newest message:
    the store holds everything, Kafka only says "look now"."""
    return {
        "bootstrap.servers": bootstrap_string(bootstrap_servers),
        "group.id": CONSUMER_GROUP,
        "client.id": "incidents-automation",
        "enable.auto.commit": True,
        "auto.offset.reset": "latest",
        "allow.auto.create.topics": False,
    }


class KafkaIncidentWaker:
    """Calls ``on_message`` for every message on the incidents topic, on a thread of its own."""

    def __init__(
        self,
        consumer_factory: Callable[[], ConsumerLike],
        topic: str,
        on_message: Callable[[], None],
    ) -> None:
        self.consumer_factory = consumer_factory
        self.topic = topic
        self.on_message = on_message
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = Throttle()
        self.messages = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, on_message: Callable[[], None]
    ) -> KafkaIncidentWaker:
        from confluent_kafka import Consumer

        config = waker_consumer_config(settings.kafka_bootstrap_servers or "")
        return cls(lambda: Consumer(config), settings.kafka_incidents_topic, on_message)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="automation-kafka", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        consumer = self.consumer_factory()
        try:
            consumer.subscribe([self.topic])
            while not self._stop.is_set():
                message = consumer.poll(POLL_S)
                if message is None:
                    continue
                if message.error():
                    if self._throttle("error") is not None:
                        log.warning("incidents topic: %s", message.error())
                    continue
                self.messages += 1
                self.on_message()
        except Exception:  # the timeline poll still works without Kafka
            log.exception(
                "the incidents-topic consumer stopped; automation keeps polling the store"
            )
        finally:
            consumer.close()


def run_automation(settings: Settings, stop: threading.Event, ready: Callable[[], None]) -> None:
    """Migrate, run the engine with escalation (and the Kafka waker) until ``stop`` is set."""
    store = Store.from_settings(settings)
    store.migrate()
    engine = AutomationEngine(store, settings, name=ENGINE_NAME)
    attach_escalation(engine)
    waker = KafkaIncidentWaker.from_settings(settings, engine.wake) if settings.uses_kafka else None
    engine.start()
    if waker is not None:
        waker.start()
    try:
        ready()
        stop.wait()
    finally:
        if waker is not None:
            waker.stop()
        engine.stop()
        store.close()
