"""What happens to alerts, decided without I/O: the alert half of the batch core.

Every function takes the alerts as they are (loaded by the caller), the findings, the care
teams and the clock's "now", and returns `Change`s: the alert after the change, the events
for its history and the page to queue, if any. `alerts/storage.py` writes them as they are;
the backtest keeps them in memory. Nothing here reads a clock, a database or a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from hemmon.rules.engine import Clear
from hemmon.rules.evaluate import Finding, threshold_level
from hemmon.rules.model import Rule, ThresholdRule

from .lifecycle import Alert, Outcome, Status, TransitionError, acknowledge, apply_finding, resolve
from .routing import CareTeam, Route, escalation

SYSTEM = "hemmon"
"""The actor of what hemmon does by itself."""

OpenAlerts = dict[tuple[str, str], Alert]
"""The alerts not resolved, by (patient, rule): at most one each (the database agrees)."""


class Page(StrEnum):
    """A notification for the region's pager or SMS gateway."""

    PAGE = "page"
    ESCALATION = "escalation"


@dataclass(frozen=True, slots=True)
class Event:
    """One line of an alert's history."""

    at: datetime
    actor: str
    action: str
    level: str | None = None
    value: float | None = None
    measured_at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """An alert after a change: new (`id` None) or updated, with its history and page."""

    alert: Alert
    events: tuple[Event, ...]
    opened: bool = False
    finding: Finding | None = None
    page: Page | None = None
    columns: Mapping[str, object] = field(default_factory=dict)
    """Record columns beside the alert's own: who acknowledged or resolved it and when,
    the outcome, when it escalated (names from `RECORD_COLUMNS`)."""


RECORD_COLUMNS = frozenset({"acknowledged_at", "acknowledged_by", "resolved_at",
                            "resolved_by", "outcome", "escalated_at"})


@dataclass(slots=True)
class Plan:
    """The changes of a batch, in order; one alert may change more than once."""

    changes: list[Change] = field(default_factory=list)

    def add(self, change: Change, open_alerts: OpenAlerts) -> None:
        self.changes.append(change)
        key = (change.alert.patient_id, change.alert.rule)
        if change.alert.status is Status.RESOLVED:
            open_alerts.pop(key, None)
        else:
            open_alerts[key] = change.alert


def decide_findings(findings: Iterable[Finding], clears: Iterable[tuple[str, Clear]],
                    open_alerts: OpenAlerts, teams: Mapping[str, CareTeam],
                    now: datetime) -> Plan:
    """Ended excursions first, then each finding opens or updates its alert, oldest first.

    `open_alerts` is updated in place, so a second finding of the batch for the same rule
    updates the alert the first one opened. A red alert that is new, or that moved to the
    mobile team, is paged.
    """
    plan = Plan()
    for patient, cleared in clears:
        current = open_alerts.get((patient, cleared.rule_key))
        if (current is None or current.last_measured_at >= cleared.measured_at
                or (current.cleared_at is not None
                    and current.cleared_at >= cleared.measured_at)):
            continue
        plan.add(Change(
            alert=current.model_copy(update={"cleared_at": cleared.measured_at}),
            events=(Event(cleared.measured_at, SYSTEM, "cleared",
                          note="värdet åter inom gränsen"),)), open_alerts)
    for finding in sorted(findings, key=lambda f: f.measured_at):
        current = open_alerts.get((finding.patient_id, finding.rule_key))
        alert = apply_finding(current, finding, teams[finding.patient_id], now)
        moved = current is None or current.route is not alert.route
        plan.add(Change(
            alert=alert, opened=current is None, finding=finding,
            page=Page.PAGE if moved and alert.route is not Route.FAST_VARDKONTAKT else None,
            events=(Event(now, SYSTEM, "opened" if current is None else "occurred",
                          level=finding.level.value, value=finding.value,
                          measured_at=finding.measured_at),)), open_alerts)
    return plan


