"""The records between the distributed runner's stages: what goes in comes out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hemmon.core import Evaluation
from hemmon.distributed import (
    Topics,
    bucket,
    dead_letter_record,
    findings_record,
    open_findings_records,
    open_readings_record,
    readings_record,
    split_by_bucket,
)
from hemmon.ingest.model import (
    MeasurementType,
    Normalised,
    Reading,
    Rejection,
    RejectReason,
    SourceFormat,
)
from hemmon.rules.engine import Clear
from hemmon.rules.evaluate import Finding
from hemmon.rules.model import Level

AT = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)


def reading(patient: str, value: float, minutes: int = 0) -> Reading:
    return Reading(patient_id=patient, device_id=f"dev-{patient}",
                   type=MeasurementType.BODY_WEIGHT, value=value, unit="kg",
                   measured_at=AT + timedelta(minutes=minutes), received_at=AT,
                   source_format=SourceFormat.NATIVE, manual=False, key=f"m-{minutes}",
                   on_oxygen=None)


def finding(patient: str, key: str) -> Finding:
    return Finding(patient_id=patient, rule_key="rise:body_weight", rule_version=2,
                   measurement=MeasurementType.BODY_WEIGHT, level=Level.RED, value=2.4,
                   limit=2.0, direction="above", measured_at=AT, reading_key=key,
                   explanation="Vikt +2,4 kg på 3 dygn")


def test_topics_and_groups_follow_the_raw_topic() -> None:
    topics = Topics("region.raw")
    assert (topics.readings, topics.findings, topics.rejected) == (
        "region.readings", "region.findings", "region.rejected")
    assert (topics.worker_group, topics.alerts_group) == ("region-worker", "region-alerts")
    assert Topics("plain").readings == "plain.readings"


def test_a_readings_record_gives_back_the_messages() -> None:
    first = Normalised(readings=(reading("p-1", 78.5), reading("p-1", 79.0, 1)), key="msg-1")
    second = Normalised(readings=(reading("p-2", 64.0),), key=None)
    back = open_readings_record(readings_record([("dev-p-1", first), ("dev-p-2", second)]))
    assert back == [("dev-p-1", first), ("dev-p-2", second)]


def test_a_patient_always_lands_in_the_same_bucket() -> None:
    assert bucket("p-1", 12) == bucket("p-1", 12)
    assert {bucket(f"p-{i}", 12) for i in range(500)} == {f"b{i}".encode() for i in range(12)}


def test_findings_records_split_by_bucket_and_merge_back() -> None:
    evaluation = Evaluation(
        findings=[finding("p-1", "k1"), finding("p-2", "k2")],
        clears=[("p-1", Clear("threshold:spo2", AT))],
        received={"k1": AT, "k2": AT + timedelta(seconds=1), "k3": AT},
    )
    parts = split_by_bucket(evaluation, 1000)
    one, two = bucket("p-1", 1000), bucket("p-2", 1000)
    assert set(parts) == {one, two}
    assert parts[one].clears == [("p-1", Clear("threshold:spo2", AT))]
    assert parts[two].received == {"k2": AT + timedelta(seconds=1)}
    merged = open_findings_records(findings_record(p) for p in parts.values())
    assert sorted(merged.findings, key=lambda f: f.patient_id) == evaluation.findings
    assert merged.clears == evaluation.clears
    assert merged.received == {"k1": AT, "k2": AT + timedelta(seconds=1)}


def test_a_dead_letter_keeps_reason_and_bytes() -> None:
    import base64
    import json

    record = json.loads(dead_letter_record(Rejection(
        reason=RejectReason.NOT_JSON, detail="not JSON", topic="hemmon/v1/devices/d/readings",
        raw=b"\xff{", received_at=AT)))
    assert record["reason"] == "not_json"
    assert base64.b64decode(record["payload"]) == b"\xff{"
