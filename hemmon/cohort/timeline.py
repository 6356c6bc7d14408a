"""A patient's days: when they measure, what goes wrong, what they do about it.

The habits (wandering times, skipped mornings, holidays, re-measuring a value that looks
wrong) and the faults (a dead battery, a clock set wrong) are the everyday noise that must
not reach a nurse as a clinical alert; each is written down as a non-clinical happening.
Holidays and device faults go to patients without an injected deterioration, so that every
deterioration can be seen in the data (a hub that is dead during a hypoglycaemia sends
nothing to judge).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .population import Event, Profile
from .readings import MINUTE, Patient, local

ARTEFACT_RATE = 0.04
"""Share of morning sessions with an artefact (stairs, winter clothes, cold fingers)."""


def _devices(profile: Profile, *, evening: bool) -> list[str]:
    kinds = profile.measures
    if evening:
        wanted = {"blood_glucose"}
        if "hypertension" in profile.groups:
            wanted.add("blood_pressure")
        return sorted(kinds & wanted)
    return sorted(kinds)


def _holiday(p: Patient, days: int) -> range:
    if days < 10 or p.clinical or p.rng.random() > 0.12:
        return range(0)
    length = p.rng.randint(3, 6)
    first = p.rng.randint(2, days - length - 1)
    return range(first, first + length)


def _clock_fault(p: Patient, days: int) -> None:
    if days < 8 or p.clinical or p.rng.random() > 0.1:
        return
    first = p.rng.randint(1, days - 6)
    span = p.rng.randint(3, 6)
    offset = timedelta(hours=p.rng.choice((3, -5, 3, -2)))
    start, end = local(first, 0), local(first + span, 0)
    p.clock_offset = lambda t: offset if start <= t < end else timedelta()
    p.happened("clock_wrong", start, end, hours=offset.total_seconds() / 3600)


def _artefact(p: Patient, t: datetime, devices: list[str]) -> bool:
    """A morning value that is wrong for a practical reason, re-measured minutes later."""
    options = []
    if "body_weight" in devices:
        options.append("winter_clothes")
    if "spo2" in devices:
        options.append("cold_fingers")
    if "blood_pressure" in devices or "spo2" in devices:
        options.append("stairs")
    if not options or p.rng.random() > ARTEFACT_RATE or p.unwell(t):
        return False
    kind = p.rng.choice(options)
    again = t + MINUTE * p.rng.uniform(2, 8)
    if kind == "winter_clothes":
        p.send(t, devices, extra={"body_weight": p.rng.uniform(1.2, 1.8)})
        p.send(again, ["body_weight"])
    elif kind == "cold_fingers":
        p.send(t, devices, fixed={"spo2": p.rng.randint(83, 87)})
        p.send(again, ["spo2"])
    else:
        p.send(t, devices, fixed={"heart_rate": p.rng.randint(118, 130)},
               extra={"blood_pressure_systolic": 15})
        again = t + MINUTE * p.rng.uniform(5, 10)
        p.send(again, [d for d in devices if d in ("blood_pressure", "spo2")])
    p.happened(kind, t, again)
    return True


def _session(p: Patient, t: datetime, devices: list[str]) -> None:
    if not devices:
        return
    if _artefact(p, t, devices):
        return
    p.send(t, devices)
    event = p.unwell(t)
    if event is not None and p.rng.random() < 0.6:  # it looks wrong: measure again
        p.send(t + MINUTE * p.rng.uniform(3, 8), devices)


def _ill_extras(p: Patient, day: int) -> None:
    """A patient who feels ill measures more: at the onset of symptoms, and in the
    afternoon while it lasts; with a fever, the thermometer too."""
    for event in p.clinical:
        if event.kind == "hypoglycaemia" and event.start.date() == local(day, 12).date():
            low = event.start + MINUTE * p.rng.uniform(3, 10)
            p.send(low, ["blood_glucose"], manual=True,
                   fixed={"blood_glucose": event.detail["glucose"]})
            p.send(low + MINUTE * p.rng.uniform(15, 20), ["blood_glucose"], manual=True,
                   fixed={"blood_glucose": p.rng.uniform(4.4, 6.0)})
    for hour in (14.0, 22.0):
        t = local(day, hour + p.rng.uniform(-1, 1))
        ill = p.unwell(t)
        if ill is None or ill.kind == "hf_decompensation":
            continue
        devices = sorted(p.p.measures - {"body_weight", "blood_glucose"})
        if ill.kind == "sepsis":
            devices = sorted(set(devices) | {"body_temperature", "spo2"})
        _session(p, t, devices)
    for event in p.clinical:
        if event.kind in ("hypertensive_crisis", "sepsis") and (
                event.start.date() == local(day, 12).date()):
            t = event.start + MINUTE * p.rng.uniform(20, 60)
            devices = (["blood_pressure"] if event.kind == "hypertensive_crisis"
                       else sorted(p.p.measures - {"body_weight", "blood_glucose"}))
            _session(p, t, devices)


def _heartbeats(p: Patient, days: int, levels: dict[int, float],
                dead: list[tuple[datetime, datetime]]) -> None:
    """The home hub reports its status every six hours while it has power, also when
    nobody measures (a holiday is missed measurements, not a silent device)."""
    for day in range(days):
        for hour in (3.0, 9.0, 15.0, 21.0):
            t = local(day, hour + p.rng.uniform(0, 0.2))
            if day in levels and not any(start <= t < end for start, end in dead):
                p.status(t, online=True, battery=levels[day])


def simulate(profile: Profile, events: list[Event], days: int,
             rng: random.Random) -> Patient:
    """Every message the patient's device sends over the days, with the happenings."""
    p = Patient(profile, events, days, rng)
    away = _holiday(p, days)
    if away:
        p.happened("holiday", local(away.start, 0), local(away.stop, 0))
    _clock_fault(p, days)
    battery, dead_until = profile.battery, -1
    dies = not p.clinical and rng.random() < 0.15
    dead: list[tuple[datetime, datetime]] = []
    levels: dict[int, float] = {}
    for day in range(days):
        p.drift.step()
        morning = local(day, profile.wake + rng.gauss(0, 0.4)
                        + (rng.uniform(2, 4) if rng.random() < 0.04 else 0))
        p.planned += 1
        if day < dead_until:
            continue
        if battery <= 0:
            battery = 100.0
        levels[day] = battery
        if day in away:
            continue
        if rng.random() >= profile.skip_rate or p.unwell(morning):
            p.taken += 1
            _session(p, morning, _devices(profile, evening=False))
            battery -= profile.drain * (1 + rng.random())
            if battery < 12 and dies:
                p.status(morning + MINUTE * 5, online=False, battery=None)
                dead_until = day + rng.randint(2, 4)
                back = local(dead_until, profile.wake)
                dead.append((morning, back))
                p.happened("dead_battery", morning, back)
                battery, dies = 0.0, False
                continue
            if not dies and battery < rng.uniform(12, 30):
                battery = 100.0  # the patient or the home-care staff change it
            levels[day] = battery
            p.status(morning + MINUTE * 2, online=True, battery=battery)
        evening = local(day, profile.evening + rng.gauss(0, 0.5))
        if rng.random() >= profile.skip_rate * 2 or p.unwell(evening):
            _session(p, evening, _devices(profile, evening=True))
        _ill_extras(p, day)
    _heartbeats(p, days, levels, dead)
    return p
