"""Personnummer and samordningsnummer: valid numbers round-trip, any single wrong digit fails."""

from __future__ import annotations

import contextlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemmon.personnummer import PersonnummerError, check_digit, parse_personnummer

births = st.dates(min_value=date(1890, 1, 1), max_value=date(2030, 12, 31))
serials = st.integers(min_value=1, max_value=999).map(lambda n: f"{n:03d}")


def make(born: date, serial: str, *, coordination: bool = False) -> str:
    day = born.day + (60 if coordination else 0)
    first = f"{born:%Y%m}{day:02d}{serial}"
    return first + check_digit(first[2:])


@given(births, serials, st.booleans(), st.booleans())
def test_a_valid_number_parses_with_or_without_the_hyphen(
    born: date, serial: str, coordination: bool, hyphen: bool
) -> None:
    digits = make(born, serial, coordination=coordination)
    text = f"{digits[:8]}-{digits[8:]}" if hyphen else digits
    number = parse_personnummer(text)
    assert number.digits == digits
    assert number.birth_date == born
    assert number.coordination is coordination
    assert str(number) == f"{digits[:8]}-{digits[8:]}"
    assert parse_personnummer(str(number)) == number


@given(births, serials, st.integers(min_value=2, max_value=11), st.integers(1, 9))
def test_any_one_wrong_digit_is_refused(born: date, serial: str, where: int,
                                        shift: int) -> None:
    digits = make(born, serial)
    wrong = digits[:where] + str((int(digits[where]) + shift) % 10) + digits[where + 1:]
    with pytest.raises(PersonnummerError):
        parse_personnummer(wrong)


@given(st.text(max_size=20))
def test_anything_else_raises_only_personnummer_error(text: str) -> None:
    with contextlib.suppress(PersonnummerError):
        parse_personnummer(text)


@pytest.mark.parametrize(("text", "why"), [
    ("19121212-1213", "check digit"),
    ("19120230-1212", "date"),
    ("19121292-1212", "date"),      # day 92: not even a samordningsnummer
    ("191212-1212", "12 digits"),   # ten digits: the century is not guessed
    ("19121212+1212", "12 digits"),
    ("19121212-0000", "000"),
])
def test_the_reason_is_named_but_not_the_number(text: str, why: str) -> None:
    with pytest.raises(PersonnummerError, match=why) as caught:
        parse_personnummer(text)
    assert text not in str(caught.value)


def test_the_well_known_test_numbers() -> None:
    assert str(parse_personnummer("191212121212")) == "19121212-1212"
    assert parse_personnummer("19701063-2391").coordination
