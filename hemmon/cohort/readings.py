"""The messages a simulated patient's device sends, day by day. Pure and deterministic.

A value is the patient's baseline, a day-to-day drift (weight and blood pressure wander
slowly, not independently each day), a diurnal offset, the effect of any injected event at
that instant, and measurement noise. Patients measure at times that wander, skip mornings,
go away for a few days, re-measure when a value looks wrong; devices run their batteries
down and some have a clock set wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from .population import STOCKHOLM, Event, Profile, _at

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
# Within-session measurement noise (standard deviation) by measurement.
NOISE = {"body_weight": 0.15, "blood_pressure_systolic": 6.0, "blood_pressure_diastolic": 4.0,
         "heart_rate": 4.0, "spo2": 0.8, "respiratory_rate": 1.0, "body_temperature": 0.15,
         "blood_glucose": 0.5}
UNITS = {"body_weight": "kg", "blood_pressure_systolic": "mm[Hg]",
         "blood_pressure_diastolic": "mm[Hg]", "heart_rate": "/min", "spo2": "%",
         "respiratory_rate": "/min", "body_temperature": "Cel", "blood_glucose": "mmol/L"}
DECIMALS = {"body_weight": 1, "body_temperature": 1, "blood_glucose": 1}
DEVICES = {  # what one device session gives
    "body_weight": ("body_weight",),
    "blood_pressure": ("blood_pressure_systolic", "blood_pressure_diastolic", "heart_rate"),
    "spo2": ("spo2", "heart_rate"),
    "respiratory_rate": ("respiratory_rate",),
    "body_temperature": ("body_temperature",),
    "blood_glucose": ("blood_glucose",),
}
Deltas = dict[str, float]


@dataclass
class Drift:
    """Slow day-to-day wander of a patient's values: AR(1) per measurement."""

    rng: random.Random
    state: dict[str, float] = field(default_factory=dict)
    SCALE: ClassVar[dict[str, float]] = {
        "body_weight": 0.25, "blood_pressure_systolic": 3.0, "heart_rate": 3.0, "spo2": 0.5,
        "blood_glucose": 0.6, "body_temperature": 0.1}

    def step(self) -> None:
        for kind, scale in self.SCALE.items():
            self.state[kind] = 0.7 * self.state.get(kind, 0.0) + self.rng.gauss(0, scale)


def _frac(t: datetime, start: datetime, span: timedelta) -> float:
    return min(1.0, max(0.0, (t - start) / span))


def event_effect(event: Event, t: datetime, base: Profile) -> Deltas:
    """How an injected deterioration moves the values at instant t."""
    if not event.start <= t <= event.end:
        return {}
    days = (t - event.start) / DAY
    if event.kind == "hf_decompensation":
        gain_days = event.detail["gain_days"]
        rate = event.detail["kg_per_day"]
        gained = rate * min(days, gain_days)
        if days > gain_days:  # treated: diuretics take the fluid off over three days
            gained *= max(0.0, 1 - (days - gain_days) / 3)
        return {"body_weight": gained, "heart_rate": 4 * gained / rate if rate else 0,
                "spo2": -0.4 * min(days, gain_days)}
    if event.kind == "copd_exacerbation":
        level = min(days / 2, 1.0) if days < 4 else max(0.0, 1 - (days - 4) / 3)
        return {"spo2": -event.detail["spo2_drop"] * level, "heart_rate": 14 * level,
                "respiratory_rate": 7 * level, "body_temperature": 0.4 * level}
    if event.kind == "hypertensive_crisis":
        return {"blood_pressure_systolic": event.detail["systolic"] - base.systolic,
                "blood_pressure_diastolic": event.detail["diastolic"] - base.diastolic}
    if event.kind == "sepsis":
        level = min(days / 1.25, 1.0) if days < 2.5 else max(0.0, 1 - (days - 2.5) / 0.5)
        return {"body_temperature": 2.4 * level, "heart_rate": 40 * level,
                "respiratory_rate": 9 * level, "spo2": -4 * level,
                "blood_pressure_systolic": -25 * level}
    return {}


