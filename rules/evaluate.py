"""Findings (a rule a reading broke) and the single-reading threshold check."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hemmon.ingest.model import MeasurementType

from .model import Level, ThresholdRule

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


def worst_level(findings: Iterable[Finding]) -> Level:
    """The most urgent level among findings; green when there are none."""
    return max((f.level for f in findings), key=lambda level: level.rank, default=Level.GREEN)
