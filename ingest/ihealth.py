"""iHealth cloud API responses: BPDataList, BODataList, WeightDataList, BGDataList.

`DataID` is the idempotency key; `DataSource` "Manual" means entered by hand.

Time quirk: `MDate` is the local wall-clock time written as if it were UTC epoch seconds,
and `TimeZone` gives the offset ("-0800", "+0100", or a number such as 200 for +02:00). The
instant is MDate read as local time at that offset. Empty lists are not errors; a record
without its main value is rejected with that reason, its siblings still count.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .model import MeasurementType, RejectReason
from .normalise import Candidate, Context, Parsed, finite_number

M = MeasurementType
MAX_RECORDS = 1000
_OFFSET = re.compile(r"^([+-]?)(\d{1,4})$")

# list -> (main field, type, unit field, units by code), extra fields in the same record
LISTS: dict[str, tuple[tuple[str, MeasurementType, str | None, dict[int, str]], ...]] = {
    "BPDataList": (
        ("HP", M.BLOOD_PRESSURE_SYSTOLIC, "BPUnit", {0: "mm[Hg]", 1: "kPa"}),
        ("LP", M.BLOOD_PRESSURE_DIASTOLIC, "BPUnit", {0: "mm[Hg]", 1: "kPa"}),
        ("HR", M.HEART_RATE, None, {0: "/min"}),
    ),
    "BODataList": (
        ("BO", M.SPO2, None, {0: "%"}),
        ("HR", M.HEART_RATE, None, {0: "/min"}),
    ),
    "WeightDataList": (
        ("WeightValue", M.BODY_WEIGHT, "WeightUnit", {0: "kg", 1: "[lb_av]", 2: "[stone_av]"}),
    ),
    "BGDataList": (("BG", M.BLOOD_GLUCOSE, "BGUnit", {0: "mg/dL", 1: "mmol/L"}),),
}


class _Invalid(Exception):
    def __init__(self, detail: str, reason: RejectReason = RejectReason.SCHEMA_INVALID) -> None:
        super().__init__(detail)
        self.reason = reason


def offset(zone: Any) -> timezone:
    """'+0100', '-0800' or 200 (meaning +02:00) as a fixed offset; raises _Invalid."""
    if isinstance(zone, bool) or not isinstance(zone, str | int):
        raise _Invalid("TimeZone: missing")
    match = _OFFSET.match(str(zone).strip())
    if not match:
        raise _Invalid(f"TimeZone: {str(zone)[:12]!r} is not an offset such as +0100")
    digits = match[2].zfill(4)
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 14 or minutes >= 60:
        raise _Invalid(f"TimeZone: {str(zone)[:12]!r} is out of range")
    sign = -1 if match[1] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def instant(mdate: Any, zone: Any) -> datetime:
    """MDate (local wall clock written as UTC epoch seconds) at its TimeZone."""
    if isinstance(mdate, bool) or not isinstance(mdate, int) or not 0 < mdate < 32503680000:
        raise _Invalid("MDate: not epoch seconds")
    wall = datetime.fromtimestamp(mdate, UTC).replace(tzinfo=None)
    return wall.replace(tzinfo=offset(zone))



def _record(ctx: Context, name: str, record: Any, where: str, parsed: Parsed) -> None:
    key = record.get("DataID") if isinstance(record, dict) else None
    key = key if isinstance(key, str) and 0 < len(key) <= 128 else None
    try:
        if not isinstance(record, dict):
            raise _Invalid("not an object")
        if key is None:
            raise _Invalid("DataID: missing")
        at = instant(record.get("MDate"), record.get("TimeZone"))
        fields = LISTS[name]
        main = fields[0][0]
        if not finite_number(record.get(main)):
            raise _Invalid(f"{main}: missing (the record's main value)")
        manual = record.get("DataSource") == "Manual"
        found = []
        for field, kind, unit_field, units in fields:
            if field not in record or (field == "HR" and record[field] in (0, None)):
                continue  # an optional pulse; 0 is the API's "not measured"
            if not finite_number(record[field]):
                raise _Invalid(f"{field}: not a number")
            code = record.get(unit_field, 0) if unit_field else 0
            unit = units.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
            if unit is None:
                raise _Invalid(f"{unit_field}: {str(code)[:12]!r} is not a known unit code",
                               RejectReason.UNKNOWN_UNIT)
            found.append(Candidate(type=kind, value=float(record[field]), unit=unit,
                                   measured_at=at, manual=manual, key=key,
                                   where=f"{where}.{field}"))
    except _Invalid as invalid:
        parsed.rejections.append(ctx.reject(invalid.reason, f"{where}.{invalid}", key))
        return
    parsed.candidates.extend(found)
    parsed.key = parsed.key or key


def parse_ihealth(ctx: Context) -> Parsed:
    """Candidates from an iHealth response; each bad record is its own rejection."""
    try:
        data = json.loads(ctx.raw)
    except (ValueError, RecursionError):
        return Parsed(rejections=[ctx.reject(RejectReason.NOT_JSON, "payload is not JSON")])
    if not isinstance(data, dict) or not any(name in data for name in LISTS):
        return Parsed(rejections=[ctx.reject(
            RejectReason.SCHEMA_INVALID, "no iHealth data list (BPDataList, BODataList, ...)")])
    parsed = Parsed()
    for name in LISTS:
        found = data.get(name)
        if found is None:
            continue
        if not isinstance(found, list) or len(found) > MAX_RECORDS:
            parsed.rejections.append(ctx.reject(RejectReason.SCHEMA_INVALID,
                                                f"{name}: not a list of records"))
            continue
        for index, record in enumerate(found):
            _record(ctx, name, record, f"{name}[{index}]", parsed)
    return parsed
