"""Missed measurements: the care plan's schedule, checked against the clock. Pure.

"Weight every day before 10:00" means: for each local day, a weight measured between the
previous day's 10:00 and this day's 10:00, Europe/Stockholm time (summer time included).
Without a time of day the schedule rolls: a reading at most `every` after the last one. A
missed measurement is an adherence notice, not a clinical alert; it names the deadline, so
a sweep that runs every minute finds the same notice, not a new one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .evaluate import Finding
from .explain import NAMES
from .model import MissedRule

DAYS = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")
MONTHS = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti",
          "september", "oktober", "november", "december")


def _local(day: date, rule: MissedRule, zone: ZoneInfo) -> datetime:
    """The plan's time of day on a local date, as a UTC instant (arithmetic on aware
    datetimes of one zone ignores summer time; on UTC it cannot go wrong)."""
    assert rule.before is not None
    return datetime.combine(day, rule.before, tzinfo=zone).astimezone(UTC)


def period(rule: MissedRule, now: datetime, zone: ZoneInfo,
           last: datetime | None, since: datetime) -> tuple[datetime, datetime] | None:
    """(start, deadline) of the latest period whose deadline has passed, or None yet."""
    if rule.before is not None:
        day = now.astimezone(zone).date()
        if _local(day, rule, zone) > now:  # not yet today's deadline: yesterday's
            day -= timedelta(days=1)
        every = max(1, round(rule.every.total_seconds() / 86400))
        return _local(day - timedelta(days=every), rule, zone), _local(day, rule, zone)
    deadline = max(last or since, since) + rule.every
    return (deadline - rule.every, deadline) if deadline <= now else None


def _when(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{DAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]} {local:%H:%M}"


def missed(rule: MissedRule, *, patient_id: str, version: int, effective_from: datetime,
           now: datetime, zone: ZoneInfo, last: datetime | None) -> Finding | None:
    """The adherence notice for the latest period without a reading, if there is one.

    `last` is the latest reading of the measurement; a period that began before the rule
    came into force is not judged (no notices for the time before the plan).
    """
    span = period(rule, now, zone, last, effective_from)
    if span is None:
        return None
    start, deadline = span
    if effective_from > start:
        return None
    if rule.before is not None and last is not None and last >= start:
        return None  # measured within the period (a rolling period starts at `last`)
    name = NAMES[rule.measurement].lower()
    plan = (f"varje dag före {rule.before:%H:%M}" if rule.before is not None
            else f"minst var {rule.every.total_seconds() / 3600:.0f}:e timme")
    latest = f" Senaste mätningen: {_when(last, zone)}." if last is not None else ""
    return Finding(
        patient_id=patient_id, rule_key=rule.key, rule_version=version,
        measurement=rule.measurement, category="adherence", level=rule.level,
        value=(now - last).total_seconds() if last else 0.0,
        limit=rule.every.total_seconds(), direction="above", measured_at=deadline,
        reading_key=f"missed:{deadline.isoformat()}",
        explanation=(f"Ingen {name} uppmätt till {_when(deadline, zone)}"
                     f" (vårdplan: {plan}).{latest}"),
    )


def adherence(rule: MissedRule, taken: list[datetime], start: datetime, end: datetime,
              zone: ZoneInfo) -> tuple[int, int]:
    """(planned, taken) measurements of a daily plan between two instants: each deadline
    in the span is one planned measurement, taken when a reading falls in its period."""
    if rule.before is None:
        every = rule.every
        slots = max(0, int((end - start) / every))
        times = sorted(taken)
        done = sum(1 for i in range(slots)
                   if any(start + every * i <= t < start + every * (i + 1) for t in times))
        return slots, done
    planned = done = 0
    day = start.astimezone(zone).date()
    while True:
        deadline = _local(day, rule, zone)
        if deadline >= end:
            break
        if deadline > start:
            span_start = _local(day - timedelta(days=max(1, round(rule.every.days))), rule, zone)
            planned += 1
            done += any(span_start <= t < deadline for t in taken)
        day += timedelta(days=1)
    return planned, done
