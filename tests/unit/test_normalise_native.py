"""normalise() on native v1 messages: readings, every rejection reason, extras."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hemmon.ingest.model import Device, MeasurementType, RejectReason, SourceFormat
from hemmon.ingest.normalise import MAX_PAYLOAD_BYTES, normalise

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
DEVICES = {
    "dev-1": Device(id="dev-1", patient_id="p-1"),
    "dev-fhir": Device(id="dev-fhir", patient_id="p-2", format=SourceFormat.FHIR),
}
TOPIC = "hemmon/v1/devices/dev-1/readings"


def message(*measurements: dict[str, Any], **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "schema": "hemmon.reading/1",
        "message_id": "m-1",
        "measured_at": "2026-11-22T08:15:00+01:00",
        "manual": False,
        "measurements": list(measurements),
    }
    body.update(fields)
    return json.dumps(body).encode()


def m(kind: str, value: Any, unit: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "value": value}
    if unit is not None:
        found["unit"] = unit
    return found


def run(raw: bytes, topic: str = TOPIC) -> Any:
    return normalise(raw, topic=topic, devices=DEVICES, received_at=NOW)


def test_a_cuff_message_gives_three_readings_in_canonical_units() -> None:
    result = run(message(m("blood_pressure_systolic", 142, "mm[Hg]"),
                         m("blood_pressure_diastolic", 91, "mmHg"),
                         m("heart_rate", 72, "bpm")))
    assert result.rejections == ()
    assert [(r.type, r.value, r.unit) for r in result.readings] == [
        (MeasurementType.BLOOD_PRESSURE_SYSTOLIC, 142.0, "mm[Hg]"),
        (MeasurementType.BLOOD_PRESSURE_DIASTOLIC, 91.0, "mm[Hg]"),
        (MeasurementType.HEART_RATE, 72.0, "/min"),
    ]
    first = result.readings[0]
    assert first.patient_id == "p-1"
    assert first.device_id == "dev-1"
    assert first.key == "m-1"
    assert first.measured_at == datetime(2026, 11, 22, 7, 15, tzinfo=UTC)
    assert first.received_at == NOW
    assert first.source_format is SourceFormat.NATIVE
    assert result.key == "m-1"


@pytest.mark.parametrize(
    ("kind", "value", "unit", "expected"),
    [
        ("body_weight", 185, "[lb_av]", 83.91458845),
        ("body_weight", 12, "[stone_av]", 76.20351816),
        ("body_temperature", 100.4, "[degF]", 38.0),
        ("blood_pressure_systolic", 18.0, "kPa", 135.01116),
        ("blood_glucose", 99, "mg/dL", 5.49511545),
        ("body_weight", 78500, "g", 78.5),
    ],
)
def test_units_are_converted(kind: str, value: float, unit: str, expected: float) -> None:
    [reading] = run(message(m(kind, value, unit))).readings
    assert reading.value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json at all", RejectReason.NOT_JSON),
        (b"\xff\xfe\x00garbage", RejectReason.NOT_JSON),
        (b"[1, 2, 3]", RejectReason.SCHEMA_INVALID),
        (message(m("spo2", 95, "%"), schema="hemmon.reading/2"), RejectReason.SCHEMA_INVALID),
        (message(m("spo2", 95, "%"), measured_at="2026-11-22T08:15:00"), RejectReason.NAIVE_TIME),
        (message(m("spo2", 95, "%"), measured_at="yesterday"), RejectReason.SCHEMA_INVALID),
        (message(m("spo2", 95, "%"), message_id=""), RejectReason.SCHEMA_INVALID),
        (message(), RejectReason.SCHEMA_INVALID),
        (message(m("spo2", 12, "%")), RejectReason.IMPLAUSIBLE_VALUE),
        (message(m("heart_rate", 72, "furlongs")), RejectReason.UNKNOWN_UNIT),
        (message(m("heart_rate", 72)), RejectReason.UNKNOWN_UNIT),
        (message(m("mood", 3, "points")), RejectReason.UNKNOWN_TYPE),
        (message(m("heart_rate", "72", "/min")), RejectReason.SCHEMA_INVALID),
        (message(m("heart_rate", True, "/min")), RejectReason.SCHEMA_INVALID),
        (message(m("heart_rate", None, "/min")), RejectReason.SCHEMA_INVALID),
        (message("just a string"), RejectReason.SCHEMA_INVALID),
        (message(m("battery", 140)), RejectReason.SCHEMA_INVALID),
        (message(m("supplemental_oxygen", "yes")), RejectReason.SCHEMA_INVALID),
    ],
)
def test_each_bad_input_is_a_rejection_with_its_reason(raw: bytes, reason: RejectReason) -> None:
    result = run(raw)
    assert result.readings == ()
    assert [r.reason for r in result.rejections] == [reason]
    rejection = result.rejections[0]
    assert rejection.raw == raw
    assert rejection.topic == TOPIC
    assert rejection.received_at == NOW
    assert rejection.detail


def test_the_detail_names_the_field_and_not_the_payload() -> None:
    [rejection] = run(message(m("heart_rate", "seventy", "/min"))).rejections
    assert rejection.detail == "measurements[0]: value must be a number"
    assert "seventy" not in rejection.detail


def test_a_bad_measurement_does_not_sink_its_siblings() -> None:
    result = run(message(m("heart_rate", 64, "/min"), m("spo2", 12, "%"),
                         m("body_weight", 80.2, "kg")))
    assert [r.type for r in result.readings] == [MeasurementType.HEART_RATE,
                                                 MeasurementType.BODY_WEIGHT]
    [rejection] = result.rejections
    assert rejection.reason is RejectReason.IMPLAUSIBLE_VALUE
    assert rejection.detail.startswith("measurements[1]")
    assert rejection.key == "m-1"


def test_a_second_measurement_of_the_same_type_is_rejected() -> None:
    result = run(message(m("heart_rate", 64, "/min"), m("heart_rate", 66, "/min")))
    assert [r.value for r in result.readings] == [64.0]
    assert [r.reason for r in result.rejections] == [RejectReason.DUPLICATE_MEASUREMENT]


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [(timedelta(minutes=5), True), (timedelta(minutes=5, seconds=1), False),
     (timedelta(days=-30), True)],
)
def test_time_in_the_future_is_rejected_past_five_minutes(ahead: timedelta,
                                                          accepted: bool) -> None:
    at = (NOW + ahead).isoformat()
    result = run(message(m("spo2", 95, "%"), measured_at=at))
    assert bool(result.readings) is accepted
    if not accepted:
        assert result.rejections[0].reason is RejectReason.FUTURE_TIME


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("hemmon/v1/devices/dev-1/status", RejectReason.BAD_TOPIC),
        ("other/v1/devices/dev-1/readings", RejectReason.BAD_TOPIC),
        ("hemmon/v1/devices/dev-9/readings", RejectReason.UNKNOWN_DEVICE),
        ("hemmon/v1/devices/dev-1/readings/csv", RejectReason.UNKNOWN_FORMAT),
        ("hemmon/v1/devices/dev-1/readings/fhir", RejectReason.SCHEMA_INVALID),
        ("hemmon/v1/devices/dev-fhir/readings", RejectReason.SCHEMA_INVALID),
    ],
)
def test_topic_device_and_format_problems(topic: str, reason: RejectReason) -> None:
    result = run(message(m("spo2", 95, "%")), topic=topic)
    assert [r.reason for r in result.rejections] == [reason]


def test_the_topic_suffix_native_overrides_the_device_format() -> None:
    result = run(message(m("spo2", 95, "%")), topic="hemmon/v1/devices/dev-fhir/readings/native")
    assert [r.patient_id for r in result.readings] == ["p-2"]


def test_a_payload_over_the_limit_is_rejected_unread() -> None:
    raw = message(m("spo2", 95, "%"), padding="x" * MAX_PAYLOAD_BYTES)
    assert [r.reason for r in run(raw).rejections] == [RejectReason.PAYLOAD_TOO_LARGE]


def test_extras_are_kept_apart_from_readings() -> None:
    result = run(message(m("spo2", 89, "%"), m("supplemental_oxygen", True),
                         m("battery", 41), manual=True))
    assert [r.type for r in result.readings] == [MeasurementType.SPO2]
    assert result.readings[0].manual is True
    assert result.extras.supplemental_oxygen is True
    assert result.extras.battery == 41.0
