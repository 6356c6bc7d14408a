"""The notifier thread: sends the outbox, retrying with a growing delay.

Pages and escalations go to the region's pager or SMS gateway (`notifier`). Where a journal
is connected (`journal`), the thread first feeds the outbox from the alert history (each
opening, acknowledgement, resolution and note becomes one FHIR transaction Bundle, keyed
by its event) and then sends those rows to the journal, each alert's in their order.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from hemmon.alerts import fhir_store
from hemmon.alerts.fhir_export import JOURNAL_ACTIONS, FhirSystems
from hemmon.alerts.fhir_journal import journal_round
from hemmon.alerts.notify import DeliveryError, Notifier, WebhookNotifier, backoff
from hemmon.alerts.storage import notification_failed, notification_sent

from . import metrics
from .db import connect
from .pipeline import Clock
from .settings import Settings

log = logging.getLogger(__name__)
PAGE_KINDS = frozenset({"page", "escalation"})


@dataclass(frozen=True, slots=True)
class Journal:
    """Where the alert history goes, and under which identifier systems."""

    notifier: Notifier
    systems: FhirSystems
    settle: timedelta = timedelta(seconds=30)
    """How long an event may still be committing behind a later one (fhir_export)."""


class NotifierThread(threading.Thread):
    """Delivers due notifications every `interval` seconds, on its own connection."""

    def __init__(self, database_url: str, notifier: Notifier | None, clock: Clock,
                 interval: float = 1.0, *, journal: Journal | None = None) -> None:
        super().__init__(name="hemmon-notifier", daemon=True)
        self._database_url = database_url
        self._notifier = notifier
        self._journal = journal
        self._clock = clock
        self._interval = interval
        self.stopped = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None

    def run(self) -> None:
        while not self.stopped.wait(self._interval):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._database_url)
                self.feed_journal(self._conn)
                self.send_due(self._conn)
            except Exception:  # the outbox keeps everything: log and try again
                log.exception("notifier round failed")
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
        if self._conn is not None:
            self._conn.close()

    def feed_journal(self, conn: psycopg.Connection[Any]) -> int:
        """Queue the journal's Bundles for new alert events; returns how many."""
        if self._journal is None:
            return 0
        with conn.transaction():
            cursor = fhir_store.journal_cursor(conn)
            events = fhir_store.events_after(conn, cursor, JOURNAL_ACTIONS)
            numbers = fhir_store.personnummer(conn, {alert.patient_id for alert, _ in events})
            openings = fhir_store.opening_messages(
                conn, {alert.id for alert, event in events if event.action == "opened"})
            now = self._clock()
            entries, moved = journal_round(events, cursor, now, self._journal.settle,
                                           self._journal.systems, numbers, openings)
            for entry in entries:
                fhir_store.enqueue_journal(conn, entry.alert_id, entry.key, entry.bundle, now)
            if moved != cursor:
                fhir_store.move_journal_cursor(conn, moved)
        return len(entries)

    def send_due(self, conn: psycopg.Connection[Any]) -> int:
        """One round: every due notification tried once; returns how many were sent."""
        targets: dict[str, Notifier] = {}
        if self._notifier is not None:
            targets |= dict.fromkeys(PAGE_KINDS, self._notifier)
        if self._journal is not None:
            targets[fhir_store.JOURNAL_KIND] = self._journal.notifier
        sent = 0
        with conn.transaction():
            for row in fhir_store.due_notifications(conn, self._clock(), targets.keys()):
                try:
                    targets[row["kind"]].deliver(row["idempotency_key"], row["payload"])
                except DeliveryError as exc:
                    attempts = int(row["attempts"]) + 1
                    notification_failed(conn, row["id"], str(exc),
                                        self._clock() + backoff(attempts))
                    metrics.NOTIFICATION_FAILURES.inc()
                    log.warning("%s notification %s not delivered (attempt %d): %s",
                                row["kind"], row["id"], attempts, exc)
                    continue
                notification_sent(conn, row["id"], self._clock())
                metrics.NOTIFICATIONS_SENT.inc()
                sent += 1
        return sent


def journal_for(settings: Settings) -> Journal | None:
    """The journal the settings connect, if any (a half-set journal stops the start)."""
    journal = settings.journal()
    if journal is None:
        return None
    url, secret = journal
    return Journal(WebhookNotifier(url, secret, content_type="application/fhir+json"),
                   FhirSystems(settings.fhir_system))
