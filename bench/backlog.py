"""A backlog queued in Mosquitto for stopped consumers, so a drain measures the consumer.

A Python publisher is slower than the consumers it should feed (infrastructure.md): a
backlog is instead queued for each consumer's persistent session while the consumer is
stopped, by `mosquitto_pub -l` (C; one process per device topic, many at once), and the
consumer is then started and timed until it has drained it. Publishing is not timed.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hemmon.ingest.topics import READINGS_SUBSCRIPTION
from tests.services import Mosquitto, mosquitto, require

PUBLISHERS = 64  # mosquitto_pub processes at once: each spends most of its life waiting
BARE_CLIENT_ID = "bench-bare-paho"
RECEIVE_MAXIMUM = 1000  # as hemmon's own subscriber asks for


@contextlib.contextmanager
def drain_broker() -> Iterator[Mosquitto]:
    """Mosquitto on a private port, in memory, queueing without a limit for sessions that
    are away (the default of 1,000 drops a backlog)."""
    with mosquitto(queue="max_queued_messages 0\nmax_queued_bytes 0\n") as broker:
        yield broker


def _session_client(client_id: str) -> tuple[mqtt.Client, Properties]:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 24 * 3600
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    return client, properties


def prime_session(port: int, client_id: str = BARE_CLIENT_ID,
                  topic: str = READINGS_SUBSCRIPTION) -> None:
    """Create a persistent session subscribed to `topic` (QoS 1), then leave it, so the
    broker queues what comes for it."""
    client, properties = _session_client(client_id)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port, clean_start=False, properties=properties)
    client.loop_start()
    client.subscribe(topic, qos=1)
    if not subscribed.wait(10):
        raise TimeoutError(f"no SUBACK for {client_id}")
    client.disconnect()
    client.loop_stop()


def publish_backlog(port: int, by_topic: Mapping[str, list[bytes]]) -> dict[str, float]:
    """Queue every payload at QoS 1, one `mosquitto_pub -l` per topic (a payload per
    line), PUBLISHERS at once; returns the publisher's rate (not part of any timing)."""
    binary = require("mosquitto_pub", "./scripts/setup installs Debian's mosquitto-clients")

    def publish(item: tuple[str, list[bytes]]) -> None:
        topic, payloads = item
        if any(b"\n" in p for p in payloads):
            raise ValueError("a payload for mosquitto_pub -l must fit on one line")
        subprocess.run([binary, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1",
                        "-M", "1000", "-t", topic, "-l"], input=b"\n".join(payloads) + b"\n",
                       check=True, capture_output=True, timeout=300)

    count = sum(len(p) for p in by_topic.values())
    started = time.perf_counter()
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        list(pool.map(publish, by_topic.items()))
    seconds = time.perf_counter() - started
    return {"messages": count, "seconds": seconds, "messages_per_s": count / seconds}


def bare_drain(port: int, expected: int, timeout: float = 600,
               client_id: str = BARE_CLIENT_ID) -> dict[str, Any]:
    """Reconnect the primed session with a bare paho client that only counts (QoS 1,
    acknowledged as paho does by default) and time until `expected` messages came: the
    ceiling of receiving alone."""
    client, properties = _session_client(client_id)
    received = 0
    done = threading.Event()

    def on_message(*_: Any) -> None:
        nonlocal received
        received += 1
        if received >= expected:
            done.set()

    client.on_message = on_message
    cpu = time.process_time()  # this process does nothing else meanwhile
    started = time.perf_counter()
    client.connect("127.0.0.1", port, clean_start=False, properties=properties)
    client.loop_start()
    finished = done.wait(timeout)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    time.sleep(0.2)  # leave the last acknowledgements time to go out
    client.disconnect()
    client.loop_stop()
    if not finished:
        raise TimeoutError(f"the bare client received {received} of {expected} messages")
    return {"messages": received, "seconds": seconds, "messages_per_s": received / seconds,
            "cpu_seconds": cpu}
