"""Alerts and their history in PostgreSQL. The lifecycle rules themselves are in lifecycle.py.

`apply_findings` runs inside the caller's transaction, together with the readings the
findings came from: either both are stored or neither is, so a redelivered message that
finds its readings already stored adds no occurrence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hemmon.rules.engine import Clear
from hemmon.rules.evaluate import Finding, threshold_level
from hemmon.rules.model import Rule, ThresholdRule

from .access import Principal
from .lifecycle import Alert, Outcome, Status, TransitionError, acknowledge, apply_finding, resolve
from .routing import CareTeam, Route, escalation

Connection = psycopg.Connection[Any]
SYSTEM = "hemmon"

_ALERT_COLUMNS = sql.SQL(
    "id, patient_id, rule, rule_version, measurement, level, route, status, opened_at,"
    " updated_at, level_since, occurrences, last_value, last_measured_at, explanation, category"
)


@dataclass(frozen=True, slots=True)
class AlertChange:
    alert: Alert
    opened: bool
    finding: Finding


class NotFound(LookupError):
    """No such alert, or not one the caller may see."""


def _alert(row: Mapping[str, Any]) -> Alert:
    return Alert.model_validate({k: row[k] for k in Alert.model_fields if k in row})


def _open_alert(conn: Connection, patient_id: str, rule: str) -> Alert | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "SELECT {} FROM alerts"
                " WHERE patient_id = %s AND rule = %s AND status <> 'resolved' FOR UPDATE"
            ).format(_ALERT_COLUMNS),
            (patient_id, rule),
        )
        row = cur.fetchone()
    return _alert(row) if row else None


def _event(
    conn: Connection, alert_id: int, at: datetime, actor: str, action: str,
    *, level: str | None = None, value: float | None = None,
    measured_at: datetime | None = None, note: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO alert_events (alert_id, at, actor, action, level, value, measured_at, note)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (alert_id, at, actor, action, level, value, measured_at, note),
    )


def apply_findings(
    conn: Connection, findings: Sequence[Finding], teams: Mapping[str, CareTeam], now: datetime
) -> list[AlertChange]:
    """Open or update one alert per patient and rule for each finding, oldest first."""
    changes = []
    for finding in sorted(findings, key=lambda f: f.measured_at):
        team = teams[finding.patient_id]
        current = _open_alert(conn, finding.patient_id, finding.rule_key)
        alert = apply_finding(current, finding, team, now)
        if current is None:
            row = conn.execute(
                "INSERT INTO alerts (patient_id, rule, rule_version, measurement, level, route,"
                " status, opened_at, updated_at, level_since, occurrences, last_value,"
                " last_measured_at, explanation, category)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (alert.patient_id, alert.rule, alert.rule_version, alert.measurement,
                 alert.level.value, alert.route.value, alert.status.value, alert.opened_at,
                 alert.updated_at, alert.level_since, alert.occurrences, alert.last_value,
                 alert.last_measured_at, alert.explanation, alert.category),
            ).fetchone()
            assert row is not None
            alert = alert.model_copy(update={"id": row[0]})
            action = "opened"
        else:
            conn.execute(
                "UPDATE alerts SET rule_version = %s, level = %s, route = %s, status = %s,"
                " updated_at = %s, level_since = %s, occurrences = %s, last_value = %s,"
                " last_measured_at = %s, explanation = %s,"
                # a new excursion: the condition is active again
                " cleared_at = CASE WHEN cleared_at < %s THEN NULL ELSE cleared_at END"
                " WHERE id = %s",
                (alert.rule_version, alert.level.value, alert.route.value, alert.status.value,
                 alert.updated_at, alert.level_since, alert.occurrences, alert.last_value,
                 alert.last_measured_at, alert.explanation, finding.measured_at, alert.id),
            )
            action = "occurred"
        assert alert.id is not None
        _event(conn, alert.id, now, SYSTEM, action, level=finding.level.value,
               value=finding.value, measured_at=finding.measured_at)
        moved = current is None or current.route is not alert.route
        if moved and alert.route is not Route.FAST_VARDKONTAKT:
            enqueue(conn, alert, "page", now)
        changes.append(AlertChange(alert=alert, opened=current is None, finding=finding))
    return changes


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


def escalate_due(conn: Connection, teams: Mapping[str, CareTeam], now: datetime,
                 after: timedelta) -> list[Alert]:
    """Move unacknowledged red alerts past their time to the mobile team (or fallback)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT {}, snoozed_until FROM alerts WHERE status = 'open'"
                    " AND level = 'red' AND category = 'clinical'"
                    " AND route = 'fast_vardkontakt' FOR UPDATE SKIP LOCKED"
                    ).format(_ALERT_COLUMNS))
        rows = cur.fetchall()
    moved = []
    for row in rows:
        alert = _alert(row)
        team = teams.get(alert.patient_id)
        target = team and escalation(
            level=alert.level, route=alert.route, acknowledged=False, category=alert.category,
            level_since=alert.level_since, snoozed_until=row["snoozed_until"], team=team,
            now=now, after=after)
        if not target:
            continue
        alert = alert.model_copy(update={"route": target, "updated_at": now})
        conn.execute("UPDATE alerts SET route = %s, escalated_at = %s, updated_at = %s"
                     " WHERE id = %s", (target.value, now, now, alert.id))
        assert alert.id is not None
        minutes = int(after.total_seconds() // 60)
        _event(conn, alert.id, now, SYSTEM, "escalated",
               note=f"ej kvitterat inom {minutes} min: till {target.value}")
        enqueue(conn, alert, "escalation", now)
        moved.append(alert)
    return moved


def expire_snoozes(conn: Connection, now: datetime) -> list[int]:
    """End the snoozes whose time has come (a snooze always ends, and says so)."""
    rows = conn.execute(
        "UPDATE alerts SET snoozed_until = NULL WHERE snoozed_until <= %s"
        " AND status <> 'resolved' RETURNING id",
        (now,),
    ).fetchall()
    for row in rows:
        _event(conn, int(row[0]), now, SYSTEM, "snooze_ended")
    return [int(row[0]) for row in rows]


def mark_cleared(conn: Connection, patient_id: str, clears: Sequence[Clear]) -> None:
    """Note on open alerts that their excursion ended (they stay for a nurse to close)."""
    for clear in clears:
        rows = conn.execute(
            "UPDATE alerts SET cleared_at = %s WHERE patient_id = %s AND rule = %s"
            " AND status <> 'resolved' AND last_measured_at < %s"
            " AND (cleared_at IS NULL OR cleared_at < %s) RETURNING id",
            (clear.measured_at, patient_id, clear.rule_key, clear.measured_at,
             clear.measured_at),
        ).fetchall()
        for row in rows:
            _event(conn, int(row[0]), clear.measured_at, SYSTEM, "cleared",
                   note="värdet åter inom gränsen")


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
        " a.level_since, a.assignee, a.assigned_at, p.unit_id, p.fast_vardkontakt,"
        " c.name AS assignee_name"
        " FROM alerts a JOIN patients p ON p.id = a.patient_id"
        " LEFT JOIN clinicians c ON c.id = a.assignee"
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
        "SELECT a.*, p.unit_id, p.fast_vardkontakt, c.name AS assignee_name FROM alerts a"
        " JOIN patients p ON p.id = a.patient_id LEFT JOIN clinicians c ON c.id = a.assignee"
        " WHERE a.id = %s AND {scope}"
    ).format(scope=_scope(principal))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, (alert_id,))
        return cur.fetchall()


