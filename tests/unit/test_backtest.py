"""The backtest: the core over recorded messages on a simulated clock (no services)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hemmon.backtest import BacktestError, read_messages, run_backtest

STOCKHOLM = ZoneInfo("Europe/Stockholm")
ROSTER: dict[str, Any] = {
    "units": [{"id": "hc-stugun", "name": "Stugun hälsocentral",
               "office_hours": "mon-fri 08:00-17:00"}],
    "teams": [{"id": "mint", "name": "MiNT Östersund"}],
    "clinicians": [{"id": "nurse-anna", "name": "Anna Berg", "unit": "hc-stugun"}],
    "patients": [{"id": "p-0001", "unit": "hc-stugun", "fast_vardkontakt": "nurse-anna",
                  "mobile_team": "mint", "groups": ["copd"],
                  "devices": [{"id": "dev-0001", "expect_every": "7d"}]}],
}


def reading(at: datetime, key: str, **values: float) -> dict[str, Any]:
    units = {"spo2": "%", "heart_rate": "/min", "body_weight": "kg"}
    return {"topic": "hemmon/v1/devices/dev-0001/readings",
            "payload": {"schema": "hemmon.reading/1", "message_id": key,
                        "measured_at": at.isoformat(),
                        "measurements": [{"type": t, "value": v, "unit": units[t]}
                                         for t, v in values.items()]}}


def alerts(records: list[dict[str, Any]], category: str = "clinical") -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "alert" and r["category"] == category]


def test_a_red_value_opens_an_alert_that_escalates_and_resolves_on_the_simulated_clock(
) -> None:
    tuesday = datetime(2026, 11, 24, 14, 0, tzinfo=STOCKHOLM)
    records = run_backtest(ROSTER, [reading(tuesday, "a", spo2=85),
                                    reading(tuesday + timedelta(hours=30), "b", spo2=96)])
    [alert] = alerts(records)
    assert (alert["rule"], alert["level"]) == ("threshold:spo2", "red")
    # nobody re-measured: the template's 12-minute wait for one, then the next sweep
    opened = datetime.fromisoformat(alert["opened_at"])
    assert timedelta(minutes=12) <= opened - tuesday <= timedelta(minutes=13)
    assert alert["route"] == "mobile_team"  # nobody acknowledged within 30 minutes
    assert alert["resolved_at"] == (opened + timedelta(hours=24)).isoformat()
    summary = records[-1]
    assert summary["kind"] == "summary"
    assert summary["alerts_per_patient_week"]["red"] > 0
    assert summary["by_rule"] == {"threshold:spo2": 1}


@pytest.mark.parametrize(("again", "alerted"), [(95, False), (86, True)],
                         ids=["cold-fingers", "confirmed"])
def test_a_red_value_that_a_normal_re_measurement_contradicts_never_reaches_a_nurse(
        again: float, alerted: bool) -> None:
    cold = datetime(2026, 11, 24, 7, 40, tzinfo=STOCKHOLM)
    records = run_backtest(ROSTER, [reading(cold, "a", spo2=85),
                                    reading(cold + timedelta(minutes=4), "b", spo2=again)])
    opened = [datetime.fromisoformat(a["opened_at"]) for a in alerts(records)]
    assert opened == ([cold + timedelta(minutes=4)] if alerted else [])


def test_a_problem_that_persists_raises_again_after_the_automatic_resolution() -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=STOCKHOLM)
    stream = [reading(start + timedelta(hours=12 * i), f"m{i}", spo2=85) for i in range(5)]
    records = run_backtest(ROSTER, stream, resolve_after=timedelta(hours=20))
    opened = [a["opened_at"] for a in alerts(records)]
    assert len(opened) == 3  # 0 h, 24 h (after the resolution at 20 h), 48 h


@pytest.mark.parametrize("sunday", [date(2026, 3, 29), date(2026, 10, 25)],
                         ids=["summer-time-begins", "summer-time-ends"])
def test_a_missed_weighing_is_noticed_at_ten_local_time_on_daylight_saving_days(
        sunday: date) -> None:
    roster = json.loads(json.dumps(ROSTER))
    roster["patients"][0]["rules"] = [{"kind": "missed", "measurement": "body_weight",
                                       "every": "1d", "before": "10:00"}]
    saturday = datetime.combine(sunday - timedelta(days=1), time(9, 30), STOCKHOLM)
    records = run_backtest(roster, [reading(saturday, "sat", body_weight=80.0)],
                           end=saturday + timedelta(days=1, hours=2))
    [notice] = alerts(records, "adherence")
    deadline = datetime(sunday.year, sunday.month, sunday.day, 10, 0, tzinfo=STOCKHOLM)
    assert notice["opened_at"] == deadline.astimezone(UTC).isoformat()


def test_office_hours_follow_the_configured_time_zone() -> None:
    tuesday_evening_utc = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)  # 20:00 in Sweden
    stream = [reading(tuesday_evening_utc, "a", spo2=85)]
    never = timedelta(days=30)  # no escalation: the route is the one it opened with
    [sweden] = alerts(run_backtest(ROSTER, stream, escalate_after=never))
    [new_york] = alerts(run_backtest(ROSTER, stream, escalate_after=never,
                                     zone=ZoneInfo("America/New_York")))
    assert sweden["route"] == "mobile_team"  # 20:00, closed
    assert new_york["route"] == "fast_vardkontakt"  # 14:00, open


def test_the_same_input_gives_the_same_bytes_and_bad_lines_are_named() -> None:
    start = datetime(2026, 11, 24, 7, 0, tzinfo=STOCKHOLM)
    stream = [reading(start + timedelta(hours=8 * i), f"m{i}", spo2=90 - i % 4,
                      heart_rate=70 + 13 * (i % 5)) for i in range(30)]
    stream.append({"topic": "hemmon/v1/devices/dev-9/readings", "payload": "nonsense",
                   "received_at": start.isoformat()})

    def run() -> str:
        return "\n".join(json.dumps(r, sort_keys=True) for r in run_backtest(ROSTER, stream))

    first = run()
    assert first == run()
    assert '"kind": "rejection"' in first
    with pytest.raises(BacktestError, match="line 2"):
        read_messages(['{"topic": "t", "payload": {}, "received_at": "2026-01-01T00:00:00Z"}',
                       '{"topic": "t"}'])
