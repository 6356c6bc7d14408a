"""The worklist's use cases: load, let worklist.py decide, write. The inbox calls one of these
per request and writes the access log for the identities each answer shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from hemmon.ingest import storage as readings_store

from . import storage
from . import worklist_store as store
from .access import Principal
from .worklist import (
    assignment_refused,
    display_name,
    is_mine,
    may_see_identity,
    order,
    summarise_history,
    told,
)

Connection = psycopg.Connection[Any]


class Refused(Exception):
    """The action is not allowed for this alert (HTTP 409); the message is for the nurse."""


@dataclass
class Shown:
    """An answer and the patients whose name or personnummer it shows (to be logged)."""

    body: dict[str, Any]
    identities: list[str] = field(default_factory=list)


def _identify(conn: Connection, caller: Principal, rows: Sequence[dict[str, Any]]
              ) -> list[str]:
    """Add `patient_name` (and `personnummer`) to rows the caller may see them on; returns
    the patients shown."""
    ids = sorted({str(r["patient_id"]) for r in rows})
    scopes = store.patient_scopes(conn, ids)
    allowed = [p for p in ids if p in scopes and may_see_identity(caller, scopes[p])]
    found = store.identities(conn, allowed)
    for row in rows:
        name, number = found.get(str(row["patient_id"]), (None, None))
        row["patient_name"] = name
        row["personnummer"] = number
        row["patient_display"] = display_name(name, number, str(row["patient_id"]))
    return sorted(found)


def worklist(conn: Connection, caller: Principal, now: datetime, *, status: str | None,
             route: str | None, patient: str | None, mine: bool) -> Shown:
    """The caller's alerts, most urgent first, with waiting times and names where allowed."""
    rows = storage.list_alerts(conn, caller, status=status, route=route, patient=patient)
    if mine:
        rows = [r for r in rows if is_mine(r, caller)]
    ordered = order(rows, now)
    shown = _identify(conn, caller, ordered)
    return Shown({"alerts": ordered}, shown)


def alert_detail(conn: Connection, caller: Principal, alert_id: int, now: datetime) -> Shown:
    """One alert: its history as state changes (new readings summarised), its note thread,
    its readings of the last 14 days before it opened and since."""
    found = storage.get_alert(conn, caller, alert_id)
    found["history"] = summarise_history(found["history"], found["measurement"])
    found["notes"] = store.notes(conn, alert_id)
    found["readings"] = readings_store.list_readings(
        conn, found["patient_id"], found["measurement"],
        found["opened_at"] - timedelta(days=14), None)
    [ordered] = order([found], now)
    shown = _identify(conn, caller, [ordered])
    return Shown(ordered, shown)


def add_note(conn: Connection, caller: Principal, alert_id: int, text: str,
             now: datetime) -> None:
    with conn.transaction():
        if not storage.list_alerts_by_id(conn, caller, alert_id):
            raise storage.NotFound(f"alert {alert_id}")
        store.add_note(conn, alert_id, caller.user, text, now)


def assign(conn: Connection, caller: Principal, alert_id: int, assignee: str,
           now: datetime) -> None:
    with conn.transaction():
        if not storage.list_alerts_by_id(conn, caller, alert_id):
            raise storage.NotFound(f"alert {alert_id}")
        why = assignment_refused(assignee, store.assignable(conn, alert_id, assignee))
        if why is not None:
            raise Refused(why)
        store.assign(conn, alert_id, assignee, caller.user, now)


def patient_card(conn: Connection, caller: Principal, patient_id: str) -> Shown:
    """The card of a patient the caller may see (checked before): unit, contacts, groups,
    the colleagues an alert can go to, and the identity where allowed."""
    card = store.patient_card(conn, patient_id)
    if card is None:
        raise LookupError(patient_id)
    card["colleagues"] = store.clinicians_of_unit(conn, str(card["unit_id"]))
    shown = _identify(conn, caller, [card])
    return Shown(card, shown)


def feedback_history(conn: Connection, patient_id: str, since: datetime) -> dict[str, Any]:
    """What the patient was told, message by message, newest first."""
    return {"patient_id": patient_id,
            "feedback": [told(m) for m in store.feedback_sent(conn, patient_id, since)]}
