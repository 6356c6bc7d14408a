"""HL7 FHIR R4 Observations, alone or in a Bundle (formats.md).

The type comes from `code.coding` (LOINC, or IEEE 11073 MDC as personal-health devices
send); a blood-pressure panel carries its values in `component`s. The unit is the UCUM
`code` when the quantity says it is UCUM, else its `unit` text. The time is
`effectiveDateTime` or the end of `effectivePeriod`; the key is `identifier[0].value`, else
`id`. Only final, amended or corrected observations are readings. Each Observation in a
Bundle stands or falls alone; other resources in a Bundle (Patient, Device) are skipped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .model import MeasurementType, RejectReason
from .normalise import Candidate, Context, Parsed, finite_number, is_member

M = MeasurementType
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
READING_STATUSES = frozenset({"final", "amended", "corrected"})

CODES: dict[tuple[str, str], MeasurementType] = {
    (LOINC, "8867-4"): M.HEART_RATE,
    (LOINC, "59408-5"): M.SPO2,
    (LOINC, "2708-6"): M.SPO2,
    (LOINC, "8480-6"): M.BLOOD_PRESSURE_SYSTOLIC,
    (LOINC, "8462-4"): M.BLOOD_PRESSURE_DIASTOLIC,
    (LOINC, "29463-7"): M.BODY_WEIGHT,
    (LOINC, "3141-9"): M.BODY_WEIGHT,
    (LOINC, "8310-5"): M.BODY_TEMPERATURE,
    (LOINC, "9279-1"): M.RESPIRATORY_RATE,
    (LOINC, "14743-9"): M.BLOOD_GLUCOSE,
    (LOINC, "41653-7"): M.BLOOD_GLUCOSE,
    (LOINC, "15074-8"): M.BLOOD_GLUCOSE,
    (MDC, "149546"): M.HEART_RATE,
    (MDC, "149530"): M.HEART_RATE,  # pulse rate from an oximeter
    (MDC, "150456"): M.SPO2,
    (MDC, "150021"): M.BLOOD_PRESSURE_SYSTOLIC,
    (MDC, "150022"): M.BLOOD_PRESSURE_DIASTOLIC,
    (MDC, "188736"): M.BODY_WEIGHT,
    (MDC, "150364"): M.BODY_TEMPERATURE,
    (MDC, "151562"): M.RESPIRATORY_RATE,
    (MDC, "160368"): M.BLOOD_GLUCOSE,  # capillary whole blood
}
PANELS = frozenset({(LOINC, "85354-9"), (MDC, "150020")})
# Not readings here, skipped without error and counted: mean arterial pressure (a panel
# part) and the coincident time stamp a PHD gateway sends with its observations.
IGNORED_PARTS = frozenset({(LOINC, "8478-0"), (MDC, "150023")})
IGNORED_OBSERVATIONS = frozenset({(MDC, "67975")})
UNITS = {"{beats}/min": "/min", "{beat}/min": "/min", "beats/minute": "/min",
         "{Breaths}/min": "/min", "breaths/minute": "/min", "lbs": "[lb_av]", "mmHg": "mm[Hg]"}


class _Invalid(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _codes(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [(str(c.get("system")), str(c.get("code"))) for c in concept["coding"]
            if isinstance(c, dict)]


def _quantity(holder: dict[str, Any], where: str) -> tuple[float, str]:
    quantity = holder.get("valueQuantity")
    if not isinstance(quantity, dict):
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}.valueQuantity: missing")
    value = quantity.get("value")
    if not finite_number(value):
        raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}.valueQuantity.value: not a number")
    unit = quantity.get("code") if quantity.get("system") == UCUM else None
    unit = unit if isinstance(unit, str) else quantity.get("unit")
    if not isinstance(unit, str):
        raise _Invalid(RejectReason.UNKNOWN_UNIT, f"{where}.valueQuantity: no unit")
    return float(value), UNITS.get(unit, unit)


def _when(obs: dict[str, Any], where: str) -> datetime:
    text = obs.get("effectiveDateTime")
    field = "effectiveDateTime"
    if text is None and isinstance(obs.get("effectivePeriod"), dict):
        text, field = obs["effectivePeriod"].get("end"), "effectivePeriod.end"
    if not isinstance(text, str):
        raise _Invalid(RejectReason.SCHEMA_INVALID,
                       f"{where}: needs effectiveDateTime or effectivePeriod.end")
    if "T" not in text:
        raise _Invalid(RejectReason.NAIVE_TIME,
                       f"{where}.{field}: a date without a time of day is not an instant")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _Invalid(RejectReason.SCHEMA_INVALID,
                       f"{where}.{field}: not a FHIR dateTime") from exc
    if moment.tzinfo is None:
        raise _Invalid(RejectReason.NAIVE_TIME, f"{where}.{field}: time has no UTC offset")
    return moment


def _key(obs: dict[str, Any], where: str) -> str:
    identifiers = obs.get("identifier")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], dict):
        value = identifiers[0].get("value")
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
    if isinstance(obs.get("id"), str) and 0 < len(obs["id"]) <= 128:
        return str(obs["id"])
    raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}: needs identifier[0].value or id")


def _observation(obs: dict[str, Any], where: str) -> list[Candidate] | None:
    """The candidates of one Observation; None when it is not a reading hemmon keeps."""
    if any(code in IGNORED_OBSERVATIONS for code in _codes(obs.get("code"))):
        return None
    key = _key(obs, where)
    status = obs.get("status")
    if not is_member(status, READING_STATUSES):
        raise _Invalid(RejectReason.NOT_A_READING,
                       f"{where}.status: {str(status)[:20]!r} is not a final reading")
    codes = _codes(obs.get("code"))
    parts: list[tuple[MeasurementType, dict[str, Any], str]] = []
    if any(code in PANELS for code in codes):
        components = obs.get("component")
        if not isinstance(components, list) or not components:
            raise _Invalid(RejectReason.SCHEMA_INVALID, f"{where}.component: a panel needs them")
        for index, component in enumerate(components):
            place = f"{where}.component[{index}]"
            if not isinstance(component, dict):
                raise _Invalid(RejectReason.SCHEMA_INVALID, f"{place}: not an object")
            part_codes = _codes(component.get("code"))
            kind = next((CODES[c] for c in part_codes if c in CODES), None)
            if kind is None:
                if any(c in IGNORED_PARTS for c in part_codes):
                    continue  # not counted: part of a message that gave readings
                raise _Invalid(RejectReason.UNKNOWN_TYPE, f"{place}.code: not a known measurement")
            parts.append((kind, component, place))
    else:
        kind = next((CODES[c] for c in codes if c in CODES), None)
        if kind is None:
            if "hasMember" in obs and "valueQuantity" not in obs:
                raise _Invalid(RejectReason.NOT_A_READING,
                               f"{where}: a panel of references, not a reading")
            raise _Invalid(RejectReason.UNKNOWN_TYPE, f"{where}.code: not a known measurement")
        parts.append((kind, obs, where))
    at = _when(obs, where)
    candidates = []
    for kind, holder, place in parts:
        value, unit = _quantity(holder, place)
        candidates.append(Candidate(type=kind, value=value, unit=unit, measured_at=at,
                                    manual=False, key=key, where=place))
    return candidates


def parse_fhir(ctx: Context) -> Parsed:
    """Candidates from an Observation or a Bundle; each bad Observation is its own rejection."""
    try:
        data = json.loads(ctx.raw)
    except (ValueError, RecursionError):
        return Parsed(rejections=[ctx.reject(RejectReason.NOT_JSON, "payload is not JSON")])
    if not isinstance(data, dict):
        return Parsed(rejections=[ctx.reject(RejectReason.SCHEMA_INVALID, "not a FHIR resource")])
    kind = data.get("resourceType")
    observations: list[tuple[Any, str]] = []
    if kind == "Observation":
        observations = [(data, "Observation")]
    elif kind == "Bundle" and isinstance(data.get("entry"), list):
        for index, entry in enumerate(data["entry"]):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "Observation":
                observations.append((resource, f"entry[{index}].resource"))
        if not observations:
            return Parsed(rejections=[ctx.reject(RejectReason.NOT_A_READING,
                                                 "the Bundle holds no Observation")])
    else:
        return Parsed(rejections=[ctx.reject(
            RejectReason.SCHEMA_INVALID, "resourceType: not an Observation or a Bundle")])
    parsed = Parsed()
    for obs, where in observations:
        try:
            found = _observation(obs, where)
        except _Invalid as invalid:
            key = obs.get("id") if isinstance(obs.get("id"), str) else None
            parsed.rejections.append(ctx.reject(invalid.reason, invalid.detail, key))
            continue
        if found is None:
            parsed.skipped += 1
            continue
        parsed.candidates.extend(found)
        parsed.key = parsed.key or (found[0].key if found else None)
    return parsed
