"""The whole cohort for a seed: roster, messages in received order, and ground truth."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from hemmon.ingest.model import MeasurementType
from hemmon.rules.news2 import PARAMETERS, news2

from .population import START, Event, _iso, injected, profiles, roster
from .timeline import simulate

Sign = Callable[[str, float], bool]
# "The first reading that shows it", by event kind: what a clinician would call abnormal.
SIGNS: dict[str, Sign] = {
    "hypertensive_crisis": lambda kind, v: (
        (kind == "blood_pressure_systolic" and v > 180)
        or (kind == "blood_pressure_diastolic" and v > 110)),
    "hypoglycaemia": lambda kind, v: kind == "blood_glucose" and v < 3.9,
}


@dataclass(frozen=True)
class Cohort:
    roster: dict[str, Any]
    messages: list[dict[str, Any]]
    truth: dict[str, Any]


def _news2_sign(event: Event, readings: list[tuple[datetime, str, float]],
                scale: Literal[1, 2]) -> datetime | None:
    """The first session whose vitals score NEWS2 5 or more (what the rule alerts on)."""
    sessions: dict[datetime, dict[MeasurementType, float]] = defaultdict(dict)
    for t, kind, v in readings:
        if event.start <= t <= event.end and MeasurementType(kind) in PARAMETERS:
            sessions[t][MeasurementType(kind)] = v
    return min((t for t, vitals in sessions.items()
                if news2(vitals, scale=scale, on_oxygen=None).total >= 5), default=None)


def _first_sign(event: Event, readings: list[tuple[datetime, str, float]],
                floors: dict[str, float]) -> datetime | None:
    sign: Sign
    if event.kind == "sepsis":
        return _news2_sign(event, readings, 2 if event.patient_id in floors else 1)
    if event.kind == "copd_exacerbation":
        floor = floors.get(event.patient_id, 90)

        def sign(kind: str, v: float) -> bool:
            return kind == "spo2" and v < floor
    elif event.kind in SIGNS:
        sign = SIGNS[event.kind]
    else:
        return None
    return min((t for t, kind, v in readings
                if event.start <= t <= event.end and sign(kind, v)), default=None)


def cohort(patients: int, days: int, seed: int) -> Cohort:
    """A simulated population with ground truth; the same arguments give the same data."""
    rng = random.Random(seed)
    people = profiles(patients, rng)
    events = injected(people, days, rng)
    floors = {p.patient_id: float(r["yellow_below"]) for p in people for r in p.rules
              if r.get("measurement") == "spo2"}
    messages: list[dict[str, Any]] = []
    happenings: list[Event] = []
    clinical: list[dict[str, Any]] = []
    planned = taken = 0
    for profile in people:
        sim = simulate(profile, events, days, random.Random(rng.getrandbits(64)))
        messages.extend(sim.messages)
        happenings.extend(sim.happenings)
        planned, taken = planned + sim.planned, taken + sim.taken
        for event in sim.clinical:
            sign = _first_sign(event, sim.readings, floors)
            shown = {"first_sign": _iso(sign) if sign else None}
            clinical.append(event.as_json() | shown)
    messages.sort(key=lambda m: (m["received_at"], m["topic"],
                                 str(m["payload"].get("message_id", ""))))
    end = START + timedelta(days=days)
    truth = {
        "seed": seed, "patients": patients, "days": days,
        "start": _iso(START), "end": _iso(end),
        "events": sorted(clinical, key=lambda e: (e["start"], e["patient_id"])),
        "happenings": [h.as_json() for h in sorted(
            happenings, key=lambda h: (h.start, h.patient_id, h.kind))],
        "planned_sessions": planned, "taken_sessions": taken,
    }
    return Cohort(roster=roster(people), messages=messages, truth=truth)
