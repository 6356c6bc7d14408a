"""Swedish words for measurements and values, as nurses and patients read them."""

from __future__ import annotations

from hemmon.ingest.model import MeasurementType

from .model import Level

NAMES: dict[MeasurementType, str] = {
    MeasurementType.HEART_RATE: "Puls",
    MeasurementType.SPO2: "Syremättnad",
    MeasurementType.BLOOD_PRESSURE_SYSTOLIC: "Systoliskt blodtryck",
    MeasurementType.BLOOD_PRESSURE_DIASTOLIC: "Diastoliskt blodtryck",
    MeasurementType.BODY_WEIGHT: "Vikt",
    MeasurementType.BODY_TEMPERATURE: "Kroppstemperatur",
    MeasurementType.RESPIRATORY_RATE: "Andningsfrekvens",
    MeasurementType.BLOOD_GLUCOSE: "Blodsocker",
}

DISPLAY_UNITS: dict[MeasurementType, str] = {
    MeasurementType.HEART_RATE: "slag/min",
    MeasurementType.SPO2: "%",
    MeasurementType.BLOOD_PRESSURE_SYSTOLIC: "mmHg",
    MeasurementType.BLOOD_PRESSURE_DIASTOLIC: "mmHg",
    MeasurementType.BODY_WEIGHT: "kg",
    MeasurementType.BODY_TEMPERATURE: "°C",
    MeasurementType.RESPIRATORY_RATE: "andetag/min",
    MeasurementType.BLOOD_GLUCOSE: "mmol/L",
}

LEVEL_WORDS = {Level.GREEN: "grön", Level.YELLOW: "gul", Level.RED: "röd"}


def number(value: float, decimals: int = 1) -> str:
    """A number the Swedish way: decimal comma, no needless decimals ('88', '78,5')."""
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",").replace("-", "−")


def quantity(kind: MeasurementType, value: float) -> str:
    """A value with its unit, e.g. '86 %' or '78,5 kg'."""
    return f"{number(value)} {DISPLAY_UNITS[kind]}"


def threshold_explanation(
    kind: MeasurementType, value: float, level: Level, limit: float, direction: str
) -> str:
    """E.g. 'Syremättnad 86 %, under röd gräns 88 %'."""
    side = "över" if direction == "above" else "under"
    return (
        f"{NAMES[kind]} {quantity(kind, value)}, {side} {LEVEL_WORDS[level]} gräns "
        f"{quantity(kind, limit)}"
    )
