"""The MQTT -> Kafka bridge (`hemmon bridge`), the distributed runner's way in.

Device messages go unchanged into one Kafka topic, keyed by device (a device's messages
stay in order on one partition). A shared MQTT subscription (`$share/hemmon-bridge/...`)
lets several bridges split the load. The producer waits for every in-sync replica
(acks=all) and is idempotent; a message is acknowledged to the MQTT broker only after
Kafka has it, in a persistent session, so a bridge that crashes loses nothing: the broker
delivers the message again (to this bridge or another) and the idempotent stores
downstream make the duplicate harmless.

Persistent sessions have one consequence to operate by: a bridge's session stays a member
of the shared group while it is away, and the broker keeps queueing its share of the
messages for it (measured on Mosquitto 2.0). A bridge that restarts under the same client
id picks them up; a bridge retired for good must have its session ended (start a bridge
under its client id once more), or its share waits until the session expires (7 days).
Give each bridge a stable client id (e.g. a StatefulSet pod name): HEMMON_BRIDGE_CLIENT_ID.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hemmon import metrics
from hemmon.errors import BrokerUnavailable
from hemmon.settings import MqttAddress

from .mqtt import Incoming, MqttSource
from .topics import PREFIX, READINGS_SUBSCRIPTION, STATUS_SUBSCRIPTION

log = logging.getLogger(__name__)

SHARE_GROUP = "hemmon-bridge"
RAW_TOPIC = "hemmon.raw"


class KafkaUnavailable(BrokerUnavailable):
    """The Kafka cluster named by HEMMON_KAFKA_BOOTSTRAP cannot be reached."""


def envelope(topic: str, payload: bytes, received_at: datetime) -> bytes:
    """A Kafka value carrying an MQTT message as it arrived."""
    return json.dumps({"topic": topic, "received_at": received_at.isoformat(),
                       "payload": base64.b64encode(payload).decode()}).encode()


def open_envelope(value: bytes) -> tuple[str, bytes, datetime]:
    """(topic, payload, received_at) from a Kafka value; raises ValueError."""
    data = json.loads(value)
    return (str(data["topic"]), base64.b64decode(data["payload"]),
            datetime.fromisoformat(data["received_at"]))


def device_key(topic: str) -> bytes:
    """The partition key: the device a topic names (the topic itself when it names none)."""
    parts = topic.split("/")
    if len(parts) >= 4 and "/".join(parts[:3]) == PREFIX:
        return parts[3].encode()
    return topic.encode()


class Bridge:
    """MQTT in, Kafka out; `start()` fails fast, naming the setting, when either is away."""

    def __init__(self, mqtt: MqttAddress, bootstrap: str, *, kafka_topic: str = RAW_TOPIC,
                 client_id: str = "hemmon-bridge", share_group: str = SHARE_GROUP,
                 batch_max: int = 500,
                 batch_wait_ms: int = 20,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._bootstrap = bootstrap
        self._kafka_topic = kafka_topic
        self._batch_max = batch_max
        self._batch_wait = batch_wait_ms / 1000
        self.source = MqttSource(
            mqtt, client_id=client_id, clock=clock, receive_maximum=max(2 * batch_max, 100),
            subscriptions=(f"$share/{share_group}/{READINGS_SUBSCRIPTION}",
                           f"$share/{share_group}/{STATUS_SUBSCRIPTION}"),
        )
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever,
                                             name="hemmon-bridge-kafka", daemon=True)
        self._producer: AIOKafkaProducer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hemmon-bridge", daemon=True)

    def _call(self, coroutine: object, timeout: float) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    async def _start_producer(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5, request_timeout_ms=15000)
        await self._producer.start()

    def start(self) -> None:
        self._loop_thread.start()
        try:
            self._call(self._start_producer(), timeout=30)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaUnavailable(
                f"cannot reach Kafka at HEMMON_KAFKA_BOOTSTRAP ({self._bootstrap}): {exc}"
            ) from exc
        self.source.start()
        metrics.BRIDGE_QUEUE.set_function(self.source.messages.qsize)
        metrics.MQTT_CONNECTED.set_function(lambda: 1 if self.source.connected else 0)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self.source.connected and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.source.stop()
        if self._producer is not None:
            self._call(self._producer.stop(), timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _send(self, batch: list[Incoming]) -> None:
        assert self._producer is not None
        pending = [
            await self._producer.send(self._kafka_topic, key=device_key(m.topic),
                                      value=envelope(m.topic, m.payload, m.received_at))
            for m in batch
        ]
        await asyncio.gather(*pending)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.source.take(self._batch_max, self._batch_wait)
            if not batch:
                continue
            delay = 0.5
            while not self._stop.is_set():
                try:
                    self._call(self._send(batch), timeout=60)
                    break
                except Exception as exc:  # not acknowledged: kept by the broker, retried here
                    metrics.BRIDGE_FAILURES.inc()
                    log.error("Kafka did not take a batch of %d (%s); retrying", len(batch), exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 10.0)
            else:
                return
            for message in batch:
                self.source.ack(message)
            metrics.BRIDGED.inc(len(batch))
