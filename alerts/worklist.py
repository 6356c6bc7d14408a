"""The nurse's worklist, pure: order, waiting time, history at a glance, who may take an alert,
who may see a patient's name, and whom an assigned alert escalates to.

No I/O: the inbox loads rows, these functions decide, the inbox renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hemmon.ingest.model import MeasurementType
from hemmon.rules.explain import DISPLAY_UNITS, number

from .access import Principal
from .feedback import _REJECTED_TEXTS, TEXTS
from .routing import STOCKHOLM, CareTeam, Route, away

MOBILE_TEAM = "mobile_team"
"""The assignee that hands an alert to the patient's mobile team rather than a person."""

_LEVEL_RANK = {"red": 0, "yellow": 1}
_LEVEL_NAMES = {"red": "röd", "yellow": "gul"}


def sort_key(alert: Mapping[str, Any]) -> tuple[int, int, int, datetime]:
    """Red before yellow, clinical before device and adherence notices, unacknowledged
    before acknowledged, then whoever has waited longest."""
    return (
        _LEVEL_RANK.get(str(alert["level"]), 2),
        0 if alert.get("category", "clinical") == "clinical" else 1,
        0 if alert["status"] == "open" else 1,
        alert["opened_at"],
    )


def waiting_text(since: datetime, now: datetime) -> str:
    """How long an unacknowledged alert has waited, as a nurse says it ("väntat 42 min")."""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"väntat {minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"väntat {hours} tim {rest} min" if rest else f"väntat {hours} tim"
    days = hours // 24
    return f"väntat {days} dygn"


def waiting(alert: Mapping[str, Any], now: datetime) -> str | None:
    """The waiting text of an alert nobody has acknowledged; None once someone has."""
    return waiting_text(alert["opened_at"], now) if alert["status"] == "open" else None


def is_mine(alert: Mapping[str, Any], principal: Principal) -> bool:
    """The "Mina" view: assigned to me (or my team); unassigned, my own patients' alerts
    in the health centre's queue; for a mobile team, what its route or assignment gives it."""
    assignee = alert.get("assignee")
    if principal.role == "mobile_team":
        return assignee == MOBILE_TEAM or (assignee is None and alert["route"] == MOBILE_TEAM)
    if assignee is not None:
        return bool(assignee == principal.user)
    return bool(alert.get("fast_vardkontakt") == principal.user
                and alert["route"] == Route.FAST_VARDKONTAKT.value)


@dataclass(frozen=True, slots=True)
class PatientScope:
    """What decides whether a caller may see who a patient is."""

    unit_id: str
    mobile_team_id: str | None
    team_holds_alert: bool
    """The mobile team has an alert of this patient in hand (route or assignment)."""


def may_see_identity(principal: Principal, scope: PatientScope) -> bool:
    """Name and personnummer (patientdatalagen): the patient's own unit, or the mobile team
    while it holds one of the patient's alerts. An administrator runs the system and has no
    care relation: pseudonyms only."""
    if principal.role == "nurse":
        return principal.unit_id == scope.unit_id
    if principal.role == "mobile_team":
        return principal.team_id == scope.mobile_team_id and scope.team_holds_alert
    return False


def display_name(name: str | None, personnummer: str | None, pseudonym: str) -> str:
    """ "Namn, ÅÅÅÅMMDD-XXXX" where known; the pseudonym otherwise."""
    parts = [p for p in (name, personnummer) if p]
    return ", ".join(parts) if parts else pseudonym


@dataclass(frozen=True, slots=True)
class Assignable:
    """What decides whether an alert may be handed to someone."""

    patient_unit: str
    patient_has_mobile_team: bool
    assignee_unit: str | None
    """The assignee's unit when the assignee is a roster clinician; None when unknown."""
    resolved: bool = False


def assignment_refused(assignee: str, facts: Assignable) -> str | None:
    """Why the alert cannot go to this assignee (Swedish, shown to the nurse); None: it can."""
    if facts.resolved:
        return "larmet är redan åtgärdat"
    if assignee == MOBILE_TEAM:
        return None if facts.patient_has_mobile_team else "patienten har inget mobilt team"
    if facts.assignee_unit is None:
        return f"{assignee} finns inte bland vårdpersonalen"
    if facts.assignee_unit != facts.patient_unit:
        return f"{assignee} hör inte till patientens hälsocentral"
    return None