def transition(
    conn: Connection,
    principal: Principal,
    alert_id: int,
    action: str,
    now: datetime,
    *,
    note: str | None = None,
    outcome: Outcome | None = None,
    snooze_until: datetime | None = None,
) -> Alert:
    """Acknowledge, resolve or snooze; TransitionError when the status does not allow it."""
    rows = list_alerts_by_id(conn, principal, alert_id)
    if not rows:
        raise NotFound(f"alert {alert_id}")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM alerts WHERE id = %s FOR UPDATE").format(_ALERT_COLUMNS),
            (alert_id,),
        )
        row = cur.fetchone()
    assert row is not None
    current = _alert(row)
    actor = principal.user
    if action == "acknowledge":
        alert = acknowledge(current, now)
        conn.execute(
            "UPDATE alerts SET status = %s, updated_at = %s, acknowledged_at = %s,"
            " acknowledged_by = %s WHERE id = %s",
            (alert.status.value, now, now, actor, alert_id),
        )
    elif action == "resolve":
        alert = resolve(current, now)
        conn.execute(
            "UPDATE alerts SET status = %s, updated_at = %s, resolved_at = %s, resolved_by = %s,"
            " outcome = %s WHERE id = %s",
            (alert.status.value, now, now, actor, outcome.value if outcome else None, alert_id),
        )
    elif action == "snooze":
        if current.status is Status.RESOLVED:
            raise TransitionError("a resolved alert cannot be snoozed")
        alert = current.model_copy(update={"updated_at": now})
        conn.execute(
            "UPDATE alerts SET snoozed_until = %s, updated_at = %s WHERE id = %s",
            (snooze_until, now, alert_id),
        )
    else:
        raise ValueError(f"unknown action {action}")
    detail = note or ""
    if outcome is not None:
        detail = f"{outcome.value}: {detail}".rstrip(": ")
    if snooze_until is not None:
        detail = f"till {snooze_until.isoformat()} {detail}".strip()
    _event(conn, alert_id, now, actor, action, note=detail or None)
    return alert


