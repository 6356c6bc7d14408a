"""What proposed rules would have raised (clinical alerts) on a patient's stored readings:
the backtest over one patient, once with the proposed rules and once with the rules in
force, so that a nurse sees the difference before she saves a change.

The stored readings become native messages again (one per device message), received when
they were measured; the one-patient roster is the patient's own, with the rules swapped.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from hemmon.ingest.model import MeasurementType
from hemmon.ingest.native import SCHEMA
from hemmon.ingest.topics import readings_topic
from hemmon.ingest.units import SPECS
from hemmon.rules.engine import lookback
from hemmon.rules.model import Rule
from hemmon.rules.templates import effective_rules

from .backtest import run_backtest
from .core import Message
from .roster import RosterFile

Connection = psycopg.Connection[Any]
PERIOD = timedelta(days=30)


def _messages(rows: Sequence[tuple[Any, ...]]) -> list[Message]:
    """Stored readings as the native messages they could have come in."""
    grouped: dict[tuple[str, str, datetime, bool | None], list[dict[str, Any]]] = (
        defaultdict(list))
    for device, key, kind, value, measured_at, on_oxygen in rows:
        grouped[(device, key, measured_at, on_oxygen)].append(
            {"type": kind, "value": value, "unit": SPECS[MeasurementType(kind)].canonical})
    out = []
    for (device, key, measured_at, on_oxygen), measurements in grouped.items():
        body: dict[str, Any] = {"schema": SCHEMA, "message_id": f"{key}@{measured_at}",
                                "measured_at": measured_at.isoformat(),
                                "measurements": measurements}
        if on_oxygen is not None:
            body["supplemental_oxygen"] = on_oxygen
        out.append(Message(readings_topic(device), json.dumps(body).encode(), measured_at))
    return sorted(out, key=lambda m: m.received_at)


def _roster(conn: Connection, patient_id: str, personal: Sequence[Rule],
            devices: set[str]) -> RosterFile:
    row = conn.execute(
        "SELECT p.unit_id, u.name, u.office_hours, p.fast_vardkontakt, p.mobile_team_id,"
        " p.red_to_mobile_team, p.groups FROM patients p JOIN units u ON u.id = p.unit_id"
        " WHERE p.id = %s", (patient_id,)).fetchone()
    if row is None:
        raise LookupError(patient_id)
    unit, unit_name, hours, contact, team, red_to_team, groups = row
    return RosterFile.model_validate({
        "units": [{"id": unit, "name": unit_name, "office_hours": hours}],
        "teams": [{"id": team, "name": team}] if team else [],
        "clinicians": [{"id": contact, "name": contact, "unit": unit}],
        "patients": [{"id": patient_id, "unit": unit, "fast_vardkontakt": contact,
                      "mobile_team": team, "red_to_mobile_team": red_to_team,
                      "groups": list(groups), "rules": [r.model_dump(mode="json")
                                                        for r in personal],
                      "devices": [{"id": d, "format": "native"} for d in sorted(devices)]}],
    })


def preview(conn: Connection, patient_id: str, proposed: Sequence[Rule],
            current: Sequence[Rule], start: datetime, end: datetime,
            zone: ZoneInfo) -> dict[str, Any]:
    """The alerts the proposed and the current personal rules would have raised between
    `start` and `end`, and a line for the nurse."""
    groups = conn.execute("SELECT groups FROM patients WHERE id = %s",
                          (patient_id,)).fetchone()
    if groups is None:
        raise LookupError(patient_id)
    span = max(lookback(effective_rules(groups[0], proposed)),
               lookback(effective_rules(groups[0], current)))
    rows = conn.execute(
        "SELECT device_id, message_key, type, value, measured_at, on_oxygen FROM readings"
        " WHERE patient_id = %s AND measured_at >= %s AND measured_at < %s"
        " ORDER BY measured_at", (patient_id, start - span, end)).fetchall()
    messages = _messages(rows)
    devices = {str(r[0]) for r in rows}
    out: dict[str, Any] = {"patient_id": patient_id, "from": start.isoformat(),
                           "to": end.isoformat(), "readings": len(rows)}
    since = start.astimezone(UTC).isoformat()
    for name, rules in (("proposed", proposed), ("current", current)):
        roster = _roster(conn, patient_id, rules, devices)
        records = run_backtest(roster, messages, start=start - span, end=end, zone=zone)
        # clinical alerts only: device and adherence notices do not follow the limits, and
        # replayed history has no care-plan start to judge adherence from
        raised = [r for r in records if r["kind"] == "alert" and r["category"] == "clinical"
                  and r["opened_at"] >= since]
        out[name] = {"alerts": len(raised),
                     "by_level": dict(Counter(r["level"] for r in raised)),
                     "by_rule": dict(Counter(r["rule"] for r in raised)),
                     "list": [{k: r[k] for k in ("rule", "level", "opened_at", "explanation",
                                                 "occurrences")} for r in raised]}
    days = round((end - start).total_seconds() / 86400)
    out["text"] = (f"Med dessa gränser: {out['proposed']['alerts']} larm senaste {days} dygnen,"
                   f" i dag {out['current']['alerts']}")
    return out
