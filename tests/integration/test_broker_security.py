"""A real Mosquitto with the password file and ACL that `hemmon mosquitto-config` writes."""

from __future__ import annotations

import grp
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from hemmon.ingest.broker_auth import SERVICE_USER, write_broker_files
from hemmon.settings import MqttAddress

from ..services import mosquitto
from .harness import running_service, wait_until


@pytest.fixture
def secured() -> Iterator[tuple[int, dict[str, str]]]:
    """Broker files for the test roster's devices, and a broker that enforces them."""
    # not under pytest's tmp_path: Mosquitto's own user must be able to reach the files
    folder = Path(tempfile.mkdtemp(prefix="hemmon-test-broker-"))
    users = write_broker_files(folder, ["dev-0001", "dev-0002"])
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:  # Mosquitto drops to its own user, as an operator's chgrp allows
        os.chown(folder / "hemmon.passwd", -1, grp.getgrnam("mosquitto").gr_gid)
    auth = (f"allow_anonymous false\npassword_file {folder / 'hemmon.passwd'}\n"
            f"acl_file {folder / 'hemmon.acl'}\n")
    try:
        with mosquitto(auth) as broker:
            yield broker.port, users
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Client:
    """A paho MQTT v5 client that records what the broker answers."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.connack: ReasonCode | None = None
        self.suback: list[ReasonCode] = []
        self.puback: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self._event = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, what="CONNACK")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        self.connack = reason

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:  # type: ignore[no-untyped-def]
        self.suback = list(reasons)

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:  # type: ignore[no-untyped-def]
        self.puback[mid] = reason

    def publish(self, topic: str, payload: dict[str, object]) -> ReasonCode:
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        return wait_until(lambda: self.puback.get(info.mid), what="PUBACK")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reading(message_id: str, value: int) -> dict[str, object]:
    return {"schema": "hemmon.reading/1", "message_id": message_id,
            "measured_at": datetime.now(UTC).isoformat(),
            "measurements": [{"type": "heart_rate", "value": value, "unit": "/min"}]}


def test_a_wrong_password_or_no_login_is_refused(secured: tuple[int, dict[str, str]]) -> None:
    port, users = secured
    wrong = Client(port, "dev-0001", "not-the-password")
    anonymous = Client(port, None, None)
    right = Client(port, "dev-0001", users["dev-0001"])
    try:
        assert wrong.connack is not None
        assert wrong.connack.is_failure
        assert anonymous.connack is not None
        assert anonymous.connack.is_failure
        assert right.connack is not None
        assert not right.connack.is_failure
    finally:
        for client in (wrong, anonymous, right):
            client.close()


def test_a_device_cannot_speak_for_another_nor_read_its_feedback(
    secured: tuple[int, dict[str, str]], roster_db: str
) -> None:
    port, users = secured
    service = MqttAddress("127.0.0.1", port, False, SERVICE_USER, users[SERVICE_USER])
    with running_service(roster_db, service):
        device_a = Client(port, "dev-0001", users["dev-0001"])
        try:
            forged = device_a.publish("hemmon/v1/devices/dev-0002/readings", reading("forged", 61))
            assert forged.is_failure  # MQTT 5 PUBACK 0x87, not authorised
            assert forged.value == 0x87

            # Mosquitto 2.0 grants the subscription but never delivers what the ACL forbids
            device_a.client.subscribe("hemmon/v1/devices/dev-0002/feedback", qos=1)
            wait_until(lambda: device_a.suback, what="SUBACK")
            device_b = Client(port, "dev-0002", users["dev-0002"])
            try:
                device_b.client.subscribe("hemmon/v1/devices/dev-0002/feedback", qos=1)
                assert not device_b.publish("hemmon/v1/devices/dev-0002/readings",
                                            reading("b-own", 63)).is_failure
                wait_until(lambda: device_b.messages, what="B's own feedback")
            finally:
                device_b.close()

            device_a.client.subscribe("hemmon/v1/devices/dev-0001/feedback", qos=1)
            own = device_a.publish("hemmon/v1/devices/dev-0001/readings", reading("own", 62))
            assert not own.is_failure
            wait_until(lambda: device_a.messages, what="A's own feedback")
            time.sleep(0.3)
            assert [topic for topic, _ in device_a.messages] == [
                "hemmon/v1/devices/dev-0001/feedback"]
        finally:
            device_a.close()
        time.sleep(0.3)
    with psycopg.connect(roster_db) as conn:
        rows = conn.execute("SELECT device_id, message_key FROM readings").fetchall()
    assert sorted(rows) == [("dev-0001", "own"), ("dev-0002", "b-own")]
