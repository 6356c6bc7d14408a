"""What a clinician does to alerts and rules, as transactions: load, decide, write.

The HTTP layer calls one function here per request; the decisions are in decide.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from hemmon.rules import storage as rules_store
from hemmon.rules.model import Rule
from hemmon.rules.templates import effective_rules

from . import storage
from .access import Principal
from .decide import Action, Plan, decide_action, recheck
from .lifecycle import Alert

Connection = psycopg.Connection[Any]


def act(conn: Connection, principal: Principal, alert_id: int, action: Action,
        now: datetime) -> Alert:
    """Acknowledge, resolve or snooze an alert the caller may see; NotFound when it may
    not, TransitionError when the alert's status does not allow it."""
    with conn.transaction():
        if not storage.list_alerts_by_id(conn, principal, alert_id):
            raise storage.NotFound(f"alert {alert_id}")
        current = storage.load_alert(conn, alert_id)
        if current is None:
            raise storage.NotFound(f"alert {alert_id}")
        change = decide_action(current, action, principal.user, now)
        [written] = storage.write_plan(conn, Plan([change]))
    return written.alert


def change_rules(conn: Connection, principal: Principal, patient_id: str,
                 personal: Sequence[Rule], reason: str, now: datetime) -> dict[str, Any]:
    """A new version of a patient's rules, and the open alerts it no longer justifies
    resolved, in one transaction."""
    with conn.transaction():
        groups = rules_store.patient_groups(conn, patient_id) or []
        version = rules_store.save_rules(conn, patient_id, groups, personal,
                                         actor=principal.user, reason=reason, now=now)
        if version is None:
            return {"patient_id": patient_id, "changed": False, "resolved": []}
        rules_store.announce_rules_changed(conn, now)
        open_alerts = storage.load_open_alerts(conn, [patient_id])
        plan = recheck(list(open_alerts.values()), effective_rules(groups, personal), version,
                       principal.user, now)
        written = storage.write_plan(conn, plan)
    return {"patient_id": patient_id, "changed": True, "version": version,
            "resolved": [c.alert.id for c in written]}