def open_alert_stats(conn: Connection, now: datetime) -> list[tuple[str, str, int, float]]:
    """(level, route, open count, oldest unacknowledged age in seconds) for the gauges."""
    rows = conn.execute(
        "SELECT level, route, count(*),"
        " coalesce(extract(epoch FROM %s - min(opened_at) FILTER (WHERE status = 'open')), 0)"
        " FROM alerts WHERE status <> 'resolved' GROUP BY level, route",
        (now,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]


def open_notice_keys(conn: Connection, category: str) -> set[str]:
    """Rules of the notices of a category that are not resolved."""
    rows = conn.execute(
        "SELECT rule FROM alerts WHERE category = %s AND status <> 'resolved'", (category,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def resolve_cleared(conn: Connection, category: str, firing: set[str], now: datetime,
                    note: str) -> int:
    """Resolve the notices of a category whose condition no longer holds; how many."""
    rows = conn.execute(
        "UPDATE alerts SET status = 'resolved', updated_at = %s, resolved_at = %s,"
        " resolved_by = %s, outcome = 'no_action'"
        " WHERE category = %s AND status <> 'resolved' AND NOT (rule = ANY(%s)) RETURNING id",
        (now, now, SYSTEM, category, sorted(firing)),
    ).fetchall()
    for row in rows:
        _event(conn, int(row[0]), now, SYSTEM, "resolve", note=note)
    return len(rows)


def recheck_open_alerts(conn: Connection, patient_id: str, rules: Sequence[Rule],
                        version: int, actor: str, now: datetime) -> list[int]:
    """After a rule change: resolve the open alerts the new rules no longer justify.

    Only the latest value is judged again; no history is evaluated, so a change never
    raises an alert by itself.
    """
    by_key = {rule.key: rule for rule in rules}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, rule, last_value FROM alerts WHERE patient_id = %s"
            " AND category = 'clinical' AND status <> 'resolved' FOR UPDATE",
            (patient_id,),
        )
        open_alerts = cur.fetchall()
    resolved = []
    for alert in open_alerts:
        rule = by_key.get(alert["rule"])
        if rule is None:
            why = "regeln finns inte längre"
        elif isinstance(rule, ThresholdRule) and threshold_level(rule, alert["last_value"]) is None:
            why = "senaste värdet ligger inom de nya gränserna"
        else:
            continue
        conn.execute(
            "UPDATE alerts SET status = 'resolved', updated_at = %s, resolved_at = %s,"
            " resolved_by = %s, outcome = 'no_action' WHERE id = %s",
            (now, now, actor, alert["id"]),
        )
        _event(conn, int(alert["id"]), now, actor, "resolve",
               note=f"Reglerna ändrades (version {version}): {why}")
        resolved.append(int(alert["id"]))
    return resolved


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
