"""What the worklist loads and writes: patient identity, notes, assignments, feedback sent.

`patient_identity` is the only table with names and personnummer; nothing here logs them.
The decisions (who may see them, who may take an alert) are in worklist.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .worklist import Assignable, PatientScope

Connection = psycopg.Connection[Any]


def forget_identity(conn: Connection, patient_id: str) -> int:
    """Remove who a patient is; how many rows changed."""
    return conn.execute("DELETE FROM patient_identity WHERE patient_id = %s",
                        (patient_id,)).rowcount


def save_identity(conn: Connection, patient_id: str, name: str | None,
                  personnummer: str | None) -> int:
    """Store who a patient is; how many rows changed."""
    return conn.execute(
        "INSERT INTO patient_identity (patient_id, name, personnummer) VALUES (%s, %s, %s)"
        " ON CONFLICT (patient_id) DO UPDATE SET name = EXCLUDED.name,"
        " personnummer = EXCLUDED.personnummer"
        " WHERE patient_identity.name IS DISTINCT FROM EXCLUDED.name"
        " OR patient_identity.personnummer IS DISTINCT FROM EXCLUDED.personnummer",
        (patient_id, name, personnummer),
    ).rowcount


def identities(conn: Connection, patient_ids: Sequence[str]
               ) -> dict[str, tuple[str | None, str | None]]:
    """(name, personnummer) of those patients that have them."""
    rows = conn.execute(
        "SELECT patient_id, name, personnummer FROM patient_identity"
        " WHERE patient_id = ANY(%s)", (list(patient_ids),)).fetchall()
    return {str(r[0]): (r[1], r[2]) for r in rows}


def patient_scopes(conn: Connection, patient_ids: Sequence[str]) -> dict[str, PatientScope]:
    """The facts that decide who may see each patient's identity."""
    rows = conn.execute(
        "SELECT p.id, p.unit_id, p.mobile_team_id, EXISTS (SELECT 1 FROM alerts a"
        "  WHERE a.patient_id = p.id AND a.status <> 'resolved'"
        "  AND (a.route = 'mobile_team' OR a.assignee = 'mobile_team'))"
        " FROM patients p WHERE p.id = ANY(%s)", (list(patient_ids),)).fetchall()
    return {str(r[0]): PatientScope(str(r[1]), r[2], bool(r[3])) for r in rows}


def patient_card(conn: Connection, patient_id: str) -> dict[str, Any] | None:
    """The patient's card without identity: unit, contacts and groups."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT p.id AS patient_id, p.unit_id, u.name AS unit_name,"
            " p.fast_vardkontakt, c.name AS fast_vardkontakt_name,"
            " p.mobile_team_id AS mobile_team, t.name AS mobile_team_name, p.groups"
            " FROM patients p JOIN units u ON u.id = p.unit_id"
            " JOIN clinicians c ON c.id = p.fast_vardkontakt"
            " LEFT JOIN teams t ON t.id = p.mobile_team_id WHERE p.id = %s", (patient_id,))
        return cur.fetchone()


def assignable(conn: Connection, alert_id: int, assignee: str) -> Assignable:
    """The facts that decide whether this alert may go to this assignee."""
    row = conn.execute(
        "SELECT p.unit_id, p.mobile_team_id IS NOT NULL,"
        " (SELECT unit_id FROM clinicians WHERE id = %s), a.status = 'resolved'"
        " FROM alerts a JOIN patients p ON p.id = a.patient_id WHERE a.id = %s",
        (assignee, alert_id)).fetchone()
    if row is None:
        raise LookupError(f"alert {alert_id}")
    return Assignable(str(row[0]), bool(row[1]), row[2], bool(row[3]))


def clinicians_of_unit(conn: Connection, unit_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT id, name FROM clinicians WHERE unit_id = %s ORDER BY name",
                    (unit_id,))
        return cur.fetchall()


def add_note(conn: Connection, alert_id: int, actor: str, text: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO alert_events (alert_id, at, actor, action, note)"
        " VALUES (%s, %s, %s, 'note', %s)", (alert_id, now, actor, text))


def assign(conn: Connection, alert_id: int, assignee: str, actor: str,
           now: datetime) -> None:
    conn.execute("UPDATE alerts SET assignee = %s, assigned_at = %s WHERE id = %s",
                 (assignee, now, alert_id))
    conn.execute(
        "INSERT INTO alert_events (alert_id, at, actor, action, note)"
        " VALUES (%s, %s, %s, 'assigned', %s)", (alert_id, now, actor, assignee))


def notes(conn: Connection, alert_id: int) -> list[dict[str, Any]]:
    """The note thread of an alert, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT at, actor, note AS text FROM alert_events"
                    " WHERE alert_id = %s AND action = 'note' ORDER BY at, id", (alert_id,))
        return cur.fetchall()


def feedback_sent(conn: Connection, patient_id: str, since: datetime,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Each message of the patient since a time, with the worst level its own readings
    broke (NULL: none) or the reason it was rejected: what its feedback said."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM ("
            " SELECT min(r.received_at) AS received_at, max(r.measured_at) AS measured_at,"
            "  r.device_id, r.message_key, NULL::text AS rejected,"
            "  (SELECT CASE WHEN bool_or(f.level = 'red') THEN 'red'"
            "          WHEN bool_or(f.level = 'yellow') THEN 'yellow' END"
            "   FROM findings f WHERE f.patient_id = r.patient_id"
            "   AND starts_with(f.reading_key, r.device_id || '/' || r.message_key || '/'))"
            "  AS level"
            " FROM readings r WHERE r.patient_id = %s AND r.received_at >= %s"
            " GROUP BY r.patient_id, r.device_id, r.message_key"
            " UNION ALL"
            " SELECT received_at, NULL, device_id, message_key, reason, NULL FROM rejections"
            " WHERE patient_id = %s AND received_at >= %s"
            ") AS sent ORDER BY received_at DESC LIMIT %s",
            (patient_id, since, patient_id, since, limit))
        return cur.fetchall()
