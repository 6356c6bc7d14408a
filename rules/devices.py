"""Device notices, pure: a device gone silent or with a low battery.

They go to the patient's health centre as notices, never as clinical alerts: a silent
device says nothing about the patient's health, and the fix is practical (a call, a new
battery). Low battery uses hysteresis so that a battery hovering at the limit does not
flap: the notice opens below 20 % and clears at 30 % or more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .evaluate import Finding
from .model import Level

BATTERY_LOW = 20.0
BATTERY_OK = 30.0
STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass(frozen=True, slots=True)
class DeviceState:
    device_id: str
    patient_id: str
    expect_every: timedelta
    last_seen_at: datetime
    """Anything heard from the device, or its registration in the roster."""
    battery: float | None
    online: bool | None


def silent_key(device_id: str) -> str:
    return f"device:silent:{device_id}"


def battery_key(device_id: str) -> str:
    return f"device:battery:{device_id}"


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} timmar" if hours >= 2 else f"{delta.total_seconds() / 60:.0f} minuter"


def device_findings(state: DeviceState, now: datetime, *,
                    battery_notice_open: bool = False,
                    zone: ZoneInfo = STOCKHOLM) -> list[Finding]:
    """The notices a device's state calls for now (empty: the device is fine)."""
    found = []
    silent_for = now - state.last_seen_at
    if silent_for > state.expect_every:
        seen = state.last_seen_at.astimezone(zone)
        offline = " och har meddelat att den är frånkopplad" if state.online is False else ""
        found.append(Finding(
            patient_id=state.patient_id, rule_key=silent_key(state.device_id), rule_version=0,
            measurement=None, category="device", level=Level.YELLOW,
            value=silent_for.total_seconds(), limit=state.expect_every.total_seconds(),
            direction="above", measured_at=now, reading_key=state.device_id,
            explanation=(f"Mätaren {state.device_id} har inte hörts av på {_hours(silent_for)}"
                         f" (sedan {seen:%Y-%m-%d %H:%M}){offline}; förväntat var"
                         f" {_hours(state.expect_every)}. Kontakta patienten om mätaren."),
        ))
    limit = BATTERY_OK if battery_notice_open else BATTERY_LOW
    if state.battery is not None and state.battery < limit:
        found.append(Finding(
            patient_id=state.patient_id, rule_key=battery_key(state.device_id), rule_version=0,
            measurement=None, category="device", level=Level.YELLOW, value=state.battery,
            limit=BATTERY_LOW, direction="below", measured_at=now, reading_key=state.device_id,
            explanation=(f"Mätaren {state.device_id} har {state.battery:.0f} % batteri kvar:"
                         " byt eller ladda batteriet."),
        ))
    return found