class Patient:
    """One patient's month: sessions, artefacts, re-measurements, device behaviour."""

    def __init__(self, profile: Profile, events: list[Event], days: int,
                 rng: random.Random) -> None:
        self.p, self.days, self.rng = profile, days, rng
        self.clinical = [e for e in events if e.patient_id == profile.patient_id]
        self.drift = Drift(rng)
        self.messages: list[dict[str, Any]] = []
        self.readings: list[tuple[datetime, str, float]] = []
        self.happenings: list[Event] = []
        self.planned = self.taken = 0
        self.counter = 0
        self.clock_offset: Callable[[datetime], timedelta] = lambda t: timedelta()

    # -- values -----------------------------------------------------------------------

    def value(self, kind: str, t: datetime, extra: Deltas | None = None) -> float:
        p = self.p
        base = {"body_weight": p.weight, "blood_pressure_systolic": p.systolic,
                "blood_pressure_diastolic": p.diastolic, "heart_rate": p.pulse,
                "spo2": p.spo2, "respiratory_rate": p.respiration,
                "body_temperature": p.temperature, "blood_glucose": p.glucose}[kind]
        hour = t.astimezone(STOCKHOLM).hour
        evening = hour >= 15
        diurnal = {"blood_pressure_systolic": -2 if evening else 4,
                   "heart_rate": 4 if evening else -2, "blood_glucose": 1.5 if evening else 0,
                   "body_temperature": 0.3 if evening else 0}.get(kind, 0.0)
        value = base + self.drift.state.get(kind, 0.0) + diurnal
        if kind == "blood_pressure_diastolic":
            value += 0.5 * self.drift.state.get("blood_pressure_systolic", 0.0)
        for event in self.clinical:
            value += event_effect(event, t, p).get(kind, 0.0)
        value += (extra or {}).get(kind, 0.0) + self.rng.gauss(0, NOISE[kind])
        if kind == "spo2":
            value = min(value, 100.0)
        return value

    def unwell(self, t: datetime) -> Event | None:
        """The deterioration going on at t (the patient measures more and re-measures)."""
        for event in self.clinical:
            if event.start <= t <= event.end and event.kind != "hypoglycaemia":
                return event
        return None

    # -- messages ---------------------------------------------------------------------

    def send(self, t: datetime, devices: list[str], extra: Deltas | None = None,
             manual: bool = False, fixed: dict[str, float] | None = None) -> None:
        self.counter += 1
        measurements = []
        kinds = list(dict.fromkeys(k for d in devices for k in DEVICES[d]))
        for kind in kinds:
            raw = (fixed or {}).get(kind)
            value = raw if raw is not None else self.value(kind, t, extra)
            value = round(value, DECIMALS.get(kind, 0))
            if DECIMALS.get(kind, 0) == 0:
                value = int(value)
            self.readings.append((t, kind, float(value)))
            measurements.append({"type": kind, "value": value, "unit": UNITS[kind]})
        shown = (t + self.clock_offset(t)).astimezone(STOCKHOLM).replace(microsecond=0)
        payload = {"schema": "hemmon.reading/1", "message_id": f"m{self.counter:05d}",
                   "measured_at": shown.isoformat(), "manual": manual,
                   "measurements": measurements}
        received = t + timedelta(seconds=self.rng.uniform(2, 40))
        self.messages.append({"topic": f"hemmon/v1/devices/{self.p.device_id}/readings",
                              "payload": payload, "received_at": _iso(received)})

    def status(self, t: datetime, online: bool, battery: float | None) -> None:
        payload: dict[str, Any] = {"online": online}
        if battery is not None:
            payload["battery"] = round(battery)
        self.messages.append({"topic": f"hemmon/v1/devices/{self.p.device_id}/status",
                              "payload": payload, "received_at": _iso(t)})

    def happened(self, kind: str, start: datetime, end: datetime, **detail: Any) -> None:
        self.happenings.append(Event(kind, self.p.patient_id, start, end, clinical=False,
                                     detail=detail))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat()


def local(day: int, hour: float) -> datetime:
    return _at(day, hour)
