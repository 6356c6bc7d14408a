"""A running single-process service and an MQTT device for integration tests."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hemmon.alerts import credentials
from hemmon.alerts.access import Principal
from hemmon.alerts.routing import STOCKHOLM, is_holiday
from hemmon.alerts.signin import AuthConfig
from hemmon.db import connect
from hemmon.service import Service, ServiceConfig
from hemmon.settings import MqttAddress

from ..services import free_port, metric_value

SECRET = "test-secret-key-0123456789-abcdefghij"


class Clock:
    """Real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def in_office_hours(self) -> Clock:
        """Moved to the next weekday morning (10:00, Stockholm) that is no Swedish holiday,
        after the roster was loaded: a red alert then goes to the fast vårdkontakt whatever
        the hour the tests run at. Readings must then be measured at this clock's time."""
        day = datetime.now(STOCKHOLM).date() + timedelta(days=1)
        while day.weekday() >= 5 or is_holiday(day):
            day += timedelta(days=1)
        self.offset = datetime.combine(day, time_of_day(10), STOCKHOLM) - datetime.now(UTC)
        return self


@dataclass
class Running:
    service: Service
    http: httpx.Client
    admin_token: str

    def token(self, principal: Principal, lifetime: timedelta = timedelta(days=3650)) -> str:
        """A stored service token (long-lived: tests move their clocks); the roster, not the
        principal's unit, decides its scope."""
        return issue(self.service.config.database_url, principal, lifetime)

    def login_code(self, clinician_id: str) -> str:
        """A one-time code to type on /login, as `hemmon token code` prints it."""
        with connect(self.service.config.database_url) as conn:
            return credentials.create_login_code(conn, clinician_id, now=datetime.now(UTC))

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return self.http.get(path, headers=headers, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None,
             token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return self.http.post(path, headers=headers, json=body or {})

    def put(self, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return self.http.put(path, headers=headers, json=body)

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 when absent)."""
        return metric_value(self.http.get("/metrics").text, name, **labels)


def issue(database_url: str, principal: Principal, lifetime: timedelta) -> str:
    with connect(database_url) as conn:
        return credentials.issue_token(conn, SECRET, principal, now=datetime.now(UTC),
                                       lifetime=lifetime)[1]


@contextmanager
def running_service(
    database_url: str, address: MqttAddress, *, client_id: str | None = None,
    clock: Callable[[], datetime] | None = None, sweep_seconds: float = 60.0,
    webhook: tuple[str, str] | None = None, auth: AuthConfig | None = None,
    port: int | None = None,
) -> Iterator[Running]:
    port = port or free_port()
    service = Service(ServiceConfig(
        database_url=database_url, mqtt=address, secret_key=SECRET, http_port=port,
        batch_wait_ms=5, client_id=client_id or f"hemmon-test-{uuid.uuid4().hex[:8]}",
        clock=clock or (lambda: datetime.now(UTC)), sweep_seconds=sweep_seconds,
        webhook=webhook, auth=auth or AuthConfig(SECRET, cookie_secure=False),
    ))
    service.start()
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    wait_until(lambda: answers(http), what="the inbox to answer")
    try:
        yield Running(service, http, issue(database_url, Principal(user="test-admin",
                                                                   role="admin"),
                                           timedelta(days=3650)))
    finally:
        http.close()
        service.stop()
        thread.join(10)


def answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def wait_until(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Device:
    """A paho client acting as a patient's device: publishes QoS 1, collects feedback."""

    def __init__(self, address: MqttAddress, device_id: str) -> None:
        self.device_id = device_id
        self.feedback: queue.Queue[dict[str, Any]] = queue.Queue()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"{device_id}-{uuid.uuid4().hex[:6]}")
        subscribed = threading.Event()
        self._client.on_message = lambda c, u, m: self.feedback.put(json.loads(m.payload))
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect(address.host, address.port)
        self._client.loop_start()
        self._client.subscribe(f"hemmon/v1/devices/{device_id}/feedback", qos=1)
        assert subscribed.wait(10)

    def publish(self, body: bytes | dict[str, Any], *, fmt: str | None = None,
                topic: str | None = None) -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        where = topic or f"hemmon/v1/devices/{self.device_id}/readings" + (
            f"/{fmt}" if fmt else "")
        info = self._client.publish(where, raw, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def next_feedback(self, timeout: float = 15.0) -> dict[str, Any]:
        return self.feedback.get(timeout=timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
