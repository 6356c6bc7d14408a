"""Withings measure API responses (`measure?action=getmeas`), as a gateway relays them.

Each measure group has `date` (epoch seconds, UTC), `grpid` (the idempotency key),
`category` (1 a real measurement, 2 a user's goal: never a reading) and `attrib` (2 and 4
mean entered by hand). A measure's true value is `value` x 10^`unit`. Measure types that are
not readings here (fat ratio, muscle mass, ...) and goals are skipped without error, counted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeGuard

from .model import MeasurementType, RejectReason
from .normalise import Candidate, Context, Parsed, finite_number, is_member

M = MeasurementType
TYPES: dict[int, tuple[MeasurementType, str]] = {
    1: (M.BODY_WEIGHT, "kg"),
    9: (M.BLOOD_PRESSURE_DIASTOLIC, "mm[Hg]"),
    10: (M.BLOOD_PRESSURE_SYSTOLIC, "mm[Hg]"),
    11: (M.HEART_RATE, "/min"),
    12: (M.BODY_TEMPERATURE, "Cel"),
    54: (M.SPO2, "%"),
    71: (M.BODY_TEMPERATURE, "Cel"),
}
MANUAL_ATTRIBS = frozenset({2, 4})
GOAL = 2
MAX_GROUPS = 500


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and finite_number(value)


def _group(ctx: Context, group: Any, where: str, parsed: Parsed) -> None:
    if not isinstance(group, dict):
        parsed.rejections.append(ctx.reject(RejectReason.SCHEMA_INVALID, f"{where}: not an object"))
        return
    grpid = group.get("grpid")
    key = str(grpid) if _integer(grpid) or (isinstance(grpid, str) and grpid) else None

    def reject(reason: RejectReason, detail: str) -> None:
        parsed.rejections.append(ctx.reject(reason, f"{where}.{detail}", key))

    if key is None or len(key) > 128:
        return reject(RejectReason.SCHEMA_INVALID, "grpid: missing")
    if group.get("category") == GOAL:
        parsed.skipped += 1
        return None
    if group.get("category") != 1:
        return reject(RejectReason.SCHEMA_INVALID, "category: neither 1 (real) nor 2 (goal)")
    date = group.get("date")
    if not _integer(date) or not 0 < date < 32503680000:
        return reject(RejectReason.SCHEMA_INVALID, "date: not epoch seconds")
    measures = group.get("measures")
    if not isinstance(measures, list):
        return reject(RejectReason.SCHEMA_INVALID, "measures: missing")
    at = datetime.fromtimestamp(date, UTC)
    manual = is_member(group.get("attrib"), MANUAL_ATTRIBS)
    for index, measure in enumerate(measures):
        place = f"measures[{index}]"
        if not isinstance(measure, dict) or not _integer(measure.get("type")):
            reject(RejectReason.SCHEMA_INVALID, f"{place}.type: missing")
            continue
        known = TYPES.get(measure["type"])
        if known is None:
            parsed.skipped += 1
            continue
        value, exponent = measure.get("value"), measure.get("unit")
        if not _integer(value) or not _integer(exponent) or not -20 <= exponent <= 20:
            reject(RejectReason.SCHEMA_INVALID, f"{place}: value and unit must be integers")
            continue
        kind, unit = known
        parsed.candidates.append(Candidate(
            type=kind, value=float(value) * 10.0**exponent, unit=unit, measured_at=at,
            manual=manual, key=key, where=f"{where}.{place}",
        ))
        parsed.key = parsed.key or key
    return None


def parse_withings(ctx: Context) -> Parsed:
    """Candidates from a Withings measure response; each bad group is its own rejection."""
    try:
        data = json.loads(ctx.raw)
    except (ValueError, RecursionError):
        return Parsed(rejections=[ctx.reject(RejectReason.NOT_JSON, "payload is not JSON")])
    if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
        return Parsed(rejections=[ctx.reject(RejectReason.SCHEMA_INVALID, "body: missing")])
    if data.get("status", 0) != 0:
        return Parsed(rejections=[ctx.reject(
            RejectReason.NOT_A_READING, f"status {str(data['status'])[:12]}: an error response")])
    groups = data["body"].get("measuregrps")
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        return Parsed(rejections=[ctx.reject(
            RejectReason.SCHEMA_INVALID, f"body.measuregrps: missing or more than {MAX_GROUPS}")])
    parsed = Parsed()
    for index, group in enumerate(groups):
        _group(ctx, group, f"body.measuregrps[{index}]", parsed)
    return parsed
