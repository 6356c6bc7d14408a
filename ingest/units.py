"""Canonical UCUM units, accepted alternatives and plausibility ranges per measurement.

The ranges reject physically impossible values (a wrong unit, a broken device); they are
not clinical limits: those live in each patient's rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .model import MeasurementType

Conversion = Callable[[float], float]


def _identity(value: float) -> float:
    return value


def _scale(factor: float) -> Conversion:
    def convert(value: float) -> float:
        return value * factor

    return convert


def _fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _kelvin_to_celsius(value: float) -> float:
    return value - 273.15


POUND_KG = 0.45359237
OUNCE_KG = POUND_KG / 16
STONE_KG = 14 * POUND_KG
KPA_MMHG = 7.50062
GLUCOSE_MG_DL_PER_MMOL_L = 18.016


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """How one measurement type is stored and which inputs are believable."""

    canonical: str
    low: float
    high: float
    accepted: Mapping[str, Conversion]


_PER_MINUTE: dict[str, Conversion] = {"/min": _identity, "1/min": _identity}
_MMHG: dict[str, Conversion] = {
    "mm[Hg]": _identity, "mmHg": _identity, "kPa": _scale(KPA_MMHG)
}

SPECS: dict[MeasurementType, UnitSpec] = {
    MeasurementType.HEART_RATE: UnitSpec(
        "/min",
        20,
        300,
        _PER_MINUTE
        | {"bpm": _identity, "beats/min": _identity, "{beats}/min": _identity,
           "{beat}/min": _identity},
    ),
    MeasurementType.SPO2: UnitSpec("%", 50, 100, {"%": _identity}),
    MeasurementType.BLOOD_PRESSURE_SYSTOLIC: UnitSpec("mm[Hg]", 60, 280, dict(_MMHG)),
    MeasurementType.BLOOD_PRESSURE_DIASTOLIC: UnitSpec("mm[Hg]", 30, 200, dict(_MMHG)),
    MeasurementType.BODY_WEIGHT: UnitSpec(
        "kg",
        20,
        350,
        {"kg": _identity, "g": _scale(0.001), "[lb_av]": _scale(POUND_KG),
         "lb": _scale(POUND_KG), "lbs": _scale(POUND_KG), "[stone_av]": _scale(STONE_KG),
         "[oz_av]": _scale(OUNCE_KG)},
    ),
    MeasurementType.BODY_TEMPERATURE: UnitSpec(
        "Cel",
        30,
        45,
        {"Cel": _identity, "C": _identity, "°C": _identity,
         "[degF]": _fahrenheit_to_celsius, "F": _fahrenheit_to_celsius,
         "°F": _fahrenheit_to_celsius, "K": _kelvin_to_celsius},
    ),
    MeasurementType.RESPIRATORY_RATE: UnitSpec(
        "/min",
        3,
        80,
        _PER_MINUTE | {"breaths/min": _identity, "{breaths}/min": _identity},
    ),
    MeasurementType.BLOOD_GLUCOSE: UnitSpec(
        "mmol/L",
        0.5,
        50,
        {"mmol/L": _identity, "mg/dL": _scale(1 / GLUCOSE_MG_DL_PER_MMOL_L)},
    ),
}


class UnitError(ValueError):
    """A unit that this measurement type does not accept."""


class ImplausibleValue(ValueError):
    """A value outside what a living person at home can measure."""


def to_canonical(kind: MeasurementType, value: float, unit: str) -> float:
    """The value in the canonical unit; raises UnitError or ImplausibleValue."""
    spec = SPECS[kind]
    convert = spec.accepted.get(unit)
    if convert is None:
        accepted = ", ".join(sorted(spec.accepted))
        raise UnitError(f"unit {unit!r} is not accepted for {kind} (accepted: {accepted})")
    if not math.isfinite(value):
        raise ImplausibleValue(f"{kind} value {value!r} is not a finite number")
    canonical = convert(value)
    if not spec.low <= canonical <= spec.high:
        raise ImplausibleValue(
            f"{kind} {canonical:g} {spec.canonical} is outside the plausible range "
            f"{spec.low:g}-{spec.high:g} {spec.canonical}"
        )
    return canonical
