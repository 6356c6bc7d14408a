"""The worklist's decisions, as tables of inputs and expected outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hemmon.alerts.access import Principal
from hemmon.alerts.routing import CareTeam, OfficeHours, Route
from hemmon.alerts.worklist import (
    Assignable,
    EscalationTarget,
    PatientScope,
    assignment_refused,
    display_name,
    escalation_target,
    is_mine,
    may_see_identity,
    order,
    summarise_history,
    told,
    waiting_text,
)

NOW = datetime(2026, 3, 10, 13, 30, tzinfo=UTC)  # 14:30 in Stockholm
ANNA = Principal(user="nurse-anna", role="nurse", unit_id="hc-stugun")
KARIN = Principal(user="nurse-karin", role="nurse", unit_id="hc-hammarstrand")
MINT = Principal(user="mint-jour", role="mobile_team", team_id="mint")
ADMIN = Principal(user="admin", role="admin")


def alert(id: int, level: str, status: str, minutes_ago: int, **extra: Any) -> dict[str, Any]:
    return {"id": id, "level": level, "status": status, "category": "clinical",
            "opened_at": NOW - timedelta(minutes=minutes_ago), "route": "fast_vardkontakt",
            **extra}


def test_red_before_yellow_then_the_oldest_unacknowledged_first() -> None:
    alerts = [
        alert(1, "yellow", "open", 300),
        alert(2, "red", "acknowledged", 500),
        alert(3, "red", "open", 10),
        alert(4, "red", "open", 42),
        alert(5, "yellow", "open", 5, category="device"),
        alert(6, "yellow", "acknowledged", 900),
    ]
    ordered = order(alerts, NOW)
    assert [a["id"] for a in ordered] == [4, 3, 2, 1, 6, 5]
    assert [a["waiting"] for a in ordered] == [
        "väntat 42 min", "väntat 10 min", None, "väntat 5 tim", None, "väntat 5 min"]


@pytest.mark.parametrize(("minutes", "text"), [
    (0, "väntat 0 min"), (59, "väntat 59 min"), (60, "väntat 1 tim"),
    (125, "väntat 2 tim 5 min"), (24 * 60 + 3, "väntat 1 dygn"), (-5, "väntat 0 min"),
])
def test_waiting_text(minutes: int, text: str) -> None:
    assert waiting_text(NOW - timedelta(minutes=minutes), NOW) == text


@pytest.mark.parametrize(("principal", "fields", "mine"), [
    (ANNA, {"assignee": "nurse-anna"}, True),
    (ANNA, {"assignee": "nurse-eva"}, False),
    (ANNA, {"assignee": None, "fast_vardkontakt": "nurse-anna"}, True),
    (ANNA, {"assignee": None, "fast_vardkontakt": "nurse-anna", "route": "mobile_team"}, False),
    (ANNA, {"assignee": "mobile_team", "fast_vardkontakt": "nurse-anna"}, False),
    (MINT, {"assignee": "mobile_team"}, True),
    (MINT, {"assignee": None, "route": "mobile_team"}, True),
    (MINT, {"assignee": "nurse-anna", "route": "mobile_team"}, False),
    (MINT, {"assignee": None}, False),
])
def test_mine(principal: Principal, fields: dict[str, Any], mine: bool) -> None:
    assert is_mine({**alert(1, "red", "open", 1), **fields}, principal) is mine


@pytest.mark.parametrize(("principal", "scope", "allowed"), [
    (ANNA, PatientScope("hc-stugun", "mint", False), True),
    (KARIN, PatientScope("hc-stugun", "mint", True), False),
    (MINT, PatientScope("hc-stugun", "mint", True), True),
    (MINT, PatientScope("hc-stugun", "mint", False), False),
    (MINT, PatientScope("hc-stugun", "other-team", True), False),
    (ADMIN, PatientScope("hc-stugun", "mint", True), False),
])
def test_who_may_see_a_name(principal: Principal, scope: PatientScope, allowed: bool) -> None:
    assert may_see_identity(principal, scope) is allowed


@pytest.mark.parametrize(("name", "pnr", "shown"), [
    ("Tora Eriksson", "19440813-9089", "Tora Eriksson, 19440813-9089"),
    ("Tora Eriksson", None, "Tora Eriksson"),
    (None, None, "p-0001"),
])
def test_display_name(name: str | None, pnr: str | None, shown: str) -> None:
    assert display_name(name, pnr, "p-0001") == shown


@pytest.mark.parametrize(("assignee", "facts", "refused"), [
    ("nurse-eva", Assignable("hc-stugun", False, "hc-stugun"), None),
    ("nurse-karin", Assignable("hc-stugun", False, "hc-hammarstrand"),
     "nurse-karin hör inte till patientens hälsocentral"),
    ("nobody", Assignable("hc-stugun", False, None), "nobody finns inte bland vårdpersonalen"),
    ("mobile_team", Assignable("hc-stugun", True, None), None),
    ("mobile_team", Assignable("hc-stugun", False, None), "patienten har inget mobilt team"),
    ("nurse-eva", Assignable("hc-stugun", False, "hc-stugun", resolved=True),
     "larmet är redan åtgärdat"),
])
def test_who_may_take_an_alert(assignee: str, facts: Assignable, refused: str | None) -> None:
    assert assignment_refused(assignee, facts) == refused


HOURS = OfficeHours.parse("mon-fri 08:00-17:00")
WITH_TEAM = CareTeam(HOURS, has_mobile_team=True)
WITHOUT_TEAM = CareTeam(HOURS, has_mobile_team=False)


@pytest.mark.parametrize(("assignee", "team", "paged", "target"), [
    (None, WITH_TEAM, False, EscalationTarget(Route.MOBILE_TEAM)),
    (None, WITHOUT_TEAM, False, EscalationTarget(Route.UNIT_FALLBACK)),
    ("mobile_team", WITH_TEAM, False, EscalationTarget(Route.MOBILE_TEAM)),
    ("mobile_team", WITHOUT_TEAM, False, EscalationTarget(Route.UNIT_FALLBACK)),
    ("nurse-eva", WITH_TEAM, False, EscalationTarget(Route.FAST_VARDKONTAKT, "nurse-eva")),
    ("nurse-eva", WITH_TEAM, True, EscalationTarget(Route.MOBILE_TEAM)),
    ("nurse-eva", WITHOUT_TEAM, True, EscalationTarget(Route.UNIT_FALLBACK)),
])
def test_the_assignee_is_the_one_it_escalates_to(
    assignee: str | None, team: CareTeam, paged: bool, target: EscalationTarget
) -> None:
    assert escalation_target(assignee, team, escalated_to_assignee=paged) == target


def event(action: str, minutes: int, **extra: Any) -> dict[str, Any]:
    at = NOW - timedelta(minutes=60 - minutes)
    return {"at": at, "actor": extra.pop("actor", "hemmon"), "action": action, "level": None,
            "value": None, "measured_at": at, "note": None, **extra}


def test_thirty_readings_are_one_line_between_the_state_changes() -> None:
    events = [event("opened", 0, level="yellow", value=91.0)]
    events += [event("occurred", i + 1, level="yellow", value=91.0) for i in range(3)]
    events += [event("occurred", 5, level="red", value=86.0)]
    events += [event("acknowledge", 6, actor="nurse-anna")]
    events += [event("occurred", 7 + i, level="yellow", value=90.0 - i % 7) for i in range(30)]
    events[-1]["value"] = 84.0
    events += [event("note", 50, actor="nurse-anna", note="Ringt, mår bra")]
    lines = summarise_history(events, "spo2")
    assert [line["action"] for line in lines] == [
        "opened", "readings", "level_raised", "acknowledge", "readings", "note"]
    assert lines[1]["text"] == "3 nya värden, senaste 91 % kl 13:33"
    assert lines[2]["text"] == "nivå höjd till röd"
    assert lines[4]["count"] == 30
    assert lines[4]["text"] == "30 nya värden, senaste 84 % kl 14:06"


def test_one_reading_and_a_notice_without_a_measurement() -> None:
    lines = summarise_history([event("opened", 0, level="yellow"),
                               event("occurred", 1, level="yellow", value=2.5)], None)
    assert lines[1]["text"] == "1 nytt värde, senaste 2,5 kl 13:31"


@pytest.mark.parametrize(("message", "status", "starts"), [
    ({"level": None}, "green", "Tack! Din mätning är mottagen"),
    ({"level": "yellow"}, "yellow", "Tack! Din mätning ligger utanför"),
    ({"level": "red"}, "red", "Din mätning behöver ses över nu"),
    ({"rejected": "future_time"}, "rejected", "Mätningen kunde inte tas emot: klockan"),
    ({"rejected": "schema_invalid"}, "rejected", "Mätningen kunde inte tas emot. Mät gärna"),
])
def test_what_the_patient_was_told(message: dict[str, Any], status: str, starts: str) -> None:
    entry = told({"received_at": NOW, **message})
    assert entry["status"] == status
    assert entry["text"].startswith(starts)