@dataclass(frozen=True, slots=True)
class EscalationTarget:
    """Where an unacknowledged red alert goes when its time is up."""

    route: Route
    clinician: str | None = None
    """A colleague paged by name; the alert stays in the health centre's queue."""


def escalation_target(assignee: str | None, team: CareTeam, *,
                      escalated_to_assignee: bool) -> EscalationTarget:
    """The assignee is the one it escalates to: the mobile team, or the colleague who took it.

    A colleague who was paged and still has not acknowledged is passed by the next time the
    alert is due: then it goes where it always would (the mobile team, or the unit's
    fallback contact), so an assignment never stops an alert from moving on.
    """
    if assignee == MOBILE_TEAM and team.has_mobile_team:
        return EscalationTarget(Route.MOBILE_TEAM)
    if assignee is None or assignee == MOBILE_TEAM or escalated_to_assignee:
        return EscalationTarget(away(team))
    return EscalationTarget(Route.FAST_VARDKONTAKT, clinician=assignee)


_RAISES = ("opened", "occurred")


def summarise_history(events: Sequence[Mapping[str, Any]], measurement: str | None,
                      zone: ZoneInfo = STOCKHOLM) -> list[dict[str, Any]]:
    """State changes one by one; the new readings between two of them as one line.

    An `occurred` event that raises the level is a state change of its own ("nivå höjd till
    röd"); the others are counted: "12 nya värden, senaste 84 % kl 14:26".
    """
    out: list[dict[str, Any]] = []
    run: list[Mapping[str, Any]] = []
    level: str | None = None

    def flush() -> None:
        if run:
            out.append(_readings_line(run, measurement, zone))
            run.clear()

    for event in events:
        action = str(event["action"])
        if action == "occurred" and _LEVEL_RANK.get(str(event.get("level")), 2) < \
                _LEVEL_RANK.get(str(level), 2):
            flush()
            level = str(event["level"])
            out.append({**event, "action": "level_raised",
                        "text": f"nivå höjd till {_LEVEL_NAMES[level]}"})
        elif action == "occurred":
            run.append(event)
        else:
            flush()
            if action == "opened" and event.get("level"):
                level = str(event["level"])
            out.append(dict(event))
    flush()
    return out


def _readings_line(run: Sequence[Mapping[str, Any]], measurement: str | None,
                   zone: ZoneInfo) -> dict[str, Any]:
    last = max(run, key=lambda e: e.get("measured_at") or e["at"])
    unit = _unit(measurement)
    count = len(run)
    words = "nytt värde" if count == 1 else "nya värden"
    text = f"{count} {words}"
    if last.get("value") is not None:
        at = (last.get("measured_at") or last["at"]).astimezone(zone)
        text += f", senaste {number(float(last['value']))}{unit} kl {at:%H:%M}"
    return {"at": last["at"], "actor": last["actor"], "action": "readings", "count": count,
            "level": last.get("level"), "value": last.get("value"),
            "measured_at": last.get("measured_at"), "note": None, "text": text}


def _unit(measurement: str | None) -> str:
    try:
        unit = DISPLAY_UNITS[MeasurementType(measurement)] if measurement else ""
    except ValueError:
        return ""
    return f" {unit}" if unit else ""


def order(alerts: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The worklist in order, each alert with its waiting text."""
    return [{**a, "waiting": waiting(a, now)} for a in sorted(alerts, key=sort_key)]




def told(message: Mapping[str, Any]) -> dict[str, Any]:
    """What the patient's device was told about one message, from what was stored of it:
    the feedback texts of feedback.py by the worst level its readings broke, or rejected."""
    if message.get("rejected"):
        status = "rejected"
        reasons = {reason.value: text for reason, text in _REJECTED_TEXTS.items()}
        text = reasons.get(str(message["rejected"]), TEXTS["rejected"])
    else:
        status = str(message.get("level") or "green")
        text = TEXTS[status]
    return {"at": message["received_at"], "measured_at": message.get("measured_at"),
            "status": status, "text": text}
