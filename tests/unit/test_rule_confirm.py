"""The confirm wait, the median baseline and the mean that leaves alerted readings out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hemmon.ingest.model import MeasurementType as M
from hemmon.rules.engine import Outcome, Point, evaluate_due, evaluate_points, lookback
from hemmon.rules.model import ChangeRule, Level, MeanRule, Rule, ThresholdRule
from hemmon.rules.templates import effective_rules

T0 = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
MIN = timedelta(minutes=1)
SPO2 = ThresholdRule(measurement=M.SPO2, yellow_below=92, red_below=88, confirm=15 * MIN)


def points(kind: M, values: Sequence[tuple[float, float]]) -> list[Point]:
    """Points from (minutes after T0, value)."""
    return [Point(kind, v, T0 + m * MIN, f"d/{i}") for i, (m, v) in enumerate(values)]


def run(rules: Sequence[Rule], series: list[Point], targets: list[Point] | None = None,
        now: datetime | None = None) -> Outcome:
    return evaluate_points("p-1", rules, 1, {series[0].type: series},
                           series if targets is None else targets, now=now)


def keys(out: Outcome) -> list[tuple[str, Level]]:
    return [(f.reading_key, f.level) for f in out.findings]


def test_cold_fingers_then_a_normal_re_measurement_never_alerts() -> None:
    series = points(M.SPO2, [(0, 85), (4, 95)])
    assert keys(run([SPO2], series)) == []
    assert keys(run([SPO2], series, now=T0 + 4 * MIN)) == []


def test_a_red_value_is_pending_while_the_wait_runs_and_alerts_when_it_ends() -> None:
    series = points(M.SPO2, [(0, 85)])
    waiting = run([SPO2], series, now=T0 + 2 * MIN)
    assert keys(waiting) == []
    [pending] = waiting.pending
    assert (pending.rule_key, pending.reading_key) == ("threshold:spo2", "d/0")
    assert pending.due_at == T0 + 15 * MIN
    assert keys(run([SPO2], series, now=pending.due_at)) == [("d/0", Level.RED)]
    assert keys(run([SPO2], series)) == [("d/0", Level.RED)]  # history: the wait is over


def test_a_red_re_measurement_alerts_at_once_confirmed() -> None:
    series = points(M.SPO2, [(0, 85), (3, 86)])
    out = run([SPO2], series, now=T0 + 3 * MIN)
    assert keys(out) == [("d/1", Level.RED)]
    assert [p.reading_key for p in out.pending] == []


def test_a_re_measurement_at_the_limit_confirms_the_first() -> None:
    series = points(M.SPO2, [(0, 87), (3, 92)])  # back inside, but not by half the margin
    assert keys(run([SPO2], series, targets=series[:1], now=T0 + 3 * MIN)) == [
        ("d/0", Level.RED)]


def test_winter_clothes_then_a_re_weighing_do_not_alert() -> None:
    rule = ChangeRule(kind="rise", measurement=M.BODY_WEIGHT, above=2.0, yellow_above=1.2,
                      within=timedelta(days=3), level=Level.RED, confirm=15 * MIN)
    day = 24 * 60
    series = points(M.BODY_WEIGHT, [(0, 80.0), (day, 80.1), (day + 3, 81.7),
                                    (day + 6, 80.2)])
    assert keys(run([rule], series)) == []
    series = points(M.BODY_WEIGHT, [(0, 80.0), (day, 81.0), (2 * day, 82.3)])
    assert keys(run([rule], series)) == [("d/2", Level.RED)]


def test_the_confirm_wait_widens_the_lookback() -> None:
    assert lookback([SPO2]) > lookback([ThresholdRule(measurement=M.SPO2, red_below=88)])


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(80, 99)), min_size=1, max_size=8,
                unique_by=lambda t: t[0]))
def test_a_confirmed_red_is_never_held_longer_than_the_wait(
        readings: list[tuple[int, int]]) -> None:
    """Whatever the re-measurements, a red reading confirmed by the next one alerts no
    later than that next reading, and an unanswered one at most 15 minutes after it."""
    series = points(M.SPO2, sorted(readings))
    complete = run([SPO2], series)
    for i, point in enumerate(series):
        if point.value >= 88:
            continue
        later = [p for p in series[i + 1:] if p.measured_at <= point.measured_at + 15 * MIN]
        if later and later[0].value < 88:
            assert (later[0].key, Level.RED) in keys(complete)
        if not later:
            assert (point.key, Level.RED) in keys(complete)


def test_a_fall_from_the_median_is_not_moved_by_one_high_reading() -> None:
    rule = ChangeRule(kind="fall", measurement=M.SPO2, above=3.5, within=timedelta(days=14),
                      baseline="median")
    day = 24 * 60
    values = [(i * day, 93.0) for i in range(6)] + [(6 * day, 97.0), (7 * day, 92.0)]
    assert keys(run([rule], points(M.SPO2, values))) == []
    values.append((8 * day, 89.0))
    out = run([rule], points(M.SPO2, values))
    assert keys(out) == [("d/8", Level.YELLOW)]
    assert "från medianen för 14 dygn" in out.findings[0].explanation


def test_the_mean_leaves_out_readings_with_an_alert_of_their_own() -> None:
    rules = [ThresholdRule(measurement=M.BLOOD_PRESSURE_SYSTOLIC, yellow_above=160,
                           red_above=180),
             MeanRule(measurement=M.BLOOD_PRESSURE_SYSTOLIC, within=timedelta(days=7),
                      above=135)]
    hour = 60
    series = points(M.BLOOD_PRESSURE_SYSTOLIC,
                    [(0, 128), (12 * hour, 205), (24 * hour, 198), (36 * hour, 130),
                     (48 * hour, 126)])
    out = run(rules, series, targets=series[-1:])
    assert keys(out) == []


@pytest.mark.parametrize("group", ["heart_failure", "copd", "hypertension"])
def test_templates_wait_for_a_re_measurement_where_artefacts_are_common(group: str) -> None:
    waits = [r for r in effective_rules([group], [])
             if isinstance(r, ThresholdRule | ChangeRule) and r.confirm is not None]
    assert waits
    assert all(r.confirm == 12 * MIN for r in waits)


def test_merging_two_groups_keeps_the_wait() -> None:
    [systolic] = [r for r in effective_rules(["heart_failure", "hypertension"], [])
                  if r.key == "threshold:blood_pressure_systolic"]
    assert isinstance(systolic, ThresholdRule)
    assert systolic.confirm == 12 * MIN


def test_due_pending_readings_alert_once_and_only_for_their_rule() -> None:
    pulse = ThresholdRule(measurement=M.HEART_RATE, yellow_above=100, red_above=120)
    series = points(M.SPO2, [(0, 85)])
    held = run([SPO2, pulse], series, now=T0 + MIN).pending
    early = evaluate_due("p-1", [SPO2, pulse], 1, {M.SPO2: series}, held, now=T0 + 5 * MIN)
    assert (early.findings, early.pending) == ([], held)
    done = evaluate_due("p-1", [SPO2, pulse], 1, {M.SPO2: series}, held, now=T0 + 15 * MIN)
    assert [(f.rule_key, f.reading_key) for f in done.findings] == [("threshold:spo2", "d/0")]
    assert done.pending == []
    answered = points(M.SPO2, [(0, 85), (4, 96)])
    settled = evaluate_due("p-1", [SPO2], 1, {M.SPO2: answered}, held, now=T0 + 15 * MIN)
    assert settled.findings == []


def test_a_change_exactly_at_the_step_is_not_above_it() -> None:
    rule = ChangeRule(kind="rise", measurement=M.BODY_WEIGHT, above=2.0, yellow_above=1.2,
                      within=timedelta(days=3), level=Level.RED)
    series = points(M.BODY_WEIGHT, [(0, 80.0), (24 * 60, 81.2)])  # 1.2000000000000028
    assert keys(run([rule], series)) == []
