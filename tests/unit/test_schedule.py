"""Missed measurements against the care plan, in Stockholm time with summer time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hemmon.ingest.model import MeasurementType
from hemmon.rules.model import MissedRule
from hemmon.rules.schedule import missed, period

ZONE = ZoneInfo("Europe/Stockholm")
DAILY = MissedRule(measurement=MeasurementType.BODY_WEIGHT, every=timedelta(days=1),
                   before=time(10, 0))
SINCE = datetime(2026, 3, 1, tzinfo=UTC)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE)


def check(now: datetime, last: datetime | None, since: datetime = SINCE) -> str | None:
    found = missed(DAILY, patient_id="p-1", version=2, effective_from=since, now=now,
                   zone=ZONE, last=last)
    return found.reading_key if found else None


def test_a_morning_weight_before_ten_is_on_time() -> None:
    assert check(local(2026, 11, 23, 10, 5), last=local(2026, 11, 23, 7, 40)) is None


def test_no_weight_by_ten_is_one_notice_named_by_its_deadline() -> None:
    key = check(local(2026, 11, 23, 10, 5), last=local(2026, 11, 22, 7, 40))
    assert key == "missed:2026-11-23T09:00:00+00:00"
    assert check(local(2026, 11, 23, 16, 0), last=local(2026, 11, 22, 7, 40)) == key
    assert check(local(2026, 11, 23, 9, 59), last=local(2026, 11, 22, 7, 40)) is None


def test_the_deadline_is_ten_local_time_across_summer_time() -> None:
    # 29 March 2026: clocks go forward at 02:00; 10:00 is then 08:00 UTC, not 09:00
    start, deadline = period(DAILY, local(2026, 3, 29, 12, 0), ZONE, None, SINCE)
    assert deadline.astimezone(UTC) == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    assert start.astimezone(UTC) == datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    assert deadline - start == timedelta(hours=23)  # the short day


def test_no_notice_for_the_time_before_the_plan() -> None:
    assert check(local(2026, 11, 23, 10, 5), last=None,
                 since=local(2026, 11, 23, 9, 0)) is None
    assert check(local(2026, 11, 24, 10, 5), last=None,
                 since=local(2026, 11, 23, 9, 0)) == "missed:2026-11-24T09:00:00+00:00"


def test_the_notice_is_an_adherence_notice_in_swedish() -> None:
    found = missed(DAILY, patient_id="p-1", version=2, effective_from=SINCE,
                   now=local(2026, 11, 23, 10, 5), zone=ZONE, last=local(2026, 11, 21, 8, 12))
    assert found is not None
    assert (found.category, found.rule_key, found.rule_version) == (
        "adherence", "missed:body_weight", 2)
    assert found.explanation == (
        "Ingen vikt uppmätt till måndag 23 november 10:00 (vårdplan: varje dag före 10:00)."
        " Senaste mätningen: lördag 21 november 08:12.")


@pytest.mark.parametrize(("hours_since", "due"), [(11, False), (13, True)])
def test_a_rolling_plan_without_a_time_of_day(hours_since: int, due: bool) -> None:
    rule = MissedRule(measurement=MeasurementType.SPO2, every=timedelta(hours=12))
    now = local(2026, 11, 23, 12, 0)
    found = missed(rule, patient_id="p-1", version=1, effective_from=SINCE, now=now,
                   zone=ZONE, last=now - timedelta(hours=hours_since))
    assert (found is not None) is due


def test_adherence_counts_planned_and_taken_measurements() -> None:
    from hemmon.rules.schedule import adherence

    start, end = local(2026, 11, 16, 0, 0), local(2026, 11, 23, 0, 0)  # a week: 7 deadlines
    taken = [local(2026, 11, day, 7, 30) for day in (16, 17, 18, 20, 21)]
    taken.append(local(2026, 11, 22, 11, 0))  # after 10:00: counts for the next day
    assert adherence(DAILY, taken, start, end, ZONE) == (7, 5)
