"""Evaluate a reading against a patient's rules. Pure and deterministic."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hemmon.ingest.model import MeasurementType, Reading

from .explain import threshold_explanation
from .model import Level, Rule, ThresholdRule

Direction = Literal["above", "below"]
Category = Literal["clinical", "adherence", "device"]


class Finding(BaseModel):
    """A rule that a reading breaks: what an alert is opened or updated from."""

    model_config = ConfigDict(frozen=True)

    patient_id: str
    rule_key: str
    rule_version: int
    measurement: MeasurementType | None
    level: Level
    value: float
    limit: float
    direction: Direction
    measured_at: datetime
    reading_key: str
    explanation: str
    category: Category = "clinical"
    """clinical (the patient's health), adherence (a missed plan) or device (its health)."""





def threshold_level(rule: ThresholdRule, value: float) -> tuple[Level, float, Direction] | None:
    """The level, the limit crossed and its direction; None when the value is green."""
    checks: tuple[tuple[Level, float | None, Direction], ...] = (
        (Level.RED, rule.red_above, "above"),
        (Level.RED, rule.red_below, "below"),
        (Level.YELLOW, rule.yellow_above, "above"),
        (Level.YELLOW, rule.yellow_below, "below"),
    )
    for level, limit, direction in checks:
        if limit is None:
            continue
        if (direction == "above" and value > limit) or (direction == "below" and value < limit):
            return level, limit, direction
    return None


def evaluate(reading: Reading, rules: Sequence[Rule], rule_version: int) -> list[Finding]:
    """The findings one reading gives under the patient's rules (empty means green)."""
    findings = []
    for rule in rules:
        if not isinstance(rule, ThresholdRule) or rule.measurement != reading.type:
            continue
        crossed = threshold_level(rule, reading.value)
        if crossed is None:
            continue
        level, limit, direction = crossed
        findings.append(
            Finding(
                patient_id=reading.patient_id,
                rule_key=rule.key,
                rule_version=rule_version,
                measurement=reading.type,
                level=level,
                value=reading.value,
                limit=limit,
                direction=direction,
                measured_at=reading.measured_at,
                reading_key=reading.key,
                explanation=threshold_explanation(
                    reading.type, reading.value, level, limit, direction
                ),
            )
        )
    return findings


def worst_level(findings: Iterable[Finding]) -> Level:
    """The most urgent level among findings; green when there are none."""
    return max((f.level for f in findings), key=lambda level: level.rank, default=Level.GREEN)
