"""What the FHIR export and the journal push load and write (the decisions: fhir_export.py).

The journal feeder keeps a cursor on `alert_events`: each round it reads the events after
it, writes one outbox row per event that goes to the journal (keyed by the event, so a
row is written once however often it is read) and moves the cursor, all in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hemmon.ingest.model import MeasurementType

from .fhir_export import ExportAlert, ExportEvent, ExportReading

Connection = psycopg.Connection[Any]
JOURNAL_KIND = "journal"

_ALERT_SELECT = (
    "SELECT id, patient_id, rule, level, category, status, opened_at, explanation,"
    " resolved_at, outcome, measurement FROM alerts"
)


def _alert(row: Mapping[str, Any]) -> ExportAlert:
    return ExportAlert(**{key: row[key] for key in ExportAlert.__slots__})


def _event(row: Mapping[str, Any]) -> ExportEvent:
    return ExportEvent(id=int(row["id"]), at=row["at"], actor=row["actor"],
                       action=row["action"], note=row["note"])


def readings(conn: Connection, patient_id: str, types: Collection[MeasurementType] | None,
             since: datetime | None, until: datetime | None,
             limit: int = 2000) -> list[ExportReading]:
    """A patient's readings in a time range, oldest first (the newest `limit` of them)."""
    kinds = sorted(t.value for t in types) if types is not None else None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT patient_id, device_id, type, value, measured_at, message_key AS key,"
            " manual FROM readings WHERE patient_id = %s"
            " AND (%s::text[] IS NULL OR type = ANY(%s))"
            " AND (%s::timestamptz IS NULL OR measured_at >= %s)"
            " AND (%s::timestamptz IS NULL OR measured_at < %s)"
            " ORDER BY measured_at DESC, device_id, message_key, type LIMIT %s",
            (patient_id, kinds, kinds, since, since, until, until, limit),
        )
        rows = cur.fetchall()
    rows.reverse()
    return [ExportReading(patient_id=r["patient_id"], device_id=r["device_id"],
                          type=MeasurementType(r["type"]), value=float(r["value"]),
                          measured_at=r["measured_at"], key=r["key"], manual=r["manual"])
            for r in rows]


def alerts(conn: Connection, patient_id: str, statuses: Sequence[str],
           limit: int = 500) -> list[ExportAlert]:
    """A patient's alerts with one of the statuses, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_ALERT_SELECT + " WHERE patient_id = %s AND status = ANY(%s)"
                    " ORDER BY opened_at DESC, id DESC LIMIT %s",
                    (patient_id, list(statuses), limit))
        return [_alert(row) for row in cur.fetchall()]


def events(conn: Connection, alert_ids: Sequence[int],
           actions: Collection[str]) -> dict[int, list[ExportEvent]]:
    """The alerts' events of the given actions, oldest first, by alert."""
    found: dict[int, list[ExportEvent]] = {alert_id: [] for alert_id in alert_ids}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT id, alert_id, at, actor, action, note FROM alert_events"
                    " WHERE alert_id = ANY(%s) AND action = ANY(%s) ORDER BY at, id",
                    (list(alert_ids), sorted(actions)))
        for row in cur.fetchall():
            found[int(row["alert_id"])].append(_event(row))
    return found


def personnummer(conn: Connection, patient_ids: Collection[str]) -> dict[str, str]:
    """The personnummer of those patients that have one in the roster (the one table that
    holds them, `patient_identity`); the others are exported under their pseudonym."""
    rows = conn.execute(
        "SELECT patient_id, personnummer FROM patient_identity"
        " WHERE patient_id = ANY(%s) AND personnummer IS NOT NULL",
        (sorted(patient_ids),)).fetchall()
    return {str(patient): str(number) for patient, number in rows}


def journal_cursor(conn: Connection) -> int:
    """The id of the last alert event the journal feeder has queued (locked till commit)."""
    row = conn.execute("SELECT last_event_id FROM journal_cursor FOR UPDATE").fetchone()
    assert row is not None, "migration 008 inserts the cursor row"
    return int(row[0])


def events_after(conn: Connection, after: int, actions: Collection[str],
                 limit: int = 500) -> list[tuple[ExportAlert, ExportEvent]]:
    """Events of the given actions after the cursor, with their alerts, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT id, alert_id, at, actor, action, note FROM alert_events"
                    " WHERE id > %s AND action = ANY(%s) ORDER BY id LIMIT %s",
                    (after, sorted(actions), limit))
        rows = cur.fetchall()
        cur.execute(_ALERT_SELECT + " WHERE id = ANY(%s)",
                    (sorted({int(row["alert_id"]) for row in rows}),))
        by_id = {int(row["id"]): _alert(row) for row in cur.fetchall()}
    return [(by_id[int(row["alert_id"])], _event(row)) for row in rows]


def opening_messages(conn: Connection,
                     alert_ids: Collection[int]) -> dict[int, list[ExportReading]]:
    """By alert, the readings of the message whose reading opened it (its earliest
    finding's; none for a missed measurement or a device notice)."""
    found: dict[int, list[ExportReading]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT f.alert_id, m.patient_id, m.device_id, m.type, m.value, m.measured_at,"
            " m.message_key AS key, m.manual"
            " FROM (SELECT DISTINCT ON (alert_id) alert_id, patient_id, reading_key,"
            "       measured_at FROM findings WHERE alert_id = ANY(%s)"
            "       ORDER BY alert_id, measured_at, found_at) f"
            " JOIN readings r ON r.patient_id = f.patient_id AND r.measured_at = f.measured_at"
            "  AND r.device_id || '/' || r.message_key || '/' || r.type = f.reading_key"
            " JOIN readings m ON m.device_id = r.device_id AND m.message_key = r.message_key"
            "  AND m.measured_at = r.measured_at"
            " ORDER BY f.alert_id, m.type",
            (sorted(alert_ids),))
        for r in cur.fetchall():
            found.setdefault(int(r["alert_id"]), []).append(ExportReading(
                patient_id=r["patient_id"], device_id=r["device_id"],
                type=MeasurementType(r["type"]), value=float(r["value"]),
                measured_at=r["measured_at"], key=r["key"], manual=r["manual"]))
    return found


def move_journal_cursor(conn: Connection, last_event_id: int) -> None:
    conn.execute("UPDATE journal_cursor SET last_event_id = %s", (last_event_id,))


def enqueue_journal(conn: Connection, alert_id: int, key: str, bundle: dict[str, Any],
                    now: datetime) -> None:
    """An outbox row for the journal; the same key twice is one row."""
    conn.execute(
        "INSERT INTO notifications (alert_id, kind, route, idempotency_key, payload,"
        " created_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING",
        (alert_id, JOURNAL_KIND, JOURNAL_KIND, key, Jsonb(bundle), now, now),
    )


def due_notifications(conn: Connection, now: datetime, kinds: Collection[str],
                      limit: int = 20) -> list[dict[str, Any]]:
    """Due outbox rows of the given kinds (locked for this sender), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, kind, idempotency_key, payload, attempts FROM notifications n"
            " WHERE delivered_at IS NULL AND next_attempt_at <= %s AND kind = ANY(%s)"
            # a journal keeps an alert's events in their order: the next waits for the one
            # before it (a late 'opened' must not set a resolved Flag active again)
            " AND (kind <> 'journal' OR NOT EXISTS (SELECT 1 FROM notifications e"
            "  WHERE e.kind = 'journal' AND e.alert_id = n.alert_id"
            "  AND e.delivered_at IS NULL AND e.id < n.id))"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, sorted(kinds), limit),
        )
        return cur.fetchall()
