"""hemmon's data as HL7 FHIR R4, pure: readings as Observations, alerts as Flags, Bundles.

- A reading is a vital-signs `Observation` (blood glucose: laboratory) with its LOINC code
  and a UCUM `valueQuantity`. A systolic and a diastolic pressure from the same message are
  one blood-pressure panel (85354-9) with two components. Its `identifier` is made from the
  device, the message key, the code and the time, so a re-export gives the same one.
- An alert is a `Flag`: active until resolved, its period from opening to resolution, its
  code the rule that raised it. R4's Flag has no notes, so what happened to it (opened,
  acknowledged, resolved with its outcome, notes) is one `Communication` per event, `about`
  the Flag.
- The patient is referred to by identifier: the personnummer where the roster has one, else
  the pseudonym under the region's own identifier system (`FhirSystems`).

Nothing here does I/O: stores load rows into the dataclasses below, the HTTP layer and the
journal (fhir_journal.py) call these functions and send what they return.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hemmon.ingest.fhir import LOINC, UCUM
from hemmon.ingest.model import MeasurementType
from hemmon.rules.explain import NAMES

from .lifecycle import Outcome

Resource = dict[str, Any]
M = MeasurementType

PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BLOOD_PRESSURE = ("85354-9", "Blood pressure panel with all children optional")


@dataclass(frozen=True, slots=True)
class Code:
    loinc: str
    display: str
    unit: str
    """The UCUM code of hemmon's canonical unit (ingest/units.py)."""
    profile: str | None
    """The R4 vital-signs profile the Observation claims, if one fits."""


CODES: Mapping[MeasurementType, Code] = {
    M.HEART_RATE: Code("8867-4", "Heart rate", "/min", "heartrate"),
    M.SPO2: Code("2708-6", "Oxygen saturation in Arterial blood", "%", "oxygensat"),
    M.BLOOD_PRESSURE_SYSTOLIC: Code("8480-6", "Systolic blood pressure", "mm[Hg]", None),
    M.BLOOD_PRESSURE_DIASTOLIC: Code("8462-4", "Diastolic blood pressure", "mm[Hg]", None),
    M.BODY_WEIGHT: Code("29463-7", "Body weight", "kg", "bodyweight"),
    M.BODY_TEMPERATURE: Code("8310-5", "Body temperature", "Cel", "bodytemp"),
    M.RESPIRATORY_RATE: Code("9279-1", "Respiratory rate", "/min", "resprate"),
    M.BLOOD_GLUCOSE: Code("14743-9", "Glucose [Moles/volume] in Capillary blood by Glucometer",
                          "mmol/L", None),
}
# Pulse oximetry's own code, beside the one the vital-signs profile asks for.
PULSE_OXIMETRY = ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")
PRESSURES = (M.BLOOD_PRESSURE_SYSTOLIC, M.BLOOD_PRESSURE_DIASTOLIC)

_EVENT_TEXT = {
    "opened": "Larm öppnat",
    "acknowledge": "Larm kvitterat",
    "resolve": "Larm avslutat",
    "note": "Anteckning",
}
_OUTCOME_TEXT = {
    Outcome.PATIENT_CONTACTED: "patienten kontaktad",
    Outcome.ADVICE_GIVEN: "råd givet",
    Outcome.MEDICATION_CHANGED: "läkemedel ändrat",
    Outcome.REFERRED_MOBILE_TEAM: "remitterad till mobila teamet",
    Outcome.NO_ACTION: "ingen åtgärd",
}
_LEVEL_TEXT = {"yellow": "Gul", "red": "Röd"}
_CATEGORY_TEXT = {"clinical": "Kliniskt larm", "adherence": "Uteblivna mätningar",
                  "device": "Mätutrustning"}
JOURNAL_ACTIONS = frozenset(_EVENT_TEXT)
"""The alert events that go to the journal."""


@dataclass(frozen=True, slots=True)
class FhirSystems:
    """The identifier systems a region gives hemmon (HEMMON_FHIR_SYSTEM is their base)."""

    base: str = "urn:hemmon"

    def of(self, kind: str) -> str:
        separator = ":" if self.base.startswith("urn:") else "/"
        return f"{self.base}{separator}{kind}"


@dataclass(frozen=True, slots=True)
class ExportReading:
    """A stored reading, as the export needs it."""

    patient_id: str
    device_id: str
    type: MeasurementType
    value: float
    measured_at: datetime
    key: str
    manual: bool = False


@dataclass(frozen=True, slots=True)
class ExportEvent:
    """One row of an alert's history (alert_events)."""

    id: int
    at: datetime
    actor: str
    action: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ExportAlert:
    """An alert with what the journal needs of it."""

    id: int
    patient_id: str
    rule: str
    level: str
    category: str
    status: str
    opened_at: datetime
    explanation: str
    resolved_at: datetime | None = None
    outcome: str | None = None
    measurement: str | None = None


