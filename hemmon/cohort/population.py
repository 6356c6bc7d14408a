"""A simulated population: who the patients are, their baselines, and what happens to them.

Pure and deterministic for a seed (stdlib `random.Random`). The roster follows contract.md;
the events are the ground truth the evidence is scored against: injected deteriorations
with a known start and end, and the non-clinical happenings (artefacts, lapses, device
faults) that the rules must not turn into clinical alerts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
# A start that puts the October summer-time change inside a 30-day cohort, in the season
# of winter clothes and cold fingers.
START = datetime(2026, 10, 12, tzinfo=STOCKHOLM)

UNITS = (
    ("hc-stugun", "Stugun hälsocentral", "mon-fri 08:00-17:00"),
    ("hc-hammarstrand", "Hammarstrands hälsocentral", "mon-fri 08:00-16:30"),
    ("hc-bracke", "Bräcke hälsocentral", "mon-fri 08:00-17:00"),
    ("hc-stromsund", "Strömsunds hälsocentral", "mon-fri 07:30-16:30"),
)
NURSES = (
    ("nurse-anna", "Anna Berg"), ("nurse-karin", "Karin Holm"), ("nurse-lena", "Lena Sjöberg"),
    ("nurse-maria", "Maria Nilsson"), ("nurse-eva", "Eva Lindqvist"),
    ("nurse-sara", "Sara Jonsson"), ("nurse-ingrid", "Ingrid Persson"),
    ("nurse-johan", "Johan Olsson"),
)
# Comorbidity as seen in the region's follow-up: mostly one programme, some two.
GROUP_MIX: tuple[tuple[tuple[str, ...], int], ...] = (
    (("heart_failure",), 22), (("copd",), 20), (("hypertension",), 22), (("diabetes",), 10),
    (("heart_failure", "diabetes"), 8), (("hypertension", "diabetes"), 10),
    (("copd", "heart_failure"), 4), (("heart_failure", "hypertension"), 4),
)
# Share of eligible patients who get each injected deterioration.
EVENT_SHARE = {
    "hf_decompensation": 0.35, "copd_exacerbation": 0.35, "hypertensive_crisis": 0.2,
    "hypoglycaemia": 0.3, "sepsis": 0.1,
}
ELIGIBLE = {
    "hf_decompensation": ("heart_failure",), "copd_exacerbation": ("copd",),
    "hypertensive_crisis": ("hypertension",), "hypoglycaemia": ("diabetes",),
    "sepsis": ("copd", "heart_failure"),
}


@dataclass
class Profile:
    """One patient: identity in the roster, physiology, habits and device."""

    patient_id: str
    device_id: str
    groups: tuple[str, ...]
    unit: str
    nurse: str
    mobile_team: bool
    weight: float
    systolic: float
    diastolic: float
    pulse: float
    spo2: float
    respiration: float
    temperature: float
    glucose: float
    wake: float
    """Usual hour of the morning measurement, local time."""
    evening: float
    skip_rate: float
    battery: float
    drain: float
    measures: frozenset[str] = frozenset()
    rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """A happening with a known span: `clinical` ones should alert, the rest should not."""

    kind: str
    patient_id: str
    start: datetime
    end: datetime
    clinical: bool = True
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "patient_id": self.patient_id, "clinical": self.clinical,
                "start": _iso(self.start), "end": _iso(self.end), **self.detail}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _measures(groups: tuple[str, ...], rng: random.Random) -> frozenset[str]:
    kinds = set()
    if "heart_failure" in groups:
        kinds |= {"body_weight", "blood_pressure", "spo2"}
    if "copd" in groups:
        kinds |= {"spo2", "respiratory_rate", "body_temperature"}
    if "hypertension" in groups:
        kinds |= {"blood_pressure"}
    if "diabetes" in groups:
        kinds |= {"blood_glucose"}
        if rng.random() < 0.5:
            kinds |= {"blood_pressure"}
    return frozenset(kinds)


def _group(rng: random.Random) -> tuple[str, ...]:
    choices = [groups for groups, _ in GROUP_MIX]
    weights = [weight for _, weight in GROUP_MIX]
    chosen: tuple[str, ...] = rng.choices(choices, weights=weights)[0]
    return chosen


def profiles(count: int, rng: random.Random) -> list[Profile]:
    """The patients, with baselines a clinician would recognise for their groups."""
    out = []
    for i in range(1, count + 1):
        groups = _group(rng)
        unit = UNITS[(i - 1) % len(UNITS)][0]
        nurse = NURSES[(i - 1) % len(NURSES)][0]
        hf, copd = "heart_failure" in groups, "copd" in groups
        hypertensive = "hypertension" in groups
        profile = Profile(
            patient_id=f"p-{i:04d}", device_id=f"dev-{i:04d}", groups=groups, unit=unit,
            nurse=nurse, mobile_team=hf or copd or rng.random() < 0.2,
            weight=round(rng.uniform(55, 115), 1),
            systolic=(rng.uniform(116, 128) if hypertensive
                      else rng.uniform(118, 136) if hf else rng.uniform(112, 134)),
            diastolic=rng.uniform(70, 80),
            pulse=rng.uniform(62, 82) if not copd else rng.uniform(72, 88),
            spo2=rng.uniform(91.5, 94.5) if copd else rng.uniform(95, 97.5),
            respiration=rng.uniform(15, 19) if copd else rng.uniform(13, 17),
            temperature=rng.uniform(36.3, 36.8),
            glucose=rng.uniform(6.5, 9.0),
            wake=rng.uniform(6.5, 8.5), evening=rng.uniform(18.5, 21.0),
            skip_rate=rng.choice((0.02, 0.03, 0.05, 0.08, 0.15)),
            battery=rng.uniform(45, 100), drain=rng.uniform(1.0, 2.5),
        )
        profile.measures = _measures(groups, rng)
        if copd:
            # The personal SpO2 floor a clinician sets for a COPD patient whose usual
            # saturation is low (domain.md: floors of 88-90 %, BTS scale 2 target 88-92 %).
            floor = min(90, round(profile.spo2) - 3)
            profile.rules.append({"kind": "threshold", "measurement": "spo2",
                                  "yellow_below": floor, "red_below": floor - 2,
                                  "confirm": "12m"})
        out.append(profile)
    return out


def roster(patients: list[Profile]) -> dict[str, Any]:
    """The roster file (contract.md) for these patients."""
    entries = []
    for p in patients:
        entry: dict[str, Any] = {
            "id": p.patient_id, "unit": p.unit, "fast_vardkontakt": p.nurse,
            "groups": list(p.groups), "devices": [{"id": p.device_id, "format": "native"}],
        }
        if p.mobile_team:
            entry["mobile_team"] = "mint"
        if p.rules:
            entry["rules"] = p.rules
        entries.append(entry)
    units = sorted({p.unit for p in patients})
    return {
        "units": [{"id": u, "name": n, "office_hours": h} for u, n, h in UNITS if u in units],
        "teams": [{"id": "mint", "name": "MiNT Östersund"}],
        "clinicians": [{"id": nid, "name": name, "unit": UNITS[i % len(UNITS)][0]}
                       for i, (nid, name) in enumerate(NURSES)
                       if UNITS[i % len(UNITS)][0] in units],
        "patients": entries,
    }


def _at(day: int, hour: float) -> datetime:
    local = (START + timedelta(days=day)).replace(tzinfo=None) + timedelta(hours=hour)
    return local.replace(tzinfo=STOCKHOLM)


def injected(patients: list[Profile], days: int, rng: random.Random) -> list[Event]:
    """The deteriorations, at most one per patient, at least one of each kind the cohort
    has patients for; each starts after a few days of baseline and ends inside the span."""
    taken: set[str] = set()
    events = []
    for kind, share in EVENT_SHARE.items():
        eligible = [p for p in patients if p.patient_id not in taken
                    and any(g in p.groups for g in ELIGIBLE[kind])]
        if not eligible:
            continue
        rng.shuffle(eligible)
        last = START + timedelta(days=days)
        for p in eligible[:max(1, round(share * len(eligible)))]:
            taken.add(p.patient_id)
            event = _event(kind, p, days, rng)
            # a short cohort ends before the episode does: the truth ends with the data
            events.append(replace(event, end=min(event.end, last)))
    return sorted(events, key=lambda e: (e.start, e.patient_id))


def _event(kind: str, p: Profile, days: int, rng: random.Random) -> Event:
    first = min(4, days // 3)
    if kind == "hf_decompensation":
        gain_days = rng.randint(3, 5)
        day = rng.randint(first, max(first, days - gain_days - 3))
        start = _at(day, rng.uniform(0, 24))
        return Event(kind, p.patient_id, start, start + timedelta(days=gain_days + 3), detail={
            "kg_per_day": round(rng.uniform(0.5, 1.0), 2), "gain_days": gain_days})
    if kind == "copd_exacerbation":
        day = rng.randint(first, max(first, days - 7))
        start = _at(day, rng.uniform(0, 24))
        return Event(kind, p.patient_id, start, start + timedelta(days=7), detail={
            "spo2_drop": round(rng.uniform(4, 6), 1)})
    if kind == "hypertensive_crisis":
        day = rng.randint(first, max(first, days - 3))
        start = _at(day, rng.uniform(0, 24))
        return Event(kind, p.patient_id, start, start + timedelta(days=2), detail={
            "systolic": rng.randint(188, 215), "diastolic": rng.randint(112, 125)})
    if kind == "hypoglycaemia":
        # Shaky before lunch or in the evening: the patient measures, treats, re-measures.
        day = rng.randint(first, max(first, days - 2))
        start = _at(day, rng.choice((rng.uniform(10.5, 12), rng.uniform(16, 22.5))))
        return Event(kind, p.patient_id, start, start + timedelta(hours=1), detail={
            "glucose": round(rng.uniform(2.3, 3.4), 1)})
    day = rng.randint(first, max(first, days - 5))
    start = _at(day, rng.uniform(6, 20))
    return Event("sepsis", p.patient_id, start, start + timedelta(days=3))
