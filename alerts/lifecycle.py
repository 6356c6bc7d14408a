"""The alert lifecycle, pure: a finding opens an alert or updates the open one in place.

One alert is open per patient and rule. A new finding for it raises its occurrence count,
its last value and, if worse, its level (and with it possibly its route). A resolved alert
is closed for good: a later finding opens a new one (re-raise).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from hemmon.ingest.model import MeasurementType
from hemmon.rules.evaluate import Category, Finding
from hemmon.rules.model import Level

from .routing import CareTeam, Route, route_for


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Outcome(StrEnum):
    """How a nurse closed an alert (contract.md)."""

    PATIENT_CONTACTED = "patient_contacted"
    ADVICE_GIVEN = "advice_given"
    MEDICATION_CHANGED = "medication_changed"
    REFERRED_MOBILE_TEAM = "referred_mobile_team"
    NO_ACTION = "no_action"


class Alert(BaseModel):
    """An alert as the lifecycle sees it; `id` is None until it is stored."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    patient_id: str
    rule: str
    rule_version: int
    measurement: MeasurementType | None
    level: Level
    route: Route
    status: Status
    opened_at: datetime
    updated_at: datetime
    level_since: datetime
    """When the alert reached its level: escalation counts from here."""
    occurrences: int
    last_value: float
    last_measured_at: datetime
    explanation: str
    category: Category = "clinical"
    snoozed_until: datetime | None = None
    cleared_at: datetime | None = None
    """When the excursion behind it ended (the alert stays for a nurse to close)."""


class TransitionError(ValueError):
    """An action that the alert's current status does not allow (HTTP 409)."""


def apply_finding(current: Alert | None, finding: Finding, team: CareTeam, now: datetime) -> Alert:
    """The alert after this finding: a new one, or the open one updated in place."""
    if current is None or current.status is Status.RESOLVED:
        return Alert(
            patient_id=finding.patient_id,
            rule=finding.rule_key,
            rule_version=finding.rule_version,
            measurement=finding.measurement,
            level=finding.level,
            route=route_for(finding.level, team, now, finding.category),
            status=Status.OPEN,
            opened_at=now,
            updated_at=now,
            level_since=now,
            occurrences=1,
            last_value=finding.value,
            last_measured_at=finding.measured_at,
            explanation=finding.explanation,
            category=finding.category,
        )
    worse = finding.level.rank > current.level.rank
    level = finding.level if worse else current.level
    latest = finding.measured_at >= current.last_measured_at
    return current.model_copy(
        update={
            "level": level,
            "level_since": now if worse else current.level_since,
            "route": route_for(level, team, now, current.category) if worse else current.route,
            # a worse level needs eyes again, even if someone had acknowledged the milder one
            "status": Status.OPEN if worse else current.status,
            "rule_version": finding.rule_version,
            "updated_at": now,
            "occurrences": current.occurrences + 1,
            "last_value": finding.value if latest else current.last_value,
            "last_measured_at": finding.measured_at if latest else current.last_measured_at,
            "explanation": finding.explanation if latest or worse else current.explanation,
            # a new excursion: the condition is active again
            "cleared_at": (None if current.cleared_at is not None
                           and current.cleared_at < finding.measured_at
                           else current.cleared_at),
        }
    )


def acknowledge(current: Alert, now: datetime) -> Alert:
    """Someone has seen it and takes it on."""
    if current.status is not Status.OPEN:
        raise TransitionError(f"alert is {current.status}, only an open alert can be acknowledged")
    return current.model_copy(update={"status": Status.ACKNOWLEDGED, "updated_at": now})


def resolve(current: Alert, now: datetime) -> Alert:
    """Handled; a later bad reading opens a new alert."""
    if current.status is Status.RESOLVED:
        raise TransitionError("alert is already resolved")
    return current.model_copy(update={"status": Status.RESOLVED, "updated_at": now})
