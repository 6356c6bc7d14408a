"""The Open mHealth and FHIR adapters on the public examples in ../shared/corpus.

The files are read where they are and never changed; variants are derived here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hemmon.ingest.model import Device, MeasurementType, Normalised, RejectReason, SourceFormat
from hemmon.ingest.normalise import normalise
from hemmon.ingest.omh import SCHEMAS

from ..conftest import SHARED

CORPUS = SHARED / "corpus"
OMH = CORPUS / "omh" / "test-data" / "omh"
FHIR = CORPUS / "fhir"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
M = MeasurementType

if not CORPUS.is_dir():  # CI has shared/ beside the clone; a bare clone does not
    pytest.fail(f"the test corpus is not at {CORPUS} (shared/ beside the checkout)",
                pytrace=False)


def run(fmt: str, raw: bytes) -> Normalised:
    device = Device(id="dev-1", patient_id="p-1", format=SourceFormat(fmt))
    return normalise(raw, topic=f"hemmon/v1/devices/dev-1/readings/{fmt}",
                     devices={"dev-1": device}, received_at=NOW)


def omh_files(kind: str) -> list[Path]:
    return sorted(OMH.glob(f"*/*/{kind}/*.json"))


def data_point(path: Path) -> bytes:
    """A body from the test data, wrapped in the header a data point carries."""
    version_dir = path.parent.parent
    schema, version = version_dir.parent.name, version_dir.name
    header = {"uuid": f"{schema}-{version}-{path.stem}",
              "schema_id": {"namespace": "omh", "name": schema, "version": version}}
    body = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps({"header": header, "body": body}).encode()


def point_in_time(body: dict[str, Any]) -> bool:
    frame = body.get("effective_time_frame")
    if not isinstance(frame, dict) or "descriptive_statistic" in body:
        return False
    interval = frame.get("time_interval", {})
    return "date_time" in frame or "end_date_time" in interval or (
        "start_date_time" in interval and "duration" in interval)


@pytest.mark.parametrize("path", omh_files("shouldPass"), ids=lambda p: str(p.relative_to(OMH)))
def test_omh_should_pass_examples(path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    schema = path.parent.parent.parent.name
    result = run("omh", data_point(path))
    if point_in_time(body):
        assert result.rejections == ()
        assert [r.type for r in result.readings] == [kind for _, kind, _ in SCHEMAS[schema]]
        assert all(r.key == f"{schema}-{path.parent.parent.name}-{path.stem}"
                   for r in result.readings)
    else:
        [rejection] = result.rejections
        expected = (RejectReason.NOT_A_READING if "descriptive_statistic" in body
                    or "date" in body.get("effective_time_frame", {}).get("time_interval", {})
                    else RejectReason.SCHEMA_INVALID)
        assert rejection.reason is expected
        assert rejection.detail.startswith("body.")


@pytest.mark.parametrize("path", omh_files("shouldFail"), ids=lambda p: str(p.relative_to(OMH)))
def test_omh_should_fail_examples_are_rejected_naming_the_field(path: Path) -> None:
    result = run("omh", data_point(path))
    assert result.readings == ()
    [rejection] = result.rejections
    assert rejection.reason in (RejectReason.SCHEMA_INVALID, RejectReason.UNKNOWN_UNIT,
                                RejectReason.NOT_A_READING)
    assert rejection.detail.startswith("body.")


def test_omh_values_units_and_instants() -> None:
    bp = run("omh", data_point(OMH / "blood-pressure/4.0/shouldPass/blood-pressure-only.json"))
    assert [(r.type, r.value) for r in bp.readings] == [
        (M.BLOOD_PRESSURE_SYSTOLIC, 115.0), (M.BLOOD_PRESSURE_DIASTOLIC, 60.0)]
    assert bp.readings[0].measured_at == datetime(2020, 2, 5, 15, 25, tzinfo=UTC)
    temperature = run("omh", data_point(
        OMH / "body-temperature/4.0/shouldPass/valid-temperature.json"))
    assert temperature.readings[0].value == pytest.approx((97 - 32) * 5 / 9)
    oxygen = run("omh", data_point(OMH / "oxygen-saturation/2.0/shouldPass/with-oxygen.json"))
    assert oxygen.extras.supplemental_oxygen is True


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"header": None}, RejectReason.SCHEMA_INVALID, "header"),
        ({"header": {"uuid": "u", "schema_id": {"namespace": "omh", "name": "step-count"}}},
         RejectReason.UNKNOWN_TYPE, "header.schema_id.name"),
        ({"body": {"heart_rate": {"value": 60, "unit": "beats/min"},
                   "effective_time_frame": {"date_time": "2026-11-22T07:00:00"}}},
         RejectReason.NAIVE_TIME, ""),
        ({"body": {"heart_rate": {"value": "60", "unit": "beats/min"},
                   "effective_time_frame": {"date_time": "2026-11-22T07:00:00Z"}}},
         RejectReason.SCHEMA_INVALID, "body.heart_rate.value"),
    ],
)
def test_omh_data_point_problems(change: dict[str, Any], reason: RejectReason,
                                 field: str) -> None:
    point = {"header": {"uuid": "u-1", "schema_id": {"namespace": "omh", "name": "heart-rate",
                                                     "version": "2.0"}},
             "body": {}}
    point.update(change)
    [rejection] = run("omh", json.dumps(point).encode()).rejections
    assert rejection.reason is reason
    assert rejection.detail.startswith(field)


def fhir(name: str) -> bytes:
    [path] = FHIR.glob(f"*/{name}")
    return path.read_bytes()


def test_fhir_phd_bundle_gives_spo2_and_pulse_and_skips_the_time_stamp() -> None:
    result = run("fhir", fhir("bundle-example-1.json"))
    assert [(r.type, r.value, r.key) for r in result.readings] == [
        (M.SPO2, 98.0, "pulse-ox-001"), (M.HEART_RATE, 47.0, "pulse-ox-002")]
    assert result.readings[0].measured_at == datetime(2019, 9, 20, 16, 40, 16, 936000,
                                                      tzinfo=UTC)
    assert result.rejections == ()
    assert result.skipped == 1


def test_fhir_phd_blood_pressure_panel_and_glucose() -> None:
    bp = run("fhir", fhir("compound-numeric-blood-pressure.json"))
    assert [(r.type, r.value) for r in bp.readings] == [
        (M.BLOOD_PRESSURE_SYSTOLIC, 116.0), (M.BLOOD_PRESSURE_DIASTOLIC, 71.0)]
    glucose = run("fhir", fhir("glucose-observation.json"))
    assert glucose.readings[0].value == pytest.approx(99 / 18.016)
    assert glucose.readings[0].unit == "mmol/L"


def test_fhir_spec_examples() -> None:
    sat = run("fhir", fhir("observation-example-satO2.json"))
    assert [(r.type, r.value, r.key) for r in sat.readings] == [(M.SPO2, 95.0, "o1223435-10")]
    panel = run("fhir", fhir("observation-example-vitals-panel.json"))
    assert [r.reason for r in panel.rejections] == [RejectReason.NOT_A_READING]
    glucose = run("fhir", fhir("observation-example-f001-glucose.json"))
    [no_end] = glucose.rejections
    assert (no_end.reason, no_end.detail) == (
        RejectReason.SCHEMA_INVALID,
        "Observation: needs effectiveDateTime or effectivePeriod.end")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("observation-example-bloodpressure.json",
         [(M.BLOOD_PRESSURE_SYSTOLIC, 107.0), (M.BLOOD_PRESSURE_DIASTOLIC, 60.0)]),
        ("observation-example-body-temperature.json", [(M.BODY_TEMPERATURE, 36.5)]),
        ("observation-example-heart-rate.json", [(M.HEART_RATE, 44.0)]),
        ("observation-example-respiratory-rate.json", [(M.RESPIRATORY_RATE, 26.0)]),
        ("observation-example.json", [(M.BODY_WEIGHT, pytest.approx(83.91458845))]),
    ],
)
def test_fhir_spec_examples_with_a_date_only_are_rejected_and_read_once_timed(
    name: str, expected: list[tuple[MeasurementType, float]]
) -> None:
    [date_only] = run("fhir", fhir(name)).rejections
    assert date_only.reason is RejectReason.NAIVE_TIME
    assert "date without a time" in date_only.detail
    timed = json.loads(fhir(name))
    timed["effectiveDateTime"] = "2026-11-22T07:45:00+01:00"
    result = run("fhir", json.dumps(timed).encode())
    assert result.rejections == ()
    assert [(r.type, r.value) for r in result.readings] == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "preliminary"}, RejectReason.NOT_A_READING),
        ({"status": "entered-in-error"}, RejectReason.NOT_A_READING),
        ({"code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]}},
         RejectReason.UNKNOWN_TYPE),
        ({"valueQuantity": {"value": 95, "unit": "permille"}}, RejectReason.UNKNOWN_UNIT),
        ({"valueQuantity": {"value": 12, "unit": "%"}}, RejectReason.IMPLAUSIBLE_VALUE),
        ({"valueQuantity": {"value": "95", "unit": "%"}}, RejectReason.SCHEMA_INVALID),
        ({"identifier": None, "id": None}, RejectReason.SCHEMA_INVALID),
    ],
)
def test_fhir_observation_problems(change: dict[str, Any], reason: RejectReason) -> None:
    observation = json.loads(fhir("observation-example-satO2.json"))
    observation.update(change)
    [rejection] = run("fhir", json.dumps(observation).encode()).rejections
    assert rejection.reason is reason


def test_a_bad_observation_in_a_bundle_does_not_sink_its_siblings() -> None:
    bundle = json.loads(fhir("bundle-example-1.json"))
    pulse = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "pulse-ox-002")
    pulse["status"] = "cancelled"
    result = run("fhir", json.dumps(bundle).encode())
    assert [r.type for r in result.readings] == [M.SPO2]
    assert [r.reason for r in result.rejections] == [RejectReason.NOT_A_READING]
