"""Notifications to the region's pager or SMS gateway: a signed, retried, idempotent webhook.

Each notification is a row in the outbox, written with the alert it is about. The
notifier sends it as a JSON POST with an `Idempotency-Key` (the same on every retry, so the
gateway acts once) and an HMAC-SHA256 signature over the timestamp and body
(`X-Hemmon-Signature: sha256=<hex>`, `X-Hemmon-Timestamp`). A failure is retried with a
growing delay and stays visible (`hemmon_notification_failures_total`, the admin API).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any, Protocol

import httpx


class DeliveryError(Exception):
    """The gateway did not take the notification (it is retried)."""


class Notifier(Protocol):
    def deliver(self, key: str, payload: dict[str, Any]) -> None:
        """Hand one notification to its recipient; raises DeliveryError."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a gateway checks: HMAC-SHA256 of "<timestamp>.<body>"."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... at most 10 minutes between tries."""
    return timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 600))


class WebhookNotifier:
    """POSTs notifications to one URL (a journal's FHIR base takes `application/fhir+json`)."""

    def __init__(self, url: str, secret: str, *, timeout: float = 5.0,
                 content_type: str = "application/json") -> None:
        self._url = url
        self._secret = secret
        self._content_type = content_type
        self._client = httpx.Client(timeout=timeout)

    def deliver(self, key: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": self._content_type,
            "Idempotency-Key": key,
            "X-Hemmon-Timestamp": timestamp,
            "X-Hemmon-Signature": sign(self._secret, timestamp, body),
        }
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}") from exc
        if not response.is_success:
            raise DeliveryError(f"HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()
