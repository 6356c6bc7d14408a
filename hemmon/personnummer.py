"""Swedish personal identity numbers: personnummer and samordningsnummer (pure).

A roster gives them as 12 digits, with or without the hyphen (`19400404-9803`,
`194004049803`). The last ten digits carry a Luhn check digit; the first eight are the birth
date, in a samordningsnummer with 60 added to the day. An error message never repeats the
number: it ends up in a console or a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from stdnum import luhn
from stdnum.exceptions import ValidationError

_SHAPE = re.compile(r"^(\d{8})-?(\d{4})$")
_COORDINATION_OFFSET = 60


class PersonnummerError(ValueError):
    """Not a personnummer or samordningsnummer; the message says why, not the number."""


@dataclass(frozen=True, slots=True)
class Personnummer:
    """A valid number, kept as its 12 digits."""

    digits: str

    @property
    def coordination(self) -> bool:
        """A samordningsnummer (day + 60) rather than a personnummer."""
        return int(self.digits[6:8]) > _COORDINATION_OFFSET

    @property
    def birth_date(self) -> date:
        day = int(self.digits[6:8])
        if day > _COORDINATION_OFFSET:
            day -= _COORDINATION_OFFSET
        return date(int(self.digits[0:4]), int(self.digits[4:6]), day)

    def __str__(self) -> str:
        """ÅÅÅÅMMDD-XXXX, as Swedish health care writes it."""
        return f"{self.digits[:8]}-{self.digits[8:]}"


def parse_personnummer(text: str) -> Personnummer:
    """The number in `text`; raises PersonnummerError for a bad shape, date or check digit."""
    match = _SHAPE.match(text.strip())
    if match is None:
        raise PersonnummerError("give 12 digits, ÅÅÅÅMMDD-XXXX (the hyphen may be left out)")
    digits = match[1] + match[2]
    number = Personnummer(digits)
    try:
        number.birth_date  # noqa: B018 - the date must exist
    except ValueError as exc:
        raise PersonnummerError("the date part is not a real date") from exc
    if digits[8:11] == "000":
        raise PersonnummerError("the birth number 000 is never issued")
    try:
        luhn.validate(digits[2:])
    except ValidationError as exc:
        raise PersonnummerError("the check digit does not match") from exc
    return number


def check_digit(first_nine: str) -> str:
    """The Luhn check digit for YYMMDDNNN (for tests and invented demo numbers)."""
    return str(luhn.calc_check_digit(first_nine))
