"""Threshold evaluation, rule parsing, templates and a patient's effective rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hemmon.ingest.model import MeasurementType
from hemmon.rules.engine import Point, evaluate_points
from hemmon.rules.evaluate import Finding, threshold_level, worst_level
from hemmon.rules.explain import number, quantity
from hemmon.rules.model import (
    ChangeRule,
    Level,
    MissedRule,
    Rule,
    ThresholdRule,
    parse_duration,
)
from hemmon.rules.templates import GROUPS, effective_rules, parse_rules, templates

SPO2 = ThresholdRule(measurement=MeasurementType.SPO2, yellow_below=92, red_below=88)
SYSTOLIC = ThresholdRule(measurement=MeasurementType.BLOOD_PRESSURE_SYSTOLIC,
                         yellow_above=160, red_above=180, red_below=90)


def reading(kind: MeasurementType, value: float) -> Point:
    return Point(kind, value, datetime(2026, 11, 22, 8, tzinfo=UTC), "d-1/k")


@pytest.mark.parametrize(
    ("rule", "value", "level"),
    [
        (SPO2, 93, None), (SPO2, 92, None), (SPO2, 91.9, Level.YELLOW), (SPO2, 88, Level.YELLOW),
        (SPO2, 87, Level.RED),
        (SYSTOLIC, 160, None), (SYSTOLIC, 161, Level.YELLOW), (SYSTOLIC, 180, Level.YELLOW),
        (SYSTOLIC, 181, Level.RED), (SYSTOLIC, 90, None), (SYSTOLIC, 89, Level.RED),
    ],
)
def test_limits_are_strict(rule: ThresholdRule, value: float, level: Level | None) -> None:
    crossed = threshold_level(rule, value)
    assert (crossed[0] if crossed else None) == level


def evaluate(point: Point, rules: list[Rule], rule_version: int) -> list[Finding]:
    outcome = evaluate_points("p-1", rules, rule_version, {point.type: [point]}, [point])
    return outcome.findings


def test_evaluate_explains_in_swedish_and_ignores_other_measurements() -> None:
    rules: list[Rule] = [SPO2, SYSTOLIC]
    [finding] = evaluate(reading(MeasurementType.SPO2, 86), rules, rule_version=3)
    assert finding.rule_key == "threshold:spo2"
    assert finding.rule_version == 3
    assert (finding.level, finding.limit, finding.direction) == (Level.RED, 88, "below")
    assert finding.explanation == "Syremättnad 86 %, under röd gräns 88 %"
    assert evaluate(reading(MeasurementType.HEART_RATE, 250), rules, 1) == []
    assert worst_level([finding]) is Level.RED
    assert worst_level([]) is Level.GREEN


def test_numbers_are_written_the_swedish_way() -> None:
    assert number(78.5) == "78,5"
    assert number(88.0) == "88"
    assert number(-1.25) == "−1,2"
    assert quantity(MeasurementType.BODY_TEMPERATURE, 38.44) == "38,4 °C"


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "threshold", "measurement": "spo2"},
        {"kind": "threshold", "measurement": "spo2", "yellow_below": 88, "red_below": 92},
        {"kind": "threshold", "measurement": "pulse", "red_above": 1},
        {"kind": "threshold", "measurement": "spo2", "red_below": 88, "colour": "blue"},
        {"kind": "rise", "measurement": "body_weight", "above": 2, "within": "three days"},
        {"kind": "sometimes", "measurement": "spo2"},
    ],
)
def test_bad_rules_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_rules([bad])


def test_the_contract_example_rules_parse() -> None:
    rules = parse_rules([
        {"kind": "threshold", "measurement": "spo2", "yellow_below": 92, "red_below": 88},
        {"kind": "rise", "measurement": "body_weight", "above": 2.0, "within": "3d",
         "level": "red"},
        {"kind": "missed", "measurement": "body_weight", "every": "1d", "before": "10:00",
         "level": "yellow"},
    ])
    assert isinstance(rules[1], ChangeRule)
    assert rules[1].within == timedelta(days=3)
    assert rules[1].model_dump(mode="json")["within"] == "3d"
    assert isinstance(rules[2], MissedRule)
    assert [r.key for r in rules] == ["threshold:spo2", "rise:body_weight", "missed:body_weight"]


def test_durations() -> None:
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_every_group_has_a_template_with_sources() -> None:
    found = templates()
    assert set(found) == set(GROUPS)
    for template in found.values():
        assert template.sources
        assert template.rules


def test_personal_rules_replace_the_template_rule_of_the_same_key() -> None:
    personal = ThresholdRule(measurement=MeasurementType.SPO2, yellow_below=90, red_below=86)
    rules = effective_rules(["heart_failure"], [personal])
    spo2 = [r for r in rules if r.key == "threshold:spo2"]
    assert spo2 == [personal]
    assert any(r.key == "rise:body_weight" for r in rules)


def test_two_groups_merge_to_the_stricter_threshold() -> None:
    rules = effective_rules(["heart_failure", "hypertension"], [])
    [systolic] = [r for r in rules if r.key == "threshold:blood_pressure_systolic"]
    assert isinstance(systolic, ThresholdRule)
    assert systolic.yellow_above == 160  # hypertension's
    assert systolic.red_above == 180
    assert systolic.red_below == 90
    assert systolic.yellow_below == 100  # heart failure's
