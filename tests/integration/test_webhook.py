"""The notification webhook against a real local HTTP server that fails twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hemmon.settings import MqttAddress

from .harness import Clock, Device, running_service, wait_until
from .test_embedded_pipeline import native
from .test_escalation import at

SECRET = "gateway-secret-0123456789-abcdefghijklm"


class Gateway(ThreadingHTTPServer):
    """A pager gateway: refuses the first two calls, then acts once per idempotency key."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls = 0
        self.acted: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0


class _Handler(BaseHTTPRequestHandler):
    server: Gateway

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.calls += 1
        expected = "sha256=" + hmac.new(
            SECRET.encode(), self.headers["X-Hemmon-Timestamp"].encode() + b"." + body,
            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers["X-Hemmon-Signature"]):
            self.server.bad_signatures += 1
            self.send_response(401)
        elif self.server.calls <= 2:
            self.send_response(503)
        else:
            self.server.acted.setdefault(self.headers["Idempotency-Key"], json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_a_page_is_retried_until_delivered_and_acted_on_once(
    roster_db: str, mqtt: MqttAddress, gateway: Gateway
) -> None:
    clock = Clock()
    url = f"http://127.0.0.1:{gateway.server_address[1]}/page"
    at(clock, 2026, 11, 24, 22, 0)
    with running_service(roster_db, mqtt, clock=clock, webhook=(url, SECRET)) as running:
        device = Device(mqtt, "dev-0001")  # p-0001 has a mobile team: paged at night
        try:
            device.publish(native(("spo2", 84, "%"), measured_at=clock()))
            assert device.next_feedback()["status"] == "red"
            device.publish(native(("spo2", 83, "%"), measured_at=clock()))
            assert device.next_feedback()["status"] == "red"  # same alert: no second page
        finally:
            device.close()

        def delivered() -> bool:
            clock.offset += timedelta(seconds=30)  # let the retry delays pass
            return bool(gateway.acted)

        wait_until(delivered, timeout=30, what="the page to be delivered")
        wait_until(lambda: running.get("/api/v1/notifications").json()["notifications"][0][
            "delivered_at"] is not None, what="the outbox to record it")
        [notification] = running.get("/api/v1/notifications").json()["notifications"]
        failures = running.metric("hemmon_notification_failures_total")
    assert gateway.calls == 3
    assert gateway.bad_signatures == 0
    assert len(gateway.acted) == 1
    [page] = gateway.acted.values()
    assert (page["kind"], page["route"], page["patient_id"], page["level"]) == (
        "page", "mobile_team", "p-0001", "red")
    assert notification["attempts"] == 3
    assert notification["last_error"] is None
    assert failures >= 2
