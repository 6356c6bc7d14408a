"""A patient's rules, as written in the roster and the group templates (contract.md).

Each rule has a `key` (kind and measurement): a patient has at most one rule per key, and at
most one open alert per key. Personal rules replace a template's rule with the same key.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from hemmon.ingest.model import MeasurementType


class Level(StrEnum):
    """What a reading means for the patient: green never reaches a nurse."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.GREEN: 0, Level.YELLOW: 1, Level.RED: 2}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|h|d|w)\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> timedelta:
    """'30m', '12h', '3d', '2w' (or a timedelta) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 30m, 12h, 3d or 2w")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds // 60}m"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
AlertLevel = Literal[Level.YELLOW, Level.RED]


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ThresholdRule(_Rule):
    """Yellow/red when a single reading is above or below a limit (strictly)."""

    kind: Literal["threshold"] = "threshold"
    measurement: MeasurementType
    yellow_above: float | None = None
    red_above: float | None = None
    yellow_below: float | None = None
    red_below: float | None = None
    clear_margin: float | None = Field(default=None, ge=0)
    """How far back inside the limits ends an excursion (None: a default per measurement)."""
    clear_after: int = Field(default=3, ge=1, le=50)
    """Or this many readings in a row inside the limits."""
    confirm: Duration | None = None
    """Wait this long for a re-measurement before alerting (see `engine`): a normal one
    within it cancels the finding (cold fingers, stairs), a breaking one confirms it at once."""

    @model_validator(mode="after")
    def _limits_in_order(self) -> ThresholdRule:
        limits = (self.yellow_above, self.red_above, self.yellow_below, self.red_below)
        if all(v is None for v in limits):
            raise ValueError("a threshold needs at least one limit")
        if None not in (self.yellow_above, self.red_above) and (
            self.red_above < self.yellow_above  # type: ignore[operator]
        ):
            raise ValueError("red_above must not be below yellow_above")
        if None not in (self.yellow_below, self.red_below) and (
            self.red_below > self.yellow_below  # type: ignore[operator]
        ):
            raise ValueError("red_below must not be above yellow_below")
        return self

    @property
    def key(self) -> str:
        return f"threshold:{self.measurement}"


class ChangeRule(_Rule):
    """A rise (or fall) of more than `above` within a window, from the window's low (high)."""

    kind: Literal["rise", "fall"]
    measurement: MeasurementType
    above: float = Field(gt=0)
    within: Duration
    """Whole days ('3d') are calendar days in the patient's time zone: the window starts at
    local midnight that many days before the reading's day, so a morning weighing that
    drifts by minutes from day to day stays inside it."""
    level: AlertLevel = Level.YELLOW
    yellow_above: float | None = Field(default=None, gt=0)
    """An earlier, milder step: a change above this (but not `above`) is yellow."""
    confirm: Duration | None = None
    """As for a threshold: a re-measurement within this cancels or confirms the finding."""
    baseline: Literal["extreme", "median"] = "extreme"
    """What the change is measured from: the window's low (rise) or high (fall), or its
    median, a personal baseline that one lucky or unlucky reading does not move."""

    @model_validator(mode="after")
    def _steps_in_order(self) -> ChangeRule:
        if self.yellow_above is not None and self.yellow_above >= self.above:
            raise ValueError("yellow_above must be below above")
        return self

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.measurement}"


class MeanRule(_Rule):
    """The mean over a window above (or below) a limit: a follow-up notice."""

    kind: Literal["mean"] = "mean"
    measurement: MeasurementType
    within: Duration
    above: float | None = None
    below: float | None = None
    level: AlertLevel = Level.YELLOW
    min_count: int = Field(default=3, ge=1)
    """Fewer readings in the window than this give no mean to judge."""

    @property
    def key(self) -> str:
        return f"mean:{self.measurement}"


class MissedRule(_Rule):
    """The care plan's schedule: a measurement every period, before a local time."""

    kind: Literal["missed"] = "missed"
    measurement: MeasurementType
    every: Duration
    before: time | None = None
    level: AlertLevel = Level.YELLOW

    @property
    def key(self) -> str:
        return f"missed:{self.measurement}"


class News2Rule(_Rule):
    """NEWS2 from the latest vitals within a window (scale 2 for hypercapnic COPD)."""

    kind: Literal["news2"] = "news2"
    scale: Literal[1, 2] = 1
    within: Duration = timedelta(hours=1)

    @property
    def key(self) -> str:
        return "news2"


Rule = Annotated[
    ThresholdRule | ChangeRule | MeanRule | MissedRule | News2Rule, Field(discriminator="kind")
]

