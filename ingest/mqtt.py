"""The MQTT side of ingest (paho-mqtt 2): messages in, acknowledgements and feedback out.

Messages are acknowledged by hand, only after the pipeline has committed them, in a
persistent session: a crash before the commit means the broker delivers them again.
A message taken in an earlier connection is never acknowledged in a later one (packet ids
are reused); the broker redelivers it and the idempotent store makes that harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hemmon import errors
from hemmon.settings import MqttAddress

from .topics import READINGS_SUBSCRIPTION, STATUS_SUBSCRIPTION

log = logging.getLogger(__name__)


class BrokerUnavailable(errors.BrokerUnavailable):
    """The broker named by HEMMON_MQTT_URL cannot be reached or refused us."""


class Incoming:
    """A message as paho gave it, with what is needed to acknowledge it later."""

    __slots__ = ("mid", "payload", "qos", "received_at", "session", "topic")

    def __init__(self, msg: mqtt.MQTTMessage, session: int, received_at: datetime) -> None:
        self.topic = msg.topic
        self.payload = bytes(msg.payload)
        self.mid = msg.mid
        self.qos = msg.qos
        self.session = session
        self.received_at = received_at


class MqttSource:
    """A subscriber feeding a queue, with manual acknowledgement and a publisher side."""

    def __init__(
        self,
        address: MqttAddress,
        *,
        client_id: str,
        subscriptions: tuple[str, ...] = (READINGS_SUBSCRIPTION, STATUS_SUBSCRIPTION),
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        receive_maximum: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.address = address
        self._clock = clock
        self.messages: queue.Queue[Incoming] = queue.Queue()
        self._subscriptions = subscriptions
        self._protocol = protocol
        self._session = 0
        self._connected = threading.Event()
        self._refused: str | None = None
        self._stopping = False
        kwargs: dict[str, Any] = {}
        if protocol is not MQTTProtocolVersion.MQTTv5:
            kwargs["clean_session"] = False
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            manual_ack=True,
            **kwargs,
        )
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._receive_maximum = receive_maximum

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; raises BrokerUnavailable naming HEMMON_MQTT_URL."""
        where = f"{self.address.host}:{self.address.port}"
        properties = None
        clean_start: Any = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self._protocol is MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 7 * 24 * 3600
            properties.ReceiveMaximum = self._receive_maximum
            clean_start = False
        try:
            self._client.connect(self.address.host, self.address.port, keepalive=30,
                                 clean_start=clean_start, properties=properties)
        except OSError as exc:
            raise BrokerUnavailable(
                f"cannot connect to the MQTT broker at HEMMON_MQTT_URL ({where}): {exc}"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(timeout) or self._refused:
            self._client.loop_stop()
            reason = self._refused or f"no answer within {timeout:.0f} s"
            raise BrokerUnavailable(f"MQTT broker at HEMMON_MQTT_URL ({where}) refused: {reason}")

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def take(self, most: int, wait: float) -> list[Incoming]:
        """A batch: the first message (waiting up to 0.2 s), then whatever else arrives
        within `wait` seconds, at most `most` messages."""
        try:
            first = self.messages.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + wait
        while len(batch) < most:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self.messages.get(timeout=remaining) if remaining > 0
                             else self.messages.get_nowait())
            except queue.Empty:
                break
        return batch

    def ack(self, message: Incoming) -> None:
        """Acknowledge a committed message, if it came in the current session."""
        if message.qos > 0 and message.session == self._session:
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self._client.publish(topic, payload, qos=qos)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._connected.set()
            log.error("MQTT connection refused: %s", reason)
            return
        self._session += 1
        if self._subscriptions:  # none for a role that only publishes feedback
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._connected.set()
        log.info("MQTT connected (session present: %s)", flags.session_present)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._connected.clear()
        if not self._refused and not self._stopping:
            log.warning("MQTT disconnected: %s; reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Incoming(msg, self._session, self._clock()))
