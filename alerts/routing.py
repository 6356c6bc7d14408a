"""Who gets an alert: the fast vårdkontakt in office hours, the mobile team otherwise.

Office hours are a unit's own ("mon-fri 08:00-17:00", local time), closed on Swedish
public holidays and on the eves Sweden treats as holidays (midsummer, Christmas, New Year).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
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


def route_for(level: Level, team: CareTeam, at: datetime, category: str = "clinical") -> Route:
    """Red outside the unit's office hours goes to the mobile team; the rest stays home.

    Device and adherence notices always go to the health centre: they never page anyone.
    """
    if category != "clinical":
        return Route.FAST_VARDKONTAKT
    if level is Level.RED and team.has_mobile_team and not team.office_hours.is_open(at):
        return Route.MOBILE_TEAM
    return Route.FAST_VARDKONTAKT
