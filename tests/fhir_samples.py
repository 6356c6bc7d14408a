"""One of every resource kind hemmon's FHIR export emits, from fixed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hemmon.alerts import fhir_export as fhir
from hemmon.alerts import fhir_journal as journal
from hemmon.ingest.model import MeasurementType as M

SYSTEMS = fhir.FhirSystems()
AT = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
BASE = "http://127.0.0.1:8080/fhir/r4"


def reading(kind: M, value: float, key: str = "m-1", *, device: str = "dev-0001",
            at: datetime = AT, manual: bool = False) -> fhir.ExportReading:
    return fhir.ExportReading("p-0001", device, kind, value, at, key, manual)


READINGS = [
    reading(M.BLOOD_PRESSURE_SYSTOLIC, 182, "bp"), reading(M.BLOOD_PRESSURE_DIASTOLIC, 95, "bp"),
    reading(M.SPO2, 91, "ox"), reading(M.HEART_RATE, 71, "ox"),
    reading(M.BODY_WEIGHT, 81.25, "w", manual=True), reading(M.BODY_TEMPERATURE, 37.2, "t"),
    reading(M.RESPIRATORY_RATE, 17, "r"), reading(M.BLOOD_GLUCOSE, 6.1, "g"),
    reading(M.BLOOD_PRESSURE_SYSTOLIC, 150, "lone"),
]
ALERT = fhir.ExportAlert(
    id=7, patient_id="p-0001", rule="threshold:spo2", level="red", category="clinical",
    status="resolved", opened_at=AT, explanation="SpO2 85 % är under 88 %",
    resolved_at=AT + timedelta(hours=1), outcome="patient_contacted", measurement="spo2")
EVENTS = [
    fhir.ExportEvent(11, AT, "hemmon", "opened"),
    fhir.ExportEvent(12, AT + timedelta(minutes=5), "nurse-anna", "acknowledge", "ringer"),
    fhir.ExportEvent(13, AT + timedelta(minutes=20), "nurse-anna", "note", "mår bättre"),
    fhir.ExportEvent(14, AT + timedelta(hours=1), "nurse-anna", "resolve",
                     "patient_contacted: syrgas justerad"),
]


def every_kind() -> dict[str, dict[str, Any]]:
    """Name -> resource: each Observation kind, a Flag and its Communications, Bundles."""
    observations = fhir.observations(READINGS, SYSTEMS, {"p-0001": "19121212-1212"})
    flag = fhir.flag(ALERT, SYSTEMS)
    told = [fhir.communication(event, ALERT, SYSTEMS) for event in EVENTS]
    named: dict[str, dict[str, Any]] = {
        f"observation-{i}": resource for i, resource in enumerate(observations)}
    named |= {f"communication-{e.action}": c for e, c in zip(EVENTS, told, strict=True)}
    named["flag"] = flag
    named["searchset-observations"] = fhir.searchset(
        BASE, f"{BASE}/Observation?patient=p-0001", observations)
    named["searchset-flags"] = fhir.searchset(BASE, f"{BASE}/Flag?patient=p-0001", [flag],
                                              told)
    opened_by = journal.evidence_for(ALERT, READINGS)
    for event in EVENTS:
        named[f"transaction-{event.action}"] = journal.journal_bundle(
            ALERT, event, SYSTEMS, "19121212-1212", opened_by)
    return named
