"""Alerts and their history in PostgreSQL: load and write. The decisions are in decide.py.

`write_plan` runs inside the caller's transaction, together with the readings and findings
the changes came from: either all are stored or none is, so a redelivered message that
finds its readings already stored adds no occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hemmon.rules.storage import link_findings

from .access import Principal
from .decide import RECORD_COLUMNS, Change, OpenAlerts, Plan
from .lifecycle import Alert

Connection = psycopg.Connection[Any]

_ALERT_COLUMNS = sql.SQL(
    "id, patient_id, rule, rule_version, measurement, level, route, status, opened_at,"
    " updated_at, level_since, occurrences, last_value, last_measured_at, explanation, category,"
    " snoozed_until, cleared_at"
)


class NotFound(LookupError):
    """No such alert, or not one the caller may see."""


def _alert(row: Mapping[str, Any]) -> Alert:
    return Alert.model_validate({k: row[k] for k in Alert.model_fields if k in row})


def load_open_alerts(conn: Connection, patients: Iterable[str] | None = None, *,
                     category: str | None = None) -> OpenAlerts:
    """The alerts not resolved (of these patients, of this category), locked for this
    transaction: the inbox cannot change them under a batch's decisions."""
    where = [sql.SQL("status <> 'resolved'")]
    args: list[Any] = []
    if patients is not None:
        where.append(sql.SQL("patient_id = ANY(%s)"))
        args.append(sorted(set(patients)))
    if category is not None:
        where.append(sql.SQL("category = %s"))
        args.append(category)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT {} FROM alerts WHERE {} ORDER BY id FOR UPDATE").format(
            _ALERT_COLUMNS, sql.SQL(" AND ").join(where)), args)
        return {(row["patient_id"], row["rule"]): _alert(row) for row in cur.fetchall()}


def load_alert(conn: Connection, alert_id: int) -> Alert | None:
    """One alert, locked for this transaction."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT {} FROM alerts WHERE id = %s FOR UPDATE").format(
            _ALERT_COLUMNS), (alert_id,))
        row = cur.fetchone()
    return _alert(row) if row else None


def write_plan(conn: Connection, plan: Plan) -> list[Change]:
    """Write the changes as decided: rows, history, pages, the findings' alert; returns
    the changes with the ids of the alerts they opened."""
    written: list[Change] = []
    ids: dict[tuple[str, str], int] = {}
    for change in plan.changes:
        alert = change.alert
        key = (alert.patient_id, alert.rule)
        alert_id = alert.id if alert.id is not None else ids.get(key)
        if alert_id is None:
            alert_id = _insert(conn, alert)
        else:
            _update(conn, alert_id, alert, change.columns)
        ids[key] = alert_id
        alert = alert.model_copy(update={"id": alert_id})
        change = replace(change, alert=alert)
        for event in change.events:
            conn.execute(
                "INSERT INTO alert_events (alert_id, at, actor, action, level, value,"
                " measured_at, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (alert_id, event.at, event.actor, event.action, event.level, event.value,
                 event.measured_at, event.note))
        if change.page is not None:
            enqueue(conn, alert, change.page.value, alert.updated_at)
        written.append(change)
    link_findings(conn, [(c.finding, c.alert.id) for c in written
                         if c.finding is not None and c.alert.id is not None])
    return written


def _insert(conn: Connection, alert: Alert) -> int:
    row = conn.execute(
        "INSERT INTO alerts (patient_id, rule, rule_version, measurement, level, route,"
        " status, opened_at, updated_at, level_since, occurrences, last_value,"
        " last_measured_at, explanation, category, snoozed_until, cleared_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (alert.patient_id, alert.rule, alert.rule_version, alert.measurement,
         alert.level.value, alert.route.value, alert.status.value, alert.opened_at,
         alert.updated_at, alert.level_since, alert.occurrences, alert.last_value,
         alert.last_measured_at, alert.explanation, alert.category, alert.snoozed_until,
         alert.cleared_at),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _update(conn: Connection, alert_id: int, alert: Alert,
            columns: Mapping[str, object]) -> None:
    unknown = set(columns) - RECORD_COLUMNS
    assert not unknown, unknown
    names = sorted(columns)
    extra = sql.SQL("").join(sql.SQL(", {} = %s").format(sql.Identifier(n)) for n in names)
    conn.execute(
        sql.SQL("UPDATE alerts SET rule_version = %s, level = %s, route = %s, status = %s,"
                " updated_at = %s, level_since = %s, occurrences = %s, last_value = %s,"
                " last_measured_at = %s, explanation = %s, snoozed_until = %s,"
                " cleared_at = %s{} WHERE id = %s").format(extra),
        (alert.rule_version, alert.level.value, alert.route.value, alert.status.value,
         alert.updated_at, alert.level_since, alert.occurrences, alert.last_value,
         alert.last_measured_at, alert.explanation, alert.snoozed_until, alert.cleared_at,
         *(columns[n] for n in names), alert_id),
    )


def enqueue(conn: Connection, alert: Alert, kind: str, now: datetime) -> None:
    """A notification for the region's pager or SMS gateway, in the alert's transaction."""
    assert alert.id is not None
    unit = conn.execute(
        "SELECT u.id, u.name, u.fallback_contact FROM patients p JOIN units u"
        " ON u.id = p.unit_id WHERE p.id = %s", (alert.patient_id,)).fetchone()
    payload = {
        "alert_id": alert.id, "kind": kind, "patient_id": alert.patient_id,
        "level": alert.level.value, "route": alert.route.value, "rule": alert.rule,
        "explanation": alert.explanation, "opened_at": alert.opened_at.isoformat(),
        "unit_id": unit[0] if unit else None, "unit_name": unit[1] if unit else None,
        "fallback_contact": unit[2] if unit else None,
    }
    conn.execute(
        "INSERT INTO notifications (alert_id, kind, route, idempotency_key, payload,"
        " created_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING",
        (alert.id, kind, alert.route.value, f"hemmon-alert-{alert.id}-{kind}-{alert.route}",
         Jsonb(payload), now, now),
    )


def _scope(principal: Principal) -> sql.Composable:
    if principal.role == "admin":
        return sql.SQL("true")
    if principal.role == "nurse":
        return sql.SQL("p.unit_id = {}").format(sql.Literal(principal.unit_id))
    return sql.SQL("p.mobile_team_id = {}").format(sql.Literal(principal.team_id))


def may_see_patient(conn: Connection, principal: Principal, patient_id: str) -> bool | None:
    """True or False for a known patient; None when there is no such patient."""
    query = sql.SQL("SELECT {} FROM patients p WHERE p.id = %s").format(_scope(principal))
    row = conn.execute(query, (patient_id,)).fetchone()
    return None if row is None else bool(row[0])


def list_alerts(
    conn: Connection,
    principal: Principal,
    *,
    status: str | None = None,
    route: str | None = None,
    patient: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Alerts the caller may see, most urgent first: red before yellow, then oldest first."""
    statuses = [status] if status else ["open", "acknowledged"]
    query = sql.SQL(
        "SELECT a.id, a.patient_id, a.rule, a.rule_version, a.measurement, a.level, a.route,"
        " a.status, a.opened_at, a.updated_at, a.occurrences, a.last_value,"
        " a.last_measured_at, a.explanation, a.category, a.snoozed_until, a.cleared_at,"
        " p.unit_id"
        " FROM alerts a JOIN patients p ON p.id = a.patient_id"
        " WHERE {scope} AND a.status = ANY(%s) AND (%s::text IS NULL OR a.route = %s)"
        " AND (%s::text IS NULL OR a.patient_id = %s)"
        " ORDER BY (a.level = 'red') DESC, a.opened_at ASC LIMIT %s"
    ).format(scope=_scope(principal))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, (statuses, route, route, patient, patient, limit))
        return cur.fetchall()


