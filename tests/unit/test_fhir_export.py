"""The FHIR export's decisions, from values: codes, panels, identifiers, Flags, Bundles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemmon.alerts import fhir_export as fhir
from hemmon.alerts.fhir_api import date_range
from hemmon.ingest.model import MeasurementType as M

from ..fhir_samples import ALERT, AT, EVENTS, READINGS, SYSTEMS, reading


def test_a_blood_pressure_pair_is_one_panel_with_two_components() -> None:
    panel, *_ = fhir.observations(READINGS, SYSTEMS)
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    assert panel["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"],
             c["valueQuantity"]["code"]) for c in panel["component"]] == [
        ("8480-6", 182, "mm[Hg]"), ("8462-4", 95, "mm[Hg]")]
    assert "valueQuantity" not in panel


@pytest.mark.parametrize(("kind", "value", "loinc", "ucum", "category"), [
    (M.HEART_RATE, 71, "8867-4", "/min", "vital-signs"),
    (M.SPO2, 91, "2708-6", "%", "vital-signs"),
    (M.BODY_WEIGHT, 81.25, "29463-7", "kg", "vital-signs"),
    (M.BODY_TEMPERATURE, 37.2, "8310-5", "Cel", "vital-signs"),
    (M.RESPIRATORY_RATE, 17, "9279-1", "/min", "vital-signs"),
    (M.BLOOD_GLUCOSE, 6.1, "14743-9", "mmol/L", "laboratory"),
])
def test_each_measurement_has_its_loinc_code_and_ucum_quantity(
    kind: M, value: float, loinc: str, ucum: str, category: str
) -> None:
    [obs] = fhir.observations([reading(kind, value)], SYSTEMS)
    assert obs["code"]["coding"][0] == {"system": fhir.LOINC, "code": loinc,
                                        "display": fhir.CODES[kind].display}
    assert obs["valueQuantity"]["value"] == value
    assert (obs["valueQuantity"]["system"], obs["valueQuantity"]["code"]) == (fhir.UCUM, ucum)
    assert obs["category"][0]["coding"][0]["code"] == category
    assert obs["effectiveDateTime"] == "2026-03-02T07:30:00Z"
    assert obs["device"]["identifier"] == {"system": "urn:hemmon:device", "value": "dev-0001"}


def test_the_identifier_is_the_same_on_every_export_and_differs_per_message() -> None:
    first = fhir.observations(READINGS, SYSTEMS)
    again = fhir.observations(list(READINGS), SYSTEMS)
    assert [o["identifier"] for o in first] == [o["identifier"] for o in again]
    assert [o["id"] for o in first] == [o["id"] for o in again]
    assert len({o["id"] for o in first}) == len(first)


def test_the_subject_is_the_personnummer_where_known_else_the_pseudonym() -> None:
    [known] = fhir.observations([reading(M.SPO2, 95)], SYSTEMS, {"p-0001": "19121212-1212"})
    assert known["subject"]["identifier"] == {"system": fhir.PERSONNUMMER_SYSTEM,
                                              "value": "191212121212"}
    region = fhir.FhirSystems("https://fhir.regionjh.se/sid/hemmon")
    assert fhir.patient_reference("p-0001", region)["identifier"] == {
        "system": "https://fhir.regionjh.se/sid/hemmon/patient", "value": "p-0001"}


def test_a_flag_is_active_until_resolved_and_names_its_rule() -> None:
    flag = fhir.flag(ALERT, SYSTEMS)
    assert flag["status"] == "inactive"
    assert flag["period"] == {"start": "2026-03-02T07:30:00Z", "end": "2026-03-02T08:30:00Z"}
    assert flag["code"]["coding"][0]["code"] == "threshold:spo2"
    assert flag["code"]["text"].startswith("Röd: ")
    as_opened = fhir.flag(ALERT, SYSTEMS, as_of=EVENTS[0])
    assert as_opened["status"] == "active"
    assert "end" not in as_opened["period"]
    after = fhir.ExportEvent(15, AT + timedelta(hours=2), "nurse-anna", "note", "uppföljt")
    assert fhir.flag(ALERT, SYSTEMS, as_of=after)["status"] == "inactive"
    assert fhir.flag(ALERT, SYSTEMS, as_of=EVENTS[-1])["period"]["end"] == "2026-03-02T08:30:00Z"


def test_the_outcome_and_note_are_said_in_swedish() -> None:
    text = fhir.event_text(EVENTS[-1], ALERT)
    assert text == "Larm avslutat. utfall: patienten kontaktad. syrgas justerad"
    told = fhir.communication(EVENTS[1], ALERT, SYSTEMS)
    assert told["sender"]["identifier"]["value"] == "nurse-anna"
    assert told["about"] == [{"reference": f"Flag/{fhir.flag(ALERT, SYSTEMS)['id']}"}]


@pytest.mark.parametrize(("codes", "types"), [
    (["http://loinc.org|85354-9"], {M.BLOOD_PRESSURE_SYSTOLIC, M.BLOOD_PRESSURE_DIASTOLIC}),
    (["8867-4", "59408-5"], {M.HEART_RATE, M.SPO2}),
    (["http://snomed.info/sct|8867-4", "nonsense"], set()),
])
def test_search_codes(codes: list[str], types: set[M]) -> None:
    assert fhir.types_for_codes(codes) == types


def test_search_dates() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    assert date_range(["ge2026-03-02", "lt2026-03-04"]) == (day, day + timedelta(days=2))
    assert date_range(["2026-03-02"]) == (day, day + timedelta(days=1))
    assert date_range(["gt2026-03-02T00:00:00+00:00"])[0] == day + timedelta(seconds=1)
    with pytest.raises(ValueError, match="offset"):
        date_range(["ge2026-03-02T10:00:00"])


@given(st.lists(st.tuples(st.sampled_from(list(M)), st.integers(0, 3),
                          st.floats(1, 200, allow_nan=False))))
def test_every_reading_is_exported_once(items: list[tuple[M, int, float]]) -> None:
    readings = {(kind, key): reading(kind, value, f"m{key}") for kind, key, value in items}
    exported = fhir.observations(readings.values(), SYSTEMS)
    values = [q for o in exported
              for q in [o.get("valueQuantity")] + [c["valueQuantity"]
                                                    for c in o.get("component", [])] if q]
    assert len(values) == len(readings)
