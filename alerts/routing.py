"""Who gets an alert: the fast vårdkontakt in office hours, the mobile team otherwise.

Office hours are a unit's own ("mon-fri 08:00-17:00", local time), closed on Swedish
public holidays and on the eves Sweden treats as holidays (midsummer, Christmas, New Year).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from hemmon.rules.model import Level

STOCKHOLM = ZoneInfo("Europe/Stockholm")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(
    r"^\s*(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+"
    r"(?P<open>\d{1,2}:\d{2})-(?P<close>\d{1,2}:\d{2})\s*$"
)


class Route(StrEnum):
    """Whose queue an alert is in."""

    FAST_VARDKONTAKT = "fast_vardkontakt"
    MOBILE_TEAM = "mobile_team"
    UNIT_FALLBACK = "unit_fallback"
    """The unit's out-of-hours contact, for a patient without a mobile team."""


class OfficeHoursError(ValueError):
    """An office-hours text that is not like 'mon-fri 08:00-17:00'."""


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """Weekdays and opening hours, local time; closed on Swedish holidays."""

    days: frozenset[int]
    opens: time
    closes: time
    zone: ZoneInfo = STOCKHOLM

    @classmethod
    def parse(cls, text: str, zone: ZoneInfo = STOCKHOLM) -> OfficeHours:
        """From 'mon-fri 08:00-17:00' (or 'mon 08:00-12:00'); raises OfficeHoursError."""
        match = _SPEC.match(text.lower())
        if not match or match["first"] not in _DAYS or (match["last"] or "mon") not in _DAYS:
            raise OfficeHoursError(f"office hours {text!r} are not like 'mon-fri 08:00-17:00'")
        first = _DAYS.index(match["first"])
        last = _DAYS.index(match["last"]) if match["last"] else first
        try:
            opens, closes = time.fromisoformat(match["open"]), time.fromisoformat(match["close"])
        except ValueError as exc:
            raise OfficeHoursError(f"office hours {text!r}: {exc}") from exc
        if closes <= opens or last < first:
            raise OfficeHoursError(f"office hours {text!r} close before they open")
        return cls(frozenset(range(first, last + 1)), opens, closes, zone)

    def is_open(self, moment: datetime) -> bool:
        """Whether the unit is staffed at this instant."""
        local = moment.astimezone(self.zone)
        if local.weekday() not in self.days or is_holiday(local.date()):
            return False
        return self.opens <= local.time() < self.closes


@lru_cache(maxsize=64)
def _holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(
        "SE", years=year, categories=("public", "de_facto"), language="sv"
    )


def is_holiday(day: date) -> bool:
    """A Swedish public holiday or a holiday eve (midsommarafton, julafton, nyårsafton)."""
    return day in _holidays(day.year)


@dataclass(frozen=True, slots=True)
class CareTeam:
    """The people around one patient that alerts can go to."""

    office_hours: OfficeHours
    has_mobile_team: bool
    red_to_mobile_team: bool = False
    """Every red alert goes to the mobile team, in office hours too."""


def away(team: CareTeam) -> Route:
    """Where a red alert goes when the health centre cannot take it."""
    return Route.MOBILE_TEAM if team.has_mobile_team else Route.UNIT_FALLBACK


def route_for(level: Level, team: CareTeam, at: datetime, category: str = "clinical") -> Route:
    """Red outside the unit's office hours goes to the mobile team (or, without one, the
    unit's fallback contact); the rest stays with the fast vårdkontakt.

    Yellow is never paged. Device and adherence notices always go to the health centre.
    """
    if category != "clinical" or level is not Level.RED:
        return Route.FAST_VARDKONTAKT
    if team.has_mobile_team and team.red_to_mobile_team:
        return Route.MOBILE_TEAM
    if not team.office_hours.is_open(at):
        return away(team)
    return Route.FAST_VARDKONTAKT


def escalation(*, level: Level, route: Route, acknowledged: bool, category: str,
               level_since: datetime, snoozed_until: datetime | None, team: CareTeam,
               now: datetime, after: timedelta) -> Route | None:
    """Where an unacknowledged red alert goes once `after` has passed; None: stays put.

    A snoozed alert waits for its snooze to end; a snooze always ends.
    """
    if (category != "clinical" or level is not Level.RED or acknowledged
            or route is not Route.FAST_VARDKONTAKT):
        return None
    if snoozed_until is not None and snoozed_until > now:
        return None
    return away(team) if now - level_since >= after else None