def patient_reference(pseudonym: str, systems: FhirSystems,
                      personnummer: str | None = None) -> Resource:
    """The subject of everything exported: the personnummer where the roster has one (the
    journal knows the patient by it), else the pseudonym under the region's own system."""
    if personnummer:
        identifier = {"system": PERSONNUMMER_SYSTEM, "value": personnummer.replace("-", "")}
    else:
        identifier = {"system": systems.of("patient"), "value": pseudonym}
    return {"type": "Patient", "identifier": identifier}


def instant(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("a naive time cannot be exported")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def resource_id(*parts: str) -> str:
    """A FHIR id (at most 64 of [A-Za-z0-9-.]) that is the same for the same parts."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def full_url(resource: Resource) -> str:
    """A stable urn:uuid for a resource in a transaction (from its type and id)."""
    name = f"{resource['resourceType']}/{resource['id']}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def _quantity(value: float, unit: str) -> Resource:
    shown = {"mm[Hg]": "mmHg", "Cel": "°C"}.get(unit, unit)
    return {"value": round(value, 3), "unit": shown, "system": UCUM, "code": unit}


def _coding(code: str, display: str) -> Resource:
    return {"system": LOINC, "code": code, "display": display}


def _observation(first: ExportReading, code_name: str, systems: FhirSystems,
                 personnummer: str | None) -> Resource:
    stamp = first.measured_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    value = f"{first.device_id}/{first.key}/{code_name}/{stamp}"
    laboratory = first.type is M.BLOOD_GLUCOSE
    category = "laboratory" if laboratory else "vital-signs"
    subject = patient_reference(first.patient_id, systems, personnummer)
    resource: Resource = {
        "resourceType": "Observation",
        "id": resource_id("Observation", systems.of("observation"), value),
        "identifier": [{"system": systems.of("observation"), "value": value}],
        "status": "final",
        "category": [{"coding": [{
            "system": OBSERVATION_CATEGORY, "code": category,
            "display": "Laboratory" if laboratory else "Vital Signs"}]}],
        "subject": subject,
        "effectiveDateTime": instant(first.measured_at),
        "performer": [subject],  # measured at home by the patient
        "device": {"type": "Device",
                   "identifier": {"system": systems.of("device"), "value": first.device_id}},
    }
    if first.manual:
        resource["note"] = [{"text": "Manuellt inmatat värde"}]
    return resource


def observations(readings: Iterable[ExportReading], systems: FhirSystems,
                 personnummer: Mapping[str, str] | None = None) -> list[Resource]:
    """Observations for readings: each blood-pressure pair as one panel; order kept.

    `personnummer` maps a pseudonym to the patient's personnummer where the roster has one.
    """
    numbers = personnummer or {}
    pressures: dict[tuple[str, str, datetime], dict[MeasurementType, ExportReading]] = {}
    order: list[tuple[str, Any]] = []
    for reading in readings:
        if reading.type in PRESSURES:
            group = (reading.device_id, reading.key, reading.measured_at)
            if group not in pressures:
                pressures[group] = {}
                order.append(("panel", group))
            pressures[group][reading.type] = reading
        else:
            order.append(("single", reading))
    resources = []
    for kind, item in order:
        if kind == "panel":
            resources.append(_pressure(pressures[item], systems, numbers))
        else:
            resources.append(_single(item, systems, numbers.get(item.patient_id)))
    return resources


def _single(reading: ExportReading, systems: FhirSystems,
            personnummer: str | None) -> Resource:
    code = CODES[reading.type]
    resource = _observation(reading, code.loinc, systems, personnummer)
    codings = [_coding(code.loinc, code.display)]
    if reading.type is M.SPO2:
        codings.append(_coding(*PULSE_OXIMETRY))
    if code.profile:
        resource["meta"] = {"profile": [f"http://hl7.org/fhir/StructureDefinition/{code.profile}"]}
    resource["code"] = {"coding": codings, "text": NAMES[reading.type]}
    resource["valueQuantity"] = _quantity(reading.value, code.unit)
    return _ordered(resource)


def _pressure(pair: Mapping[MeasurementType, ExportReading], systems: FhirSystems,
              numbers: Mapping[str, str]) -> Resource:
    first = next(iter(pair.values()))
    resource = _observation(first, BLOOD_PRESSURE[0], systems, numbers.get(first.patient_id))
    resource["code"] = {"coding": [_coding(*BLOOD_PRESSURE)], "text": "Blodtryck"}
    if len(pair) == 2:  # a lone pressure is exported, but cannot claim the bp profile
        resource["meta"] = {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]}
    resource["component"] = [
        {"code": {"coding": [_coding(CODES[kind].loinc, CODES[kind].display)],
                  "text": NAMES[kind]},
         "valueQuantity": _quantity(pair[kind].value, "mm[Hg]")}
        for kind in PRESSURES if kind in pair
    ]
    return _ordered(resource)


_ORDER = ("resourceType", "id", "meta", "identifier", "status", "category", "code", "subject",
          "effectiveDateTime", "performer", "valueQuantity", "device", "component", "note")


def _ordered(resource: Resource) -> Resource:
    """The same keys in the order the specification lists them (easier to read)."""
    return {key: resource[key] for key in _ORDER if key in resource}


def flag(alert: ExportAlert, systems: FhirSystems, personnummer: str | None = None,
         *, as_of: ExportEvent | None = None) -> Resource:
    """The alert as a Flag: as it is now, or as it was right after the event `as_of`."""
    resolved_at = alert.resolved_at
    if as_of is not None and (resolved_at is None or resolved_at > as_of.at):
        # not resolved yet at that event (a resolution is final: later events keep it)
        resolved_at = as_of.at if as_of.action == "resolve" else None
    period: Resource = {"start": instant(alert.opened_at)}
    if resolved_at is not None:
        period["end"] = instant(resolved_at)
    level = _LEVEL_TEXT.get(alert.level, alert.level)
    return {
        "resourceType": "Flag",
        "id": resource_id("Flag", systems.of("alert"), str(alert.id)),
        "identifier": [{"system": systems.of("alert"), "value": str(alert.id)}],
        "status": "inactive" if resolved_at is not None else "active",
        "category": [
            {"coding": [{"system": systems.of("alert-category"), "code": alert.category}],
             "text": _CATEGORY_TEXT.get(alert.category, alert.category)},
            {"coding": [{"system": systems.of("alert-level"), "code": alert.level}],
             "text": level},
        ],
        "code": {"coding": [{"system": systems.of("rule"), "code": alert.rule}],
                 "text": f"{level}: {alert.explanation}"},
        "subject": patient_reference(alert.patient_id, systems, personnummer),
        "period": period,
        "author": {"type": "Device", "display": "hemmon"},
    }


def event_text(event: ExportEvent, alert: ExportAlert) -> str:
    """What the journal reads about one event, in Swedish."""
    parts = [_EVENT_TEXT.get(event.action, event.action)]
    if event.action == "opened":
        parts.append(alert.explanation)
    if event.action == "resolve" and alert.outcome:
        try:
            parts.append(f"utfall: {_OUTCOME_TEXT[Outcome(alert.outcome)]}")
        except ValueError:
            parts.append(f"utfall: {alert.outcome}")
    note = event.note
    if note and alert.outcome and note.startswith(alert.outcome):
        # the alert store writes "<outcome>: <note>"; the outcome is already said in Swedish
        note = note.removeprefix(alert.outcome).lstrip(": ")
    if note:
        parts.append(note)
    return ". ".join(parts)


def communication(event: ExportEvent, alert: ExportAlert, systems: FhirSystems,
                  personnummer: str | None = None, flag_reference: str | None = None,
                  evidence: Sequence[str] = ()) -> Resource:
    """One event of an alert (opened, acknowledged, resolved, a note) as a Communication
    about its Flag; `flag_reference` is the Flag's fullUrl in a transaction, `evidence`
    references to the Observations that opened it."""
    flag_id = resource_id("Flag", systems.of("alert"), str(alert.id))
    sender = ({"type": "Device", "display": "hemmon"} if event.actor == "hemmon" else
              {"type": "Practitioner",
               "identifier": {"system": systems.of("clinician"), "value": event.actor}})
    return {
        "resourceType": "Communication",
        "id": resource_id("Communication", systems.of("alert-event"), str(event.id)),
        "identifier": [{"system": systems.of("alert-event"), "value": str(event.id)}],
        "status": "completed",
        "category": [{"coding": [{"system": systems.of("alert-event-kind"),
                                  "code": event.action}],
                      "text": _EVENT_TEXT.get(event.action, event.action)}],
        "subject": patient_reference(alert.patient_id, systems, personnummer),
        "about": [{"reference": flag_reference or f"Flag/{flag_id}"}],
        "sent": instant(event.at),
        "sender": sender,
        "payload": [{"contentString": event_text(event, alert)},
                    *({"contentReference": {"reference": url}} for url in evidence)],
    }


def searchset(base_url: str, self_url: str, matches: Sequence[Resource],
              included: Sequence[Resource] = ()) -> Resource:
    """A searchset Bundle: the matches, then resources they refer to (search mode include)."""
    entries = [{"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r,
                "search": {"mode": mode}}
               for mode, group in (("match", matches), ("include", included)) for r in group]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
            "link": [{"relation": "self", "url": self_url}], "entry": entries}


def types_for_codes(tokens: Iterable[str]) -> set[MeasurementType]:
    """The measurement types a search's `code` asks for (`[system|]code`, LOINC); a
    pressure brings its partner, as both are one panel."""
    by_code: dict[str, set[MeasurementType]] = {PULSE_OXIMETRY[0]: {M.SPO2}}
    for kind, spec in CODES.items():
        by_code.setdefault(spec.loinc, set()).add(kind)
    for loinc in (BLOOD_PRESSURE[0], CODES[M.BLOOD_PRESSURE_SYSTOLIC].loinc,
                  CODES[M.BLOOD_PRESSURE_DIASTOLIC].loinc):
        by_code[loinc] = set(PRESSURES)
    found: set[MeasurementType] = set()
    for token in tokens:
        system, _, loinc = token.rpartition("|")
        if system in ("", LOINC):
            found |= by_code.get(loinc, set())
    return found
