"""Open mHealth (IEEE 1752.1) data points: `{"header": {...}, "body": {...}}`.

`header.schema_id` picks the schema, `header.uuid` is the idempotency key. The body is checked
as the schema requires: the required values with a unit from the schema's own list, a time
frame that names an instant (a date-time, or the end of an interval), and the enumerations of
optional descriptors. A body with a `descriptive_statistic` is a summary, not a reading.
`measurement_location` and `body_posture` are not checked: their lists differ between schema
versions and the newest point at IEEE schemas that are not published with Open mHealth.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from .model import DeviceExtras, MeasurementType, RejectReason
from .normalise import Candidate, Context, Parsed, finite_number, is_member

M = MeasurementType

# schema name -> (body field, measurement, Open mHealth units -> hemmon's unit names)
_MMHG = {"mmHg": "mm[Hg]"}
SCHEMAS: dict[str, tuple[tuple[str, MeasurementType, dict[str, str]], ...]] = {
    "blood-pressure": (
        ("systolic_blood_pressure", M.BLOOD_PRESSURE_SYSTOLIC, _MMHG),
        ("diastolic_blood_pressure", M.BLOOD_PRESSURE_DIASTOLIC, _MMHG),
    ),
    "heart-rate": (("heart_rate", M.HEART_RATE, {"beats/min": "/min"}),),
    "body-weight": (
        ("body_weight", M.BODY_WEIGHT, {"kg": "kg", "g": "g", "lb": "[lb_av]", "oz": "[oz_av]"}),
    ),
    "body-temperature": (
        ("body_temperature", M.BODY_TEMPERATURE, {"C": "Cel", "F": "[degF]", "K": "K"}),
    ),
    "oxygen-saturation": (("oxygen_saturation", M.SPO2, {"%": "%"}),),
    "respiratory-rate": (("respiratory_rate", M.RESPIRATORY_RATE, {"breaths/min": "/min"}),),
    "blood-glucose": (
        ("blood_glucose", M.BLOOD_GLUCOSE, {"mg/dL": "mg/dL", "mmol/L": "mmol/L"}),
    ),
}

STATISTICS = frozenset({
    "average", "count", "maximum", "median", "minimum", "standard deviation", "sum", "variance",
    "20th percentile", "80th percentile", "lower quartile", "upper quartile",
    "quartile deviation", "1st quintile", "2nd quintile", "3rd quintile", "4th quintile",
})
ENUMERATIONS: dict[str, frozenset[str]] = {
    "temporal_relationship_to_meal": frozenset({
        "fasting", "not fasting", "before meal", "after meal", "before breakfast",
        "after breakfast", "before lunch", "after lunch", "before dinner", "after dinner",
        "2 hours postprandial", "with meal", "with food"}),
    "temporal_relationship_to_sleep": frozenset({"before sleeping", "during sleep", "on waking"}),
    "temporal_relationship_to_physical_activity": frozenset({
        "at rest", "active", "before exercise", "after exercise", "during exercise"}),
    "specimen_source": frozenset({
        "breath", "capillary blood", "interstitial fluid", "saliva", "sweat", "tears", "urine"}),
    "blood_specimen_type": frozenset({"whole blood", "plasma", "serum"}),
}
# Optional parts of the oxygen-saturation schema, checked only there.
OXYGEN_ENUMERATIONS: dict[str, frozenset[str]] = {
    "system": frozenset({"peripheral capillary"}),
    "oxygen_therapy_mode_of_administration": frozenset({"nasal cannula"}),
    "measurement_method": frozenset({"pulse oximetry"}),
}
_DURATION_SECONDS = {"ps": 1e-12, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "sec": 1, "min": 60,
                     "h": 3600, "d": 86400, "wk": 604800, "Mo": 2629746, "yr": 31556952}


class _Invalid(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail



def _instant(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: not a date-time")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: not an ISO 8601 date-time") from exc


def _duration(value: Any, where: str) -> timedelta:
    if not isinstance(value, dict) or not finite_number(value.get("value")) or (
        not is_member(value.get("unit"), _DURATION_SECONDS)
    ):
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: not a duration")
    try:
        return timedelta(seconds=value["value"] * _DURATION_SECONDS[value["unit"]])
    except OverflowError as exc:
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: duration out of range") from exc


def measured_at(frame: Any) -> datetime:
    """The instant of an effective_time_frame: its date_time, or the end of its interval."""
    where = "body.effective_time_frame"
    if not isinstance(frame, dict):
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: missing (required)")
    if ("date_time" in frame) == ("time_interval" in frame):
        raise _Invalid(RejectReason.SCHEMA_INVALID,
                       f"{where}: needs exactly one of date_time and time_interval")
    if "date_time" in frame:
        return _instant(frame["date_time"], f"{where}.date_time")
    interval = frame["time_interval"]
    where = f"{where}.time_interval"
    if not isinstance(interval, dict):
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: not an object")
    if "end_date_time" in interval:
        return _instant(interval["end_date_time"], f"{where}.end_date_time")
    if "start_date_time" in interval and "duration" in interval:
        start = _instant(interval["start_date_time"], f"{where}.start_date_time")
        try:
            return start + _duration(interval["duration"], f"{where}.duration")
        except OverflowError as exc:
            raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: ends out of range") from exc
    if "date" in interval:
        raise _Invalid(RejectReason.NOT_A_READING, f"{where}: a part of a day, not an instant")
    raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: needs an end or a start and duration")


def _header(data: Any) -> tuple[str, str]:
    if not isinstance(data, dict) or not isinstance(data.get("header"), dict):
        raise _Invalid(RejectReason.SCHEMA_INVALID, "header: missing (a data point has a header)")
    header = data["header"]
    key = header.get("uuid")
    if not isinstance(key, str) or not 0 < len(key) <= 128:
        raise _Invalid(RejectReason.SCHEMA_INVALID, "header.uuid: missing or not a string")
    schema = header.get("schema_id")
    if not isinstance(schema, dict) or schema.get("namespace") != "omh":
        raise _Invalid(RejectReason.SCHEMA_INVALID, "header.schema_id: not an omh schema id")
    name = schema.get("name")
    if not isinstance(name, str) or name not in SCHEMAS:
        raise _Invalid(RejectReason.UNKNOWN_TYPE,
                       f"header.schema_id.name: {str(name)[:40]!r} is not a schema hemmon reads")
    if not isinstance(data.get("body"), dict):
        raise _Invalid(RejectReason.SCHEMA_INVALID, "body: missing or not an object")
    return key, name


def _oxygen_flow(body: dict[str, Any]) -> bool | None:
    """Whether the patient was on supplemental oxygen, from the optional flow rate."""
    for field, allowed in OXYGEN_ENUMERATIONS.items():
        if field in body and not is_member(body[field], allowed):
            raise _Invalid(RejectReason.SCHEMA_INVALID, f"body.{field}: not a value the schema"
                                                        " allows")
    flow = body.get("supplemental_oxygen_flow_rate")
    if flow is None:
        return None
    if not isinstance(flow, dict) or not finite_number(flow.get("value")):
        raise _Invalid(RejectReason.SCHEMA_INVALID,
                       "body.supplemental_oxygen_flow_rate.value: missing (required)")
    if flow.get("unit") != "L/min":
        raise _Invalid(RejectReason.UNKNOWN_UNIT,
                       "body.supplemental_oxygen_flow_rate.unit: not L/min")
    return bool(flow["value"] > 0)


def _check_descriptors(body: dict[str, Any]) -> None:
    for field, allowed in ENUMERATIONS.items():
        if field in body and not is_member(body[field], allowed):
            raise _Invalid(RejectReason.SCHEMA_INVALID, f"body.{field}: not a value the schema"
                                                        " allows")
    if "descriptive_statistic" in body:
        statistic = body["descriptive_statistic"]
        if not is_member(statistic, STATISTICS):
            raise _Invalid(RejectReason.SCHEMA_INVALID,
                           "body.descriptive_statistic: not a known statistic")
        raise _Invalid(RejectReason.NOT_A_READING,
                       f"body.descriptive_statistic: a summary ({statistic}), not a reading")


def parse_omh(ctx: Context) -> Parsed:
    """Candidates from one Open mHealth data point, or the rejection naming the field."""
    try:
        data = json.loads(ctx.raw)
    except (ValueError, RecursionError):
        return Parsed(rejections=[ctx.reject(RejectReason.NOT_JSON, "payload is not JSON")])
    key: str | None = None
    try:
        key, name = _header(data)
        body = data["body"]
        _check_descriptors(body)
        fields = SCHEMAS[name]
        values = []
        for field, kind, units in fields:
            value = body.get(field)
            where = f"body.{field}"
            if not isinstance(value, dict) or not finite_number(value.get("value")):
                raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}.value: missing (required)")
            unit = value.get("unit")
            if not isinstance(unit, str) or unit not in units:
                raise _Invalid(RejectReason.UNKNOWN_UNIT,
                               f"{where}.unit: {str(unit)[:20]!r} is not a {name} unit")
            values.append((kind, float(value["value"]), units[unit], where))
        at = measured_at(body.get("effective_time_frame"))
        oxygen = _oxygen_flow(body) if name == "oxygen-saturation" else None
    except _Invalid as invalid:
        return Parsed(rejections=[ctx.reject(invalid.reason, invalid.detail, key)], key=key)
    return Parsed(
        candidates=[
            Candidate(type=kind, value=value, unit=unit, measured_at=at, manual=False, key=key,
                      where=where)
            for kind, value, unit, where in values
        ],
        key=key,
        extras=DeviceExtras(supplemental_oxygen=oxygen),
    )
