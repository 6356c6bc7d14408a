"""NEWS2 (Royal College of Physicians, 2017), from the vitals a home can measure.

Each parameter scores 0-3 by the bands of the chart; SpO2 on scale 1, or scale 2 for
patients with hypercapnic respiratory failure (COPD) whose target is 88-92 %. Home devices
rarely give respiration and never consciousness: the score then is partial and says which
parameters were missing. Total 5 or more, or any single 3, is urgent; 7 or more, emergency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hemmon.ingest.model import MeasurementType

M = MeasurementType
Band = tuple[float, int]  # (upper edge inclusive, score); the last band catches the rest


def _score(value: float, bands: tuple[Band, ...], above: int) -> int:
    for edge, score in bands:
        if value <= edge:
            return score
    return above


def respiration(value: float) -> int:
    return _score(value, ((8, 3), (11, 1), (20, 0), (24, 2)), 3)


def spo2_scale1(value: float) -> int:
    return _score(value, ((91, 3), (93, 2), (95, 1)), 0)


def spo2_scale2(value: float, on_oxygen: bool) -> int:
    if value <= 92 or not on_oxygen:
        return _score(value, ((83, 3), (85, 2), (87, 1)), 0)
    return _score(value, ((94, 1), (96, 2)), 3)


def systolic(value: float) -> int:
    return _score(value, ((90, 3), (100, 2), (110, 1), (219, 0)), 3)


def pulse(value: float) -> int:
    return _score(value, ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2)), 3)


def temperature(value: float) -> int:
    return _score(value, ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)), 2)


PARAMETERS = {
    M.RESPIRATORY_RATE: "andningsfrekvens",
    M.SPO2: "syremättnad",
    M.BLOOD_PRESSURE_SYSTOLIC: "systoliskt blodtryck",
    M.HEART_RATE: "puls",
    M.BODY_TEMPERATURE: "temperatur",
}
Response = Literal["none", "low", "urgent", "emergency"]


@dataclass(frozen=True, slots=True)
class News2:
    total: int
    scores: dict[str, int]
    missing: tuple[str, ...]
    """Parameters not measured in the window; consciousness is always among them at home."""
    response: Response

    @property
    def partial(self) -> bool:
        return bool(self.missing)


def news2(vitals: Mapping[MeasurementType, float], *, scale: Literal[1, 2],
          on_oxygen: bool | None) -> News2:
    """The score of the vitals given (type -> latest value); missing ones score nothing."""
    scores: dict[str, int] = {}
    if M.RESPIRATORY_RATE in vitals:
        scores["andningsfrekvens"] = respiration(vitals[M.RESPIRATORY_RATE])
    if M.SPO2 in vitals:
        value = vitals[M.SPO2]
        scores["syremättnad"] = (spo2_scale2(value, bool(on_oxygen)) if scale == 2
                                 else spo2_scale1(value))
    if on_oxygen is not None:
        scores["syrgas"] = 2 if on_oxygen else 0
    if M.BLOOD_PRESSURE_SYSTOLIC in vitals:
        scores["systoliskt blodtryck"] = systolic(vitals[M.BLOOD_PRESSURE_SYSTOLIC])
    if M.HEART_RATE in vitals:
        scores["puls"] = pulse(vitals[M.HEART_RATE])
    if M.BODY_TEMPERATURE in vitals:
        scores["temperatur"] = temperature(vitals[M.BODY_TEMPERATURE])
    missing = [name for kind, name in PARAMETERS.items() if kind not in vitals]
    if on_oxygen is None:
        missing.append("syrgas (luft eller syrgas)")
    missing.append("medvetandegrad")
    total = sum(scores.values())
    response: Response = (
        "emergency" if total >= 7 else
        "urgent" if total >= 5 or 3 in scores.values() else
        "low" if total >= 1 else "none"
    )
    return News2(total=total, scores=scores, missing=tuple(missing), response=response)
