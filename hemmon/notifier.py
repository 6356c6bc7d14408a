"""The notifier thread: sends the outbox to the webhook, retrying with a growing delay."""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from hemmon.alerts.notify import DeliveryError, Notifier, backoff
from hemmon.alerts.storage import due_notifications, notification_failed, notification_sent

from . import metrics
from .db import connect
from .pipeline import Clock

log = logging.getLogger(__name__)


class NotifierThread(threading.Thread):
    """Delivers due notifications every `interval` seconds, on its own connection."""

    def __init__(self, database_url: str, notifier: Notifier, clock: Clock,
                 interval: float = 1.0) -> None:
        super().__init__(name="hemmon-notifier", daemon=True)
        self._database_url = database_url
        self._notifier = notifier
        self._clock = clock
        self._interval = interval
        self.stopped = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None

    def run(self) -> None:
        while not self.stopped.wait(self._interval):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._database_url)
                self.send_due(self._conn)
            except Exception:  # the outbox keeps everything: log and try again
                log.exception("notifier round failed")
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
        if self._conn is not None:
            self._conn.close()

    def send_due(self, conn: psycopg.Connection[Any]) -> int:
        """One round: every due notification tried once; returns how many were sent."""
        sent = 0
        with conn.transaction():
            for row in due_notifications(conn, self._clock()):
                try:
                    self._notifier.deliver(row["idempotency_key"], row["payload"])
                except DeliveryError as exc:
                    attempts = int(row["attempts"]) + 1
                    notification_failed(conn, row["id"], str(exc),
                                        self._clock() + backoff(attempts))
                    metrics.NOTIFICATION_FAILURES.inc()
                    log.warning("notification %s not delivered (attempt %d): %s",
                                row["id"], attempts, exc)
                    continue
                notification_sent(conn, row["id"], self._clock())
                metrics.NOTIFICATIONS_SENT.inc()
                sent += 1
        return sent