def get_alert(conn: Connection, principal: Principal, alert_id: int) -> dict[str, Any]:
    """One alert with its history; NotFound if missing or not the caller's to see."""
    rows = list_alerts_by_id(conn, principal, alert_id)
    if not rows:
        raise NotFound(f"alert {alert_id}")
    alert = rows[0]
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT at, actor, action, level, value, measured_at, note FROM alert_events"
            " WHERE alert_id = %s ORDER BY at, id",
            (alert_id,),
        )
        alert["history"] = cur.fetchall()
    return alert


def list_alerts_by_id(
    conn: Connection, principal: Principal, alert_id: int
) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT a.*, p.unit_id FROM alerts a JOIN patients p ON p.id = a.patient_id"
        " WHERE a.id = %s AND {scope}"
    ).format(scope=_scope(principal))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, (alert_id,))
        return cur.fetchall()


def open_alert_stats(conn: Connection, now: datetime) -> list[tuple[str, str, int, float]]:
    """(level, route, open count, oldest unacknowledged age in seconds) for the gauges."""
    rows = conn.execute(
        "SELECT level, route, count(*),"
        " coalesce(extract(epoch FROM %s - min(opened_at) FILTER (WHERE status = 'open')), 0)"
        " FROM alerts WHERE status <> 'resolved' GROUP BY level, route",
        (now,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]


def due_notifications(conn: Connection, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """Notifications waiting to be sent whose time has come (locked for this sender)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, idempotency_key, payload, attempts FROM notifications"
            " WHERE delivered_at IS NULL AND next_attempt_at <= %s ORDER BY id LIMIT %s"
            " FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        return cur.fetchall()


def notification_sent(conn: Connection, notification_id: int, now: datetime) -> None:
    conn.execute("UPDATE notifications SET delivered_at = %s, attempts = attempts + 1,"
                 " last_error = NULL WHERE id = %s", (now, notification_id))


def notification_failed(conn: Connection, notification_id: int, error: str,
                        retry_at: datetime) -> None:
    conn.execute("UPDATE notifications SET attempts = attempts + 1, last_error = %s,"
                 " next_attempt_at = %s WHERE id = %s", (error[:500], retry_at, notification_id))


def list_notifications(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, alert_id, kind, route, idempotency_key, created_at, attempts,"
            " next_attempt_at, delivered_at, last_error FROM notifications"
            " ORDER BY id DESC LIMIT %s", (limit,))
        return cur.fetchall()


def pending_notifications(conn: Connection) -> int:
    row = conn.execute("SELECT count(*) FROM notifications WHERE delivered_at IS NULL"
                       ).fetchone()
    return int(row[0]) if row else 0


def patient_count(conn: Connection) -> int:
    row = conn.execute("SELECT count(*) FROM patients").fetchone()
    return int(row[0]) if row else 0
