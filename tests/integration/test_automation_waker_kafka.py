"""``incidents automate``'s incidents-topic waker against the real Kafka broker."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

from connectors.automation_process import KafkaIncidentWaker
from incidents.config import Settings

pytestmark = pytest.mark.integration


def test_a_message_on_the_incidents_topic_wakes_the_engine(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("incidents", partitions=1)
    woken = threading.Event()
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_incidents_topic=topic)
    waker = KafkaIncidentWaker.from_settings(settings, woken.set)
    waker.start()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    try:
        # The consumer starts at the newest offset once its partition is assigned: keep
        # producing until one message arrives after that.
        deadline = time.monotonic() + 60
        while not woken.is_set() and time.monotonic() < deadline:
            producer.produce(topic, key=b"fingerprint", value=b'{"type": "opened"}')
            producer.flush(5)
            woken.wait(1.0)
        assert woken.is_set(), "no wake-up from the incidents topic within 60 s"
        assert waker.messages >= 1
    finally:
        waker.stop()
