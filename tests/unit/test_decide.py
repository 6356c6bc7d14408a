"""The alert half of the batch core: findings, escalations and actions as values in and out."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hemmon.alerts.decide import (
    Acknowledge,
    Page,
    Resolve,
    Snooze,
    decide_action,
    decide_escalations,
    decide_findings,
    expire_snoozes,
    recheck,
)
from hemmon.alerts.lifecycle import Alert, Outcome, Status, TransitionError
from hemmon.alerts.routing import CareTeam, OfficeHours, Route
from hemmon.ingest.model import MeasurementType
from hemmon.rules.engine import Clear
from hemmon.rules.evaluate import Finding
from hemmon.rules.model import Level, ThresholdRule

STOCKHOLM = ZoneInfo("Europe/Stockholm")
TUESDAY_14 = datetime(2026, 11, 24, 14, 0, tzinfo=STOCKHOLM)
TEAM = CareTeam(OfficeHours.parse("mon-fri 08:00-17:00"), has_mobile_team=True)
AFTER = timedelta(minutes=30)


def finding(level: Level, value: float, at: datetime) -> Finding:
    return Finding(patient_id="p-1", rule_key="threshold:spo2", rule_version=1,
                   measurement=MeasurementType.SPO2, level=level, value=value, limit=88,
                   direction="below", measured_at=at, reading_key=f"d/{at}/spo2",
                   explanation=f"SpO2 {value}")


def red_alert(**changes: object) -> Alert:
    plan = decide_findings([finding(Level.RED, 85, TUESDAY_14)], (), {}, {"p-1": TEAM},
                           TUESDAY_14)
    return plan.changes[0].alert.model_copy(update={"id": 7, **changes})


def test_findings_of_one_batch_open_one_alert_and_update_it_in_place() -> None:
    open_alerts: dict[tuple[str, str], Alert] = {}
    plan = decide_findings([finding(Level.YELLOW, 90, TUESDAY_14),
                            finding(Level.RED, 85, TUESDAY_14 + timedelta(minutes=5))],
                           (), open_alerts, {"p-1": TEAM}, TUESDAY_14)
    first, second = plan.changes
    assert (first.opened, second.opened) == (True, False)
    assert (second.alert.level, second.alert.occurrences) == (Level.RED, 2)
    assert [e.action for c in plan.changes for e in c.events] == ["opened", "occurred"]
    assert open_alerts[("p-1", "threshold:spo2")] == second.alert


def test_a_red_alert_out_of_hours_is_paged_and_an_ended_excursion_is_marked() -> None:
    evening = TUESDAY_14 + timedelta(hours=6)
    plan = decide_findings([finding(Level.RED, 85, evening)], (), {}, {"p-1": TEAM}, evening)
    assert plan.changes[0].page is Page.PAGE
    assert plan.changes[0].alert.route is Route.MOBILE_TEAM
    open_alerts = {("p-1", "threshold:spo2"): red_alert()}
    later = TUESDAY_14 + timedelta(hours=1)
    cleared = decide_findings([], [("p-1", Clear("threshold:spo2", later))], open_alerts,
                              {"p-1": TEAM}, later)
    assert cleared.changes[0].alert.cleared_at == later
    assert decide_findings([], [("p-1", Clear("threshold:spo2", later))], open_alerts,
                           {"p-1": TEAM}, later).changes == []  # said once


@pytest.mark.parametrize(("assignee", "escalated_at", "minutes", "route", "paged"), [
    (None, None, 29, None, None),
    (None, None, 30, Route.MOBILE_TEAM, None),
    ("mobile_team", None, 30, Route.MOBILE_TEAM, None),
    ("nurse-eva", None, 30, Route.FAST_VARDKONTAKT, "nurse-eva"),  # she took it: paged
    ("nurse-eva", 30, 59, None, None),  # her own 30 minutes
    ("nurse-eva", 30, 60, Route.MOBILE_TEAM, None),  # then it moves on
])
def test_an_unacknowledged_red_alert_escalates_to_whoever_took_it_then_on(
        assignee: str | None, escalated_at: int | None, minutes: int, route: Route | None,
        paged: str | None) -> None:
    alert = red_alert(assignee=assignee, escalated_at=None if escalated_at is None
                      else TUESDAY_14 + timedelta(minutes=escalated_at))
    plan = decide_escalations([alert], {"p-1": TEAM}, TUESDAY_14 + timedelta(minutes=minutes),
                              AFTER)
    if route is None:
        assert plan.changes == []
        return
    [change] = plan.changes
    assert (change.alert.route, change.page_to, change.page) == (route, paged, Page.ESCALATION)


def test_actions_are_values_and_a_snooze_always_ends() -> None:
    alert = red_alert()
    acked = decide_action(alert, Acknowledge("ringer"), "nurse-anna", TUESDAY_14)
    assert acked.alert.status is Status.ACKNOWLEDGED
    assert acked.columns["acknowledged_by"] == "nurse-anna"
    with pytest.raises(TransitionError):
        decide_action(acked.alert, Acknowledge(), "nurse-anna", TUESDAY_14)
    done = decide_action(alert, Resolve(Outcome.ADVICE_GIVEN, "råd"), "nurse-anna", TUESDAY_14)
    assert done.events[0].note == "advice_given: råd"
    until = TUESDAY_14 + timedelta(minutes=20)
    snoozed = decide_action(alert, Snooze(until), "nurse-anna", TUESDAY_14).alert
    assert expire_snoozes([snoozed], until - timedelta(seconds=1)).changes == []
    [ended] = expire_snoozes([snoozed], until).changes
    assert ended.alert.snoozed_until is None


def test_a_rule_change_resolves_only_what_the_new_rules_no_longer_justify() -> None:
    alert = red_alert()
    looser = ThresholdRule(measurement=MeasurementType.SPO2, yellow_below=84, red_below=80)
    stricter = ThresholdRule(measurement=MeasurementType.SPO2, yellow_below=92, red_below=88)
    assert len(recheck([alert], [looser], 2, "nurse-anna", TUESDAY_14).changes) == 1
    assert recheck([alert], [stricter], 2, "nurse-anna", TUESDAY_14).changes == []
