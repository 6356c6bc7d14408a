"""The MQTT -> Kafka bridge on a real Mosquitto and a real Apache Kafka (KRaft)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from hemmon.ingest.bridge import Bridge, open_envelope
from hemmon.settings import MqttAddress

from ..services import Kafka, free_port, wait_for_port


def payload(message_id: str) -> bytes:
    return json.dumps({"schema": "hemmon.reading/1", "message_id": message_id,
                       "measured_at": datetime.now(UTC).isoformat(),
                       "measurements": [{"type": "heart_rate", "value": 70, "unit": "/min"}]
                       }).encode()


def publisher(address: MqttAddress) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(100)
    client.connect(address.host, address.port)
    client.loop_start()
    return client


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 90
            ) -> list[tuple[bytes, str, bytes]]:
    """(key, MQTT topic, payload) of every record until `expected` distinct payloads are
    in and every partition is read to its end. No consumer group: nothing to coordinate."""

    async def run() -> list[tuple[bytes, str, bytes]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[tuple[bytes, str, bytes]] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        mqtt_topic, body, _ = open_envelope(record.value)
                        found.append((record.key, mqtt_topic, body))
                partitions = consumer.assignment()
                ends = await consumer.end_offsets(list(partitions))
                read_all = all([await consumer.position(p) >= ends[p] for p in partitions])
                if len({p for _, _, p in found}) >= expected and read_all:
                    break
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def test_every_message_reaches_kafka_keyed_by_device(mqtt: MqttAddress,
                                                     kafka_broker: Kafka) -> None:
    topic = f"raw-{uuid.uuid4().hex[:6]}"
    # a share group of its own: a stopped bridge's persistent session stays a member
    bridge = Bridge(mqtt, kafka_broker.bootstrap, kafka_topic=topic,
                    client_id=f"bridge-{uuid.uuid4().hex[:6]}",
                    share_group=f"group-{uuid.uuid4().hex[:6]}")
    bridge.start()
    client = publisher(mqtt)
    try:
        infos = [client.publish(f"hemmon/v1/devices/dev-{i % 20:03d}/readings",
                                payload(f"m-{i}"), qos=1) for i in range(1000)]
        client.publish("hemmon/v1/devices/dev-007/status", b'{"online": true}', qos=1)
        for info in infos:
            info.wait_for_publish(30)
        records = consume(kafka_broker.bootstrap, topic, expected=1001)
    finally:
        client.disconnect()
        client.loop_stop()
        bridge.stop()
    bodies = {body for _, _, body in records}
    assert len(bodies) == 1001
    for key, mqtt_topic, _ in records:
        assert mqtt_topic.split("/")[3].encode() == key
    assert any(t.endswith("/status") for _, t, _ in records)


def test_a_bridge_killed_mid_stream_loses_nothing(mqtt: MqttAddress,
                                                  kafka_broker: Kafka) -> None:
    topic = f"raw-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")}
    env.update({"HEMMON_MQTT_URL": f"mqtt://{mqtt.host}:{mqtt.port}",
                "HEMMON_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "HEMMON_KAFKA_TOPIC": topic,
                "HEMMON_BRIDGE_CLIENT_ID": f"bridge-{uuid.uuid4().hex[:6]}",
                "HEMMON_BRIDGE_GROUP": f"group-{uuid.uuid4().hex[:6]}"})

    def start() -> subprocess.Popen[bytes]:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "hemmon.cli", "bridge"],
                                   env={**env, "HEMMON_HTTP_PORT": str(port)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, timeout=60)
        return process

    bridge = start()
    client = publisher(mqtt)
    sent = 3000
    published = threading.Event()

    def publish() -> None:
        for i in range(sent):
            client.publish(f"hemmon/v1/devices/dev-{i % 50:03d}/readings", payload(f"k-{i}"),
                           qos=1).wait_for_publish(30)
            if i % 100 == 0:
                time.sleep(0.02)
        published.set()

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        time.sleep(0.8)
        bridge.send_signal(signal.SIGKILL)  # no goodbye: in-flight messages unacknowledged
        bridge.wait(10)
        time.sleep(1.0)
        bridge = start()  # same client id: the persistent session is still there
        assert published.wait(120)
        records = consume(kafka_broker.bootstrap, topic, expected=sent)
    finally:
        thread.join(30)
        client.disconnect()
        client.loop_stop()
        bridge.terminate()
        bridge.wait(20)
    bodies = [body for _, _, body in records]
    assert {json.loads(b)["message_id"] for b in bodies} == {f"k-{i}" for i in range(sent)}
    print(f"{sent} published, {len(bodies)} records in Kafka "
          f"({len(bodies) - len(set(bodies))} duplicates after the crash)")
