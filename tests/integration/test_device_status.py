"""Device status and device notices through a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hemmon.settings import MqttAddress

from .harness import Clock, Running, running_service, wait_until


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def running(roster_db: str, mqtt: MqttAddress, clock: Clock) -> Iterator[Running]:
    with running_service(roster_db, mqtt, clock=clock, sweep_seconds=0.2) as service:
        yield service


def device_client(address: MqttAddress, device_id: str, *, will: bool = False) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"{device_id}-{uuid.uuid4().hex[:6]}")
    if will:
        client.will_set(f"hemmon/v1/devices/{device_id}/status", '{"online": false}', qos=1,
                        retain=True)
    client.connect(address.host, address.port, keepalive=5)
    client.loop_start()
    return client


def status(database_url: str, device_id: str) -> tuple[object, ...] | None:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT online, battery FROM device_status WHERE device_id = %s",
                            (device_id,)).fetchone()


def notices(running: Running) -> list[dict[str, object]]:
    return [a for a in running.get("/api/v1/alerts").json()["alerts"]
            if a["category"] == "device"]


def test_status_and_last_will_are_kept(running: Running, mqtt: MqttAddress,
                                       roster_db: str) -> None:
    device = device_client(mqtt, "dev-0001", will=True)
    device.publish("hemmon/v1/devices/dev-0001/status", json.dumps(
        {"online": True, "battery": 64}), qos=1, retain=True).wait_for_publish(5)
    wait_until(lambda: status(roster_db, "dev-0001") == (True, 64.0), what="status stored")
    device._sock_close()  # vanish without DISCONNECT: the broker publishes the last will
    device.loop_stop()
    wait_until(lambda: status(roster_db, "dev-0001") == (False, 64.0), timeout=30,
               what="the last will stored")


def test_a_silent_device_gets_one_notice_that_clears_when_it_is_heard_again(
    running: Running, clock: Clock, mqtt: MqttAddress
) -> None:
    clock.offset = timedelta(hours=25)  # nothing heard since the roster was loaded
    wait_until(lambda: len(notices(running)) == 2, what="a notice per silent device")
    wait_until(lambda: running.metric("hemmon_silent_devices") == 2, what="the gauge")
    first = notices(running)
    assert {n["rule"] for n in first} == {"device:silent:dev-0001", "device:silent:dev-0002"}
    assert all(n["route"] == "fast_vardkontakt" and n["level"] == "yellow" for n in first)
    assert all(n["occurrences"] == 1 for n in notices(running))  # sweeps add nothing

    device = device_client(mqtt, "dev-0001")
    try:
        device.publish("hemmon/v1/devices/dev-0001/status", '{"online": true}',
                       qos=1).wait_for_publish(5)
    finally:
        device.disconnect()
        device.loop_stop()
    wait_until(lambda: [n["rule"] for n in notices(running)] == ["device:silent:dev-0002"],
               what="dev-0001's notice to clear")
    cleared = next(n for n in first if n["rule"] == "device:silent:dev-0001")
    history = running.get(f"/api/v1/alerts/{cleared['id']}").json()["history"]
    assert [e["action"] for e in history] == ["opened", "resolve"]
    assert history[1]["actor"] == "hemmon"


def test_a_low_battery_is_a_notice_and_never_a_clinical_alert(
    running: Running, mqtt: MqttAddress
) -> None:
    device = device_client(mqtt, "dev-0002")
    try:
        device.publish("hemmon/v1/devices/dev-0002/status", json.dumps(
            {"online": True, "battery": 12}), qos=1).wait_for_publish(5)
        wait_until(lambda: [n["rule"] for n in notices(running)] == ["device:battery:dev-0002"],
                   what="a battery notice")
        device.publish("hemmon/v1/devices/dev-0002/status", json.dumps(
            {"online": True, "battery": 25}), qos=1).wait_for_publish(5)
        device.publish("hemmon/v1/devices/dev-0002/status", json.dumps(
            {"online": True, "battery": 90}), qos=1).wait_for_publish(5)
        wait_until(lambda: notices(running) == [], what="the battery notice to clear")
    finally:
        device.disconnect()
        device.loop_stop()
    assert [a for a in running.get("/api/v1/alerts", status="resolved").json()["alerts"]
            if a["category"] == "clinical"] == []


def test_a_bad_status_message_is_kept_as_a_rejection(running: Running, mqtt: MqttAddress) -> None:
    device = device_client(mqtt, "dev-0002")
    try:
        device.publish("hemmon/v1/devices/dev-0002/status", b"battery low!",
                       qos=1).wait_for_publish(5)
    finally:
        device.disconnect()
        device.loop_stop()
    wait_until(lambda: running.get("/api/v1/rejections").json()["rejections"],
               what="the rejection")
    [rejection] = running.get("/api/v1/rejections").json()["rejections"]
    assert (rejection["reason"], rejection["topic"]) == (
        "schema_invalid", "hemmon/v1/devices/dev-0002/status")
