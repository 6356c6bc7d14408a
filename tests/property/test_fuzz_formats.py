"""Hostile input for every format: fuzzing (atheris, 100,000 runs each), structured
mutations (Hypothesis) and the classic attacks. None may raise, none may lose a message."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemmon.ingest.model import Device, Normalised, RejectReason, SourceFormat
from hemmon.ingest.normalise import MAX_PAYLOAD_BYTES, normalise

from ..conftest import SHARED

FUZZER = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_normalise.py"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
FORMATS = [f.value for f in SourceFormat]
FUZZ_RUNS = 100_000


def native_seed() -> dict[str, Any]:
    return {"schema": "hemmon.reading/1", "message_id": "m-1",
            "measured_at": "2026-11-22T08:15:00+01:00", "manual": False,
            "measurements": [{"type": "blood_pressure_systolic", "value": 142, "unit": "mm[Hg]"},
                             {"type": "heart_rate", "value": 72, "unit": "/min"},
                             {"type": "battery", "value": 80}]}


def withings_seed() -> dict[str, Any]:
    return {"status": 0, "body": {"measuregrps": [
        {"grpid": 12, "attrib": 0, "date": 1594245600, "category": 1,
         "measures": [{"value": 65750, "type": 1, "unit": -3}, {"value": 97, "type": 54,
                                                                 "unit": 0}]},
        {"grpid": 13, "attrib": 2, "date": 1594245600, "category": 2,
         "measures": [{"value": 70, "type": 1, "unit": 0}]}]}}


def ihealth_seed() -> dict[str, Any]:
    return {"BPDataList": [{"BPUnit": 0, "DataID": "d-1", "DataSource": "FromDevice",
                            "HP": 122, "HR": 78, "LP": 78, "MDate": 1605056400,
                            "TimeZone": "-0800"}],
            "WeightDataList": [{"WeightValue": 180.0, "WeightUnit": 1, "DataID": "w-1",
                                "MDate": 1605056400, "TimeZone": 200}]}


def omh_seed() -> dict[str, Any]:
    return {"header": {"uuid": "u-1", "schema_id": {"namespace": "omh", "name": "blood-pressure",
                                                    "version": "4.0"}},
            "body": {"systolic_blood_pressure": {"value": 115, "unit": "mmHg"},
                     "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
                     "effective_time_frame": {"date_time": "2020-02-05T07:25:00-08:00"}}}


def fhir_seed() -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o-1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
            "effectiveDateTime": "2026-11-22T08:15:00+01:00",
            "valueQuantity": {"value": 95, "unit": "%", "system": "http://unitsofmeasure.org",
                              "code": "%"}}


SEEDS = {"native": native_seed, "withings": withings_seed, "ihealth": ihealth_seed,
         "omh": omh_seed, "fhir": fhir_seed}


def run(fmt: str, raw: bytes) -> Normalised:
    device = Device(id="dev-1", patient_id="p-1", format=SourceFormat(fmt))
    return normalise(raw, topic=f"hemmon/v1/devices/dev-1/readings/{fmt}",
                     devices={"dev-1": device}, received_at=NOW)


def kept(result: Normalised, raw: bytes) -> None:
    for rejection in result.rejections:
        assert rejection.reason in set(RejectReason)
        assert rejection.raw == raw
        assert not rejection.detail.startswith("internal error"), rejection.detail


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzzing_a_hundred_thousand_payloads_per_format(fmt: str, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "seed.json").write_text(json.dumps(SEEDS[fmt]()))
    if fmt == "fhir":
        for index, path in enumerate(sorted((SHARED / "corpus" / "fhir").glob("*/*.json"))):
            (seeds / f"corpus-{index}.json").write_bytes(path.read_bytes())
    result = subprocess.run(
        [sys.executable, str(FUZZER), fmt, str(seeds), f"-runs={FUZZ_RUNS}", "-max_len=8192",
         "-timeout=10", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {FUZZ_RUNS} runs" in result.stderr


leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.just(
    10**400) | st.just("\x00\ud800") | st.just([]) | st.just({})


def mutate(value: Any, draw: Any) -> Any:
    """Replace some parts of a valid payload by hostile leaves, keeping the rest."""
    if isinstance(value, dict):
        return {k: (draw(leaf) if draw(st.integers(0, 9)) == 0 else mutate(v, draw))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mutate(v, draw) for v in value] + ([draw(leaf)] if draw(st.booleans()) else [])
    return draw(leaf) if draw(st.integers(0, 3)) == 0 else value


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_payloads_never_raise(fmt: str, data: st.DataObject) -> None:
    payload = mutate(SEEDS[fmt](), data.draw)
    try:
        raw = json.dumps(payload).encode("utf-8", "surrogatepass")
    except ValueError:
        raw = json.dumps(payload, ensure_ascii=True).encode()
    kept(run(fmt, raw), raw)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("raw", "reasons"),
    [
        (b"\xff\xfe\xfa not utf-8", {RejectReason.NOT_JSON}),
        (nested(10_000), {RejectReason.NOT_JSON, RejectReason.SCHEMA_INVALID}),
        (b"[" * 50_000, {RejectReason.NOT_JSON}),
        (b'{"x": ' + b"9" * 5000 + b"}", {RejectReason.NOT_JSON, RejectReason.SCHEMA_INVALID}),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), {RejectReason.PAYLOAD_TOO_LARGE}),
        (b"", {RejectReason.NOT_JSON}),
        (b"null", {RejectReason.SCHEMA_INVALID}),
        (b'"just a string"', {RejectReason.SCHEMA_INVALID}),
    ],
    ids=["invalid-utf8", "deep-nesting", "unclosed", "huge-number", "too-large", "empty",
         "null", "string"],
)
def test_classic_attacks_are_rejections(fmt: str, raw: bytes,
                                        reasons: set[RejectReason]) -> None:
    result = run(fmt, raw)
    assert result.readings == ()
    assert {r.reason for r in result.rejections} <= reasons
    assert result.rejections
    kept(result, raw)


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("native", dict(native_seed(), message_id="bad\x00key")),
        ("fhir", dict(fhir_seed(), id="\ud800")),
        ("withings", {"status": 0, "body": {"measuregrps": [
            dict(withings_seed()["body"]["measuregrps"][0], grpid="\x00")]}}),
        ("ihealth", {"BPDataList": [dict(ihealth_seed()["BPDataList"][0], DataID="\x00")]}),
        ("omh", dict(omh_seed(), header={"uuid": "\x00", "schema_id": omh_seed()["header"][
            "schema_id"]})),
    ],
)
def test_keys_postgres_cannot_store_are_rejected(fmt: str, payload: dict[str, Any]) -> None:
    raw = json.dumps(payload).encode("utf-8", "surrogatepass")
    result = run(fmt, raw)
    assert result.readings == ()
    assert result.rejections
    for rejection in result.rejections:
        assert rejection.key is None or "\x00" not in rejection.key
    assert result.key is None or "\x00" not in result.key