def decide_escalations(open_alerts: Iterable[Alert], teams: Mapping[str, CareTeam],
                       now: datetime, after: timedelta) -> Plan:
    """Unacknowledged red alerts past their time move to the mobile team (or fallback)."""
    plan = Plan()
    minutes = int(after.total_seconds() // 60)
    for alert in open_alerts:
        team = teams.get(alert.patient_id)
        target = team and escalation(
            level=alert.level, route=alert.route, acknowledged=alert.status is not Status.OPEN,
            category=alert.category, level_since=alert.level_since,
            snoozed_until=alert.snoozed_until, team=team, now=now, after=after)
        if not target:
            continue
        plan.changes.append(Change(
            alert=alert.model_copy(update={"route": target, "updated_at": now}),
            page=Page.ESCALATION, columns={"escalated_at": now},
            events=(Event(now, SYSTEM, "escalated",
                          note=f"ej kvitterat inom {minutes} min: till {target.value}"),)))
    return plan


def expire_snoozes(open_alerts: Iterable[Alert], now: datetime) -> Plan:
    """A snooze always ends, and says so."""
    plan = Plan()
    for alert in open_alerts:
        if alert.snoozed_until is not None and alert.snoozed_until <= now:
            plan.changes.append(Change(alert=alert.model_copy(update={"snoozed_until": None}),
                                       events=(Event(now, SYSTEM, "snooze_ended"),)))
    return plan


def resolve_quietly(alert: Alert, now: datetime, actor: str, note: str) -> Change:
    """Closed because its reason is gone (not a nurse's outcome: no action was needed)."""
    return Change(alert=alert.model_copy(update={"status": Status.RESOLVED, "updated_at": now}),
                  events=(Event(now, actor, "resolve", note=note),),
                  columns=_resolved(actor, now, Outcome.NO_ACTION))


def _resolved(actor: str, now: datetime, outcome: Outcome) -> dict[str, object]:
    return {"resolved_at": now, "resolved_by": actor, "outcome": outcome.value}


def resolve_ended_notices(open_alerts: Iterable[Alert], category: str, firing: set[str],
                          now: datetime, note: str) -> Plan:
    """The notices of a category whose condition no longer holds are resolved."""
    plan = Plan()
    for alert in open_alerts:
        if alert.category == category and alert.rule not in firing:
            plan.changes.append(resolve_quietly(alert, now, SYSTEM, note))
    return plan


# -- what a clinician does -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Acknowledge:
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Resolve:
    outcome: Outcome
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Snooze:
    until: datetime
    note: str | None = None


Action = Acknowledge | Resolve | Snooze


def decide_action(current: Alert, action: Action, actor: str, now: datetime) -> Change:
    """A clinician's action on an alert; TransitionError when its status does not allow it."""
    match action:
        case Acknowledge(note=note):
            return Change(alert=acknowledge(current, now),
                          columns={"acknowledged_at": now, "acknowledged_by": actor},
                          events=(Event(now, actor, "acknowledge", note=note or None),))
        case Resolve(outcome=outcome, note=note):
            detail = f"{outcome.value}: {note or ''}".rstrip(": ")
            return Change(alert=resolve(current, now),
                          columns=_resolved(actor, now, outcome),
                          events=(Event(now, actor, "resolve", note=detail),))
        case Snooze(until=until, note=note):
            if current.status is Status.RESOLVED:
                raise TransitionError("a resolved alert cannot be snoozed")
            detail = f"till {until.isoformat()} {note or ''}".strip()
            return Change(alert=current.model_copy(update={"snoozed_until": until,
                                                           "updated_at": now}),
                          events=(Event(now, actor, "snooze", note=detail),))


def recheck(open_alerts: Sequence[Alert], rules: Sequence[Rule], version: int, actor: str,
            now: datetime) -> Plan:
    """After a rule change: resolve the clinical alerts the new rules no longer justify.

    Only the latest value is judged again; no history is evaluated, so a change never
    raises an alert by itself.
    """
    by_key = {rule.key: rule for rule in rules}
    plan = Plan()
    for alert in open_alerts:
        if alert.category != "clinical":
            continue
        rule = by_key.get(alert.rule)
        if rule is None:
            why = "regeln finns inte längre"
        elif isinstance(rule, ThresholdRule) and threshold_level(rule, alert.last_value) is None:
            why = "senaste värdet ligger inom de nya gränserna"
        else:
            continue
        plan.changes.append(resolve_quietly(
            alert, now, actor, f"Reglerna ändrades (version {version}): {why}"))
    return plan
