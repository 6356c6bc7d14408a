"""The rules engine: NEWS2 bands, windows, hysteresis and arrival order."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hemmon.ingest.model import MeasurementType
from hemmon.rules import news2 as n
from hemmon.rules.engine import Point, evaluate_points, excursion_ends, window_start
from hemmon.rules.model import ChangeRule, Level, MeanRule, News2Rule, Rule, ThresholdRule
from hemmon.rules.templates import effective_rules

M = MeasurementType
T0 = datetime(2026, 11, 2, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("score", "cases"),
    [
        (n.respiration, [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)]),
        (n.spo2_scale1, [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]),
        (n.systolic, [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0),
                      (220, 3)]),
        (n.pulse, [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
                   (130, 2), (131, 3)]),
        (n.temperature, [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1),
                         (39.0, 1), (39.1, 2)]),
    ],
)
def test_news2_bands_at_every_edge(score: object, cases: list[tuple[float, int]]) -> None:
    for value, expected in cases:
        assert score(value) == expected, value  # type: ignore[operator]


@pytest.mark.parametrize(
    ("value", "on_oxygen", "expected"),
    [(83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1), (87, False, 1),
     (88, False, 0), (92, False, 0), (93, False, 0), (99, False, 0),
     (83, True, 3), (88, True, 0), (92, True, 0), (93, True, 1), (94, True, 1), (95, True, 2),
     (96, True, 2), (97, True, 3)],
)
def test_news2_spo2_scale2(value: float, on_oxygen: bool, expected: int) -> None:
    assert n.spo2_scale2(value, on_oxygen) == expected


def test_news2_totals_responses_and_partial_scores() -> None:
    vitals = {M.SPO2: 95.0, M.HEART_RATE: 115.0, M.BLOOD_PRESSURE_SYSTOLIC: 105.0}
    result = n.news2(vitals, scale=1, on_oxygen=False)
    assert result.total == 1 + 2 + 1
    assert result.response == "low"
    assert set(result.missing) == {"andningsfrekvens", "temperatur", "medvetandegrad"}
    assert n.news2({M.SPO2: 91.0}, scale=1, on_oxygen=None).response == "urgent"  # a single 3
    assert n.news2({**vitals, M.RESPIRATORY_RATE: 26.0}, scale=1,
                   on_oxygen=True).response == "emergency"  # 4 + 3 + 2 (oxygen)


def series(kind: MeasurementType, values: Sequence[tuple[float, float]]) -> list[Point]:
    """Points from (hours after T0, value)."""
    return [Point(kind, value, T0 + timedelta(hours=hours), f"d/{i}")
            for i, (hours, value) in enumerate(values)]


def findings(rules: Sequence[Rule], points: list[Point],
             targets: list[Point] | None = None) -> list[tuple[str, str, Level]]:
    by_type: dict[MeasurementType, list[Point]] = defaultdict(list)
    for p in sorted(points, key=lambda p: p.measured_at):
        by_type[p.type].append(p)
    out = evaluate_points("p-1", rules, 1, by_type, targets if targets is not None else points)
    return sorted((f.rule_key, f.reading_key, f.level) for f in out.findings)


HEART_FAILURE = effective_rules(["heart_failure"], [])


def weights(*values: tuple[float, float]) -> list[Point]:
    return series(M.BODY_WEIGHT, values)


def test_heart_failure_fires_on_2_1_kg_in_60_hours() -> None:
    points = weights((0, 76.0), (24, 76.6), (48, 77.4), (60, 78.1))
    assert findings(HEART_FAILURE, points) == [("rise:body_weight", "d/2", Level.YELLOW),
                                               ("rise:body_weight", "d/3", Level.RED)]


def test_heart_failure_1_9_kg_is_the_yellow_step_not_red() -> None:
    assert findings(HEART_FAILURE, weights((0, 76.0), (24, 76.9), (60, 77.9))) == [
        ("rise:body_weight", "d/2", Level.YELLOW)]


def test_heart_failure_2_1_kg_over_5_calendar_days_is_not_red() -> None:
    points = weights((0, 76.0), (24, 76.5), (48, 77.0), (72, 77.6), (96, 78.1))
    assert Level.RED not in {level for *_, level in findings(HEART_FAILURE, points)}


def test_three_dygn_are_calendar_days_when_the_weighing_drifts() -> None:
    """0.8 kg a day, weighed at 07:00, 07:20, 07:40, 07:20 local: the fourth morning is
    three calendar days after the first, though 72 hours and 20 minutes later."""
    rule = ChangeRule(kind="rise", measurement=M.BODY_WEIGHT, above=2.0,
                      within=timedelta(days=3), level=Level.RED)
    start = datetime(2026, 10, 12, 5, 0, tzinfo=UTC)  # 07:00 in Stockholm (summer time)
    drift = (0, 20, 40, 20)
    points = [Point(M.BODY_WEIGHT, 80.0 + 0.8 * day, start + timedelta(days=day, minutes=m),
                    f"d/{day}") for day, m in enumerate(drift)]
    assert findings([rule], points) == [("rise:body_weight", "d/3", Level.RED)]


def test_a_calendar_window_spans_the_summer_time_change() -> None:
    """Sunday 25 October 2026 has 25 hours in Stockholm; three dygn are still three days."""
    at = datetime(2026, 10, 27, 6, 10, tzinfo=UTC)  # Tuesday 07:10, winter time
    assert window_start(timedelta(days=3), at) == datetime(2026, 10, 23, 22, 0, tzinfo=UTC)
    assert window_start(timedelta(hours=5), at) == at - timedelta(hours=5)


def test_the_rise_explanation_names_readings_and_limit() -> None:
    points = weights((0, 76.1), (24, 76.9), (48, 77.7), (60, 78.5))
    by_type = {M.BODY_WEIGHT: points}
    out = evaluate_points("p-1", HEART_FAILURE, 4, by_type, points[-1:])
    [finding] = out.findings
    assert finding.explanation == "Vikt +2,4 kg på 3 dygn (76,1 -> 78,5 kg), gräns 2,0 kg"
    assert finding.rule_version == 4


def test_spo2_fall_from_the_personal_baseline() -> None:
    rule = ChangeRule(kind="fall", measurement=M.SPO2, above=4, within=timedelta(days=14))
    points = series(M.SPO2, [(0, 95), (24, 96), (200, 94), (300, 91)])
    assert findings([rule], points) == [("fall:spo2", "d/3", Level.YELLOW)]
    old_high = series(M.SPO2, [(0, 99), (15 * 24, 94)])  # the high is outside 14 days
    assert findings([rule], old_high) == []


def test_a_seven_day_mean_is_a_follow_up_notice() -> None:
    rule = MeanRule(measurement=M.BLOOD_PRESSURE_SYSTOLIC, within=timedelta(days=7), above=135)
    points = series(M.BLOOD_PRESSURE_SYSTOLIC, [(0, 150), (24, 131), (48, 140)])
    assert findings([rule], points) == [("mean:blood_pressure_systolic", "d/2", Level.YELLOW)]
    assert findings([rule], points[:2]) == []  # fewer than three readings: no mean


def test_news2_from_the_latest_vitals_in_its_window() -> None:
    rule = News2Rule(scale=2)
    points = (series(M.SPO2, [(0, 85)]) + series(M.HEART_RATE, [(0.1, 118)])
              + series(M.BLOOD_PRESSURE_SYSTOLIC, [(0.1, 98)]))
    by_type = {p.type: [p] for p in points}
    out = evaluate_points("p-1", [rule], 1, by_type, points[-1:])
    [finding] = out.findings
    assert finding.level is Level.RED
    assert finding.explanation.startswith("NEWS2 6 (brådskande, skala 2)")
    assert "medvetandegrad" in finding.explanation


SPO2_RULE = ThresholdRule(measurement=M.SPO2, yellow_below=92, red_below=88)


def test_an_excursion_ends_only_back_past_the_margin_or_after_n_good_readings() -> None:
    points = series(M.SPO2, [(0, 91), (1, 92), (2, 91.5), (3, 92.5), (4, 93)])
    ends = [ended for _, ended in excursion_ends(SPO2_RULE, points)]
    assert ends == [False, False, False, False, True]  # 93 = 92 + the 1 % margin
    three = series(M.SPO2, [(0, 91), (1, 92), (2, 92.5), (3, 92.9)])
    assert [ended for _, ended in excursion_ends(SPO2_RULE, three)] == [
        False, False, False, True]  # three good readings in a row


@settings(max_examples=200)
@given(st.lists(st.floats(min_value=-3, max_value=3), min_size=1, max_size=60))
def test_a_random_walk_around_a_limit_gives_one_alert_per_excursion(steps: list[float]) -> None:
    values, value = [], 92.0
    for step in steps:
        value = min(100.0, max(80.0, value + step))
        values.append(value)
    points = series(M.SPO2, [(i, v) for i, v in enumerate(values)])
    # worst case for flapping: the alert is resolved the moment its excursion ends
    alerts, open_alert, excursions, active = 0, False, 0, False
    for point, ended in excursion_ends(SPO2_RULE, points):
        breaking = point.value < 92
        if breaking and not active:
            excursions += 1
        active = (active or breaking) and not ended
        if breaking and not open_alert:
            alerts, open_alert = alerts + 1, True
        if ended:
            open_alert = False
    assert alerts == excursions


def test_hovering_at_the_limit_is_one_excursion() -> None:
    values = [91.8, 92.1, 91.9, 92.2, 91.7, 92.3, 91.9]
    points = series(M.SPO2, list(enumerate(values)))
    assert not any(ended for _, ended in excursion_ends(SPO2_RULE, points))


def incremental(rules: Sequence[Rule], arrivals: list[Point]) -> set[tuple[str, str, Level]]:
    """The findings an incremental evaluator stores when readings arrive in this order:
    each arrival evaluates itself and the later readings whose windows it falls into."""
    stored: list[Point] = []
    found: set[tuple[str, str, Level]] = set()
    horizon = timedelta(days=14)
    for point in arrivals:
        stored.append(point)
        targets = [p for p in stored if point.measured_at <= p.measured_at
                   <= point.measured_at + horizon and p.type == point.type]
        found.update(findings(rules, stored, targets))
    return found


@settings(max_examples=100)
@given(st.lists(st.floats(min_value=70, max_value=80), min_size=2, max_size=12),
       st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_findings(values: list[float],
                                                    shuffle: random.Random) -> None:
    rules = [*list(HEART_FAILURE), SPO2_RULE]
    points = weights(*[(i * 20, v) for i, v in enumerate(values)])
    in_order = incremental(rules, points)
    shuffled = points[:]
    shuffle.shuffle(shuffled)
    # A reading evaluated before an earlier one arrives may find the milder step first:
    # the alert takes the worst level, so the worst per reading must not depend on order.
    assert worst(incremental(rules, shuffled)) == worst(in_order) == worst(
        set(findings(rules, points)))


def worst(found: set[tuple[str, str, Level]]) -> dict[tuple[str, str], Level]:
    out: dict[tuple[str, str], Level] = {}
    for rule, reading, level in found:
        current = out.get((rule, reading))
        if current is None or level.rank > current.rank:
            out[(rule, reading)] = level
    return out


def test_news2_leaves_a_single_three_to_the_threshold_rules() -> None:
    points = series(M.SPO2, [(0, 80)])
    out = evaluate_points("p-1", [News2Rule(scale=2)], 1, {M.SPO2: points}, points)
    assert out.findings == []
