"""Routing by office hours and holidays, the alert lifecycle, patient feedback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hemmon.alerts.feedback import feedback_for
from hemmon.alerts.lifecycle import (
    Status,
    TransitionError,
    acknowledge,
    apply_finding,
    resolve,
)
from hemmon.alerts.routing import (
    CareTeam,
    OfficeHours,
    OfficeHoursError,
    Route,
    escalation,
    route_for,
)
from hemmon.ingest.model import MeasurementType, Normalised, Rejection, RejectReason
from hemmon.rules.evaluate import Finding
from hemmon.rules.model import Level

STOCKHOLM = ZoneInfo("Europe/Stockholm")
HOURS = OfficeHours.parse("mon-fri 08:00-17:00")
WITH_TEAM = CareTeam(office_hours=HOURS, has_mobile_team=True)
WITHOUT_TEAM = CareTeam(office_hours=HOURS, has_mobile_team=False)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=STOCKHOLM)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (local(2026, 11, 23, 14, 0), True),    # Monday afternoon
        (local(2026, 11, 23, 7, 59), False),
        (local(2026, 11, 23, 17, 0), False),
        (local(2026, 11, 23, 19, 0), False),
        (local(2026, 11, 21, 10, 0), False),   # Saturday
        (local(2026, 6, 19, 10, 0), False),    # midsommarafton (a Friday)
        (local(2026, 12, 24, 10, 0), False),   # julafton
        (local(2026, 1, 6, 10, 0), False),     # trettondedag jul
        (local(2026, 3, 30, 8, 30), True),     # the Monday after the switch to summer time
    ],
)
def test_office_hours_follow_the_swedish_calendar(moment: datetime, is_open: bool) -> None:
    assert HOURS.is_open(moment) is is_open
    assert HOURS.is_open(moment.astimezone(UTC)) is is_open


@pytest.mark.parametrize("bad", ["always", "mon-fri 17:00-08:00", "fri-mon 08:00-17:00",
                                 "mon-fri 25:00-26:00", "xyz 08:00-17:00"])
def test_bad_office_hours_are_refused(bad: str) -> None:
    with pytest.raises(OfficeHoursError):
        OfficeHours.parse(bad)


def test_red_outside_office_hours_goes_to_the_mobile_team() -> None:
    assert route_for(Level.RED, WITH_TEAM, local(2026, 11, 23, 14)) is Route.FAST_VARDKONTAKT
    assert route_for(Level.RED, WITH_TEAM, local(2026, 11, 23, 19)) is Route.MOBILE_TEAM
    assert route_for(Level.YELLOW, WITH_TEAM, local(2026, 11, 23, 19)) is Route.FAST_VARDKONTAKT
    assert route_for(Level.RED, WITHOUT_TEAM, local(2026, 11, 23, 19)) is Route.UNIT_FALLBACK
    assert route_for(Level.RED, WITHOUT_TEAM, local(2026, 11, 23, 14)) is Route.FAST_VARDKONTAKT
    every_red = CareTeam(office_hours=HOURS, has_mobile_team=True, red_to_mobile_team=True)
    assert route_for(Level.RED, every_red, local(2026, 11, 23, 14)) is Route.MOBILE_TEAM
    assert route_for(Level.YELLOW, every_red, local(2026, 11, 23, 14)) is Route.FAST_VARDKONTAKT


@pytest.mark.parametrize(
    ("minutes", "acknowledged", "snoozed_minutes", "expected"),
    [
        (29, False, None, None),
        (30, False, None, Route.MOBILE_TEAM),
        (45, True, None, None),
        (45, False, 20, None),  # snoozed for 20 more minutes
        (90, False, 20, Route.MOBILE_TEAM),  # the snooze ended: escalate now
    ],
)
def test_an_unacknowledged_red_escalates_after_thirty_minutes(
    minutes: int, acknowledged: bool, snoozed_minutes: int | None, expected: Route | None
) -> None:
    since = local(2026, 11, 23, 14, 0)
    now = since + timedelta(minutes=minutes)
    snoozed = now + timedelta(minutes=snoozed_minutes) if snoozed_minutes else None
    if snoozed_minutes and minutes >= 90:
        snoozed = since + timedelta(minutes=65)
    assert escalation(level=Level.RED, route=Route.FAST_VARDKONTAKT, acknowledged=acknowledged,
                      category="clinical", level_since=since, snoozed_until=snoozed,
                      team=WITH_TEAM, now=now, after=timedelta(minutes=30)) == expected
    assert escalation(level=Level.RED, route=Route.FAST_VARDKONTAKT, acknowledged=False,
                      category="clinical", level_since=since, snoozed_until=None,
                      team=WITHOUT_TEAM, now=since + timedelta(minutes=31),
                      after=timedelta(minutes=30)) is Route.UNIT_FALLBACK
    assert escalation(level=Level.YELLOW, route=Route.FAST_VARDKONTAKT, acknowledged=False,
                      category="clinical", level_since=since, snoozed_until=None,
                      team=WITH_TEAM, now=since + timedelta(hours=5),
                      after=timedelta(minutes=30)) is None


def finding(level: Level, value: float, hour: int = 9) -> Finding:
    return Finding(patient_id="p-1", rule_key="threshold:spo2", rule_version=1,
                   measurement=MeasurementType.SPO2, level=level, value=value, limit=88,
                   direction="below", measured_at=local(2026, 11, 23, hour), reading_key="k",
                   explanation=f"Syremättnad {value:g} %")


def test_a_finding_opens_then_updates_one_alert_in_place() -> None:
    opened = apply_finding(None, finding(Level.YELLOW, 90), WITH_TEAM, local(2026, 11, 23, 19))
    assert (opened.status, opened.occurrences, opened.route) == (
        Status.OPEN, 1, Route.FAST_VARDKONTAKT)
    seen = acknowledge(opened, local(2026, 11, 23, 19, 5))
    worse = apply_finding(seen, finding(Level.RED, 85, 10), WITH_TEAM, local(2026, 11, 23, 19, 6))
    assert worse.occurrences == 2
    assert worse.level is Level.RED
    assert worse.route is Route.MOBILE_TEAM
    assert worse.status is Status.OPEN  # a worse level needs eyes again
    assert worse.last_value == 85
    milder = apply_finding(worse, finding(Level.YELLOW, 90, 11), WITH_TEAM,
                           local(2026, 11, 23, 19, 7))
    assert milder.level is Level.RED
    assert milder.occurrences == 3


def test_a_late_reading_counts_but_does_not_replace_the_latest_value() -> None:
    current = apply_finding(None, finding(Level.YELLOW, 90, 12), WITH_TEAM,
                            local(2026, 11, 23, 12))
    late = apply_finding(current, finding(Level.YELLOW, 91, 8), WITH_TEAM,
                         local(2026, 11, 23, 13))
    assert late.occurrences == 2
    assert late.last_value == 90


def test_transitions_refuse_what_the_status_does_not_allow() -> None:
    alert = apply_finding(None, finding(Level.RED, 85), WITH_TEAM, local(2026, 11, 23, 9))
    done = resolve(alert, local(2026, 11, 23, 10))
    with pytest.raises(TransitionError):
        resolve(done, local(2026, 11, 23, 11))
    with pytest.raises(TransitionError):
        acknowledge(done, local(2026, 11, 23, 11))
    again = apply_finding(done, finding(Level.RED, 84), WITH_TEAM, local(2026, 11, 23, 12))
    assert (again.status, again.occurrences, again.id) == (Status.OPEN, 1, None)


def test_feedback_for_a_message_without_readings_is_rejected_in_swedish() -> None:
    rejection = Rejection(reason=RejectReason.FUTURE_TIME, detail="d", topic="t", raw=b"x",
                          received_at=datetime.now(UTC))
    feedback = feedback_for(Normalised(rejections=(rejection,), key="m-1"), [])
    assert feedback.status == "rejected"
    assert "klockan" in feedback.text
    assert feedback.message_id == "m-1"
