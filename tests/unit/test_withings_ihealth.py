"""Withings and iHealth responses shaped as their API documentation shows them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hemmon.ingest.model import Device, MeasurementType, Normalised, RejectReason, SourceFormat
from hemmon.ingest.normalise import normalise

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
M = MeasurementType


def run(fmt: str, body: Any) -> Normalised:
    device = Device(id="dev-1", patient_id="p-1", format=SourceFormat(fmt))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return normalise(raw, topic="hemmon/v1/devices/dev-1/readings", devices={"dev-1": device},
                     received_at=NOW)


def withings(*groups: dict[str, Any]) -> dict[str, Any]:
    """A `measure?action=getmeas` response (Withings API reference)."""
    return {"status": 0, "body": {"updatetime": 1594159644, "timezone": "Europe/Stockholm",
                                  "measuregrps": list(groups), "more": 0, "offset": 0}}


def group(grpid: int, measures: list[dict[str, int]], *, date: int = 1594245600,
          category: int = 1, attrib: int = 0) -> dict[str, Any]:
    return {"grpid": grpid, "attrib": attrib, "date": date, "created": date + 100,
            "modified": date + 200, "category": category, "deviceid": "892359876fd8805a",
            "measures": measures, "comment": None, "timezone": "Europe/Stockholm"}


def test_withings_scale_weight_is_value_times_ten_to_the_unit() -> None:
    result = run("withings", withings(group(12, [
        {"value": 65750, "type": 1, "unit": -3, "algo": 3425, "fm": 1},
        {"value": 2147, "type": 6, "unit": -2},   # fat ratio: not a reading here
    ])))
    [weight] = result.readings
    assert (weight.type, weight.value, weight.unit) == (M.BODY_WEIGHT, pytest.approx(65.75), "kg")
    assert weight.measured_at == datetime(2020, 7, 8, 22, 0, tzinfo=UTC)
    assert weight.key == "12"
    assert weight.manual is False
    assert result.skipped == 1
    assert result.rejections == ()


def test_withings_cuff_oximeter_and_thermometer() -> None:
    result = run("withings", withings(
        group(20, [{"value": 142, "type": 10, "unit": 0}, {"value": 91, "type": 9, "unit": 0},
                   {"value": 72, "type": 11, "unit": 0}]),
        group(21, [{"value": 97, "type": 54, "unit": 0}]),
        group(22, [{"value": 3740, "type": 71, "unit": -2}], attrib=2),
    ))
    assert [(r.type, r.value, r.key) for r in result.readings] == [
        (M.BLOOD_PRESSURE_SYSTOLIC, 142.0, "20"), (M.BLOOD_PRESSURE_DIASTOLIC, 91.0, "20"),
        (M.HEART_RATE, 72.0, "20"), (M.SPO2, 97.0, "21"),
        (M.BODY_TEMPERATURE, pytest.approx(37.4), "22")]
    assert result.readings[-1].manual is True


def test_withings_goals_are_never_readings() -> None:
    result = run("withings", withings(group(30, [{"value": 70000, "type": 1, "unit": -3}],
                                            category=2)))
    assert result.readings == ()
    assert result.rejections == ()
    assert result.skipped == 1


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        ({"status": 401, "error": "invalid_token"}, RejectReason.SCHEMA_INVALID, "body"),
        ({"status": 401, "body": {}}, RejectReason.NOT_A_READING, "status 401"),
        (withings(group(1, [{"value": "65", "type": 1, "unit": -3}])),
         RejectReason.SCHEMA_INVALID, "body.measuregrps[0].measures[0]"),
        (withings(group(1, [{"value": 65, "type": 1, "unit": 400}])),
         RejectReason.SCHEMA_INVALID, "body.measuregrps[0].measures[0]"),
        (withings(group(1, [{"value": 65, "type": 1, "unit": 3}])),
         RejectReason.IMPLAUSIBLE_VALUE, "body.measuregrps[0].measures[0]"),
        (withings(dict(group(1, []), date="yesterday")),
         RejectReason.SCHEMA_INVALID, "body.measuregrps[0].date"),
        (withings(dict(group(1, []), category=7)),
         RejectReason.SCHEMA_INVALID, "body.measuregrps[0].category"),
    ],
)
def test_withings_problems(body: dict[str, Any], reason: RejectReason, field: str) -> None:
    [rejection] = run("withings", body).rejections
    assert rejection.reason is reason
    assert rejection.detail.startswith(field)


def test_withings_a_bad_group_does_not_sink_the_good_one() -> None:
    result = run("withings", withings(group(1, [{"value": 9, "type": 54, "unit": 0}]),
                                      group(2, [{"value": 96, "type": 54, "unit": 0}])))
    assert [r.key for r in result.readings] == ["2"]
    assert [r.reason for r in result.rejections] == [RejectReason.IMPLAUSIBLE_VALUE]


def bp_record(**change: Any) -> dict[str, Any]:
    """A BPDataList record as in the iHealth API documentation."""
    record = {"BPL": 5, "BPUnit": 0, "DataID": "ab9a8a1c9f8c4c1f", "DataSource": "FromDevice",
              "HP": 122, "HR": 78, "IsArr": -1, "LP": 78, "LastChangeTime": 1605027612,
              "Lat": -1, "Lon": -1, "MDate": 1605056400, "Note": "", "TimeZone": "-0800"}
    record.update(change)
    return record


def ihealth(**lists: list[dict[str, Any]]) -> dict[str, Any]:
    return {**lists, "CurrentRecordCount": 1, "NextPageUrl": "", "PageLength": 50,
            "PrevPageUrl": "", "RecordCount": 1}


def test_ihealth_mdate_is_local_wall_clock_at_the_time_zone() -> None:
    result = run("ihealth", ihealth(BPDataList=[bp_record()]))
    assert [(r.type, r.value) for r in result.readings] == [
        (M.BLOOD_PRESSURE_SYSTOLIC, 122.0), (M.BLOOD_PRESSURE_DIASTOLIC, 78.0),
        (M.HEART_RATE, 78.0)]
    at = result.readings[0].measured_at
    # 1605056400 is 2020-11-11 01:00 written as UTC: the patient's clock said 01:00 at -08:00
    assert at == datetime(2020, 11, 11, 1, 0, tzinfo=timezone(timedelta(hours=-8)))
    assert at.astimezone(UTC) == datetime(2020, 11, 11, 9, 0, tzinfo=UTC)
    assert result.readings[0].key == "ab9a8a1c9f8c4c1f"


@pytest.mark.parametrize(
    ("zone", "offset"),
    [("+0100", timedelta(hours=1)), (200, timedelta(hours=2)), ("-0330", timedelta(hours=-3.5)),
     (0, timedelta(0))],
)
def test_ihealth_time_zone_forms(zone: Any, offset: timedelta) -> None:
    [reading, *_] = run("ihealth", ihealth(BPDataList=[bp_record(TimeZone=zone)])).readings
    assert reading.measured_at.utcoffset() == offset


def test_ihealth_units_manual_entries_and_other_lists() -> None:
    result = run("ihealth", ihealth(
        BPDataList=[bp_record(BPUnit=1, HP=16.0, LP=10.0, HR=0)],
        BODataList=[{"BO": 94, "HR": 81, "DataID": "bo-1", "MDate": 1605056400,
                     "TimeZone": "+0100", "DataSource": "FromDevice"}],
        WeightDataList=[{"WeightValue": 180.0, "WeightUnit": 1, "DataID": "w-1",
                         "MDate": 1605056400, "TimeZone": "+0100", "DataSource": "Manual"}],
        BGDataList=[{"BG": 126, "BGUnit": 0, "DataID": "bg-1", "MDate": 1605056400,
                     "TimeZone": "+0100"}],
    ))
    values = {(r.type, r.key): r for r in result.readings}
    assert values[(M.BLOOD_PRESSURE_SYSTOLIC, "ab9a8a1c9f8c4c1f")].value == pytest.approx(
        16 * 7.50062)
    assert (M.HEART_RATE, "ab9a8a1c9f8c4c1f") not in values  # HR 0: not measured
    assert values[(M.SPO2, "bo-1")].value == 94
    assert values[(M.HEART_RATE, "bo-1")].value == 81
    assert values[(M.BODY_WEIGHT, "w-1")].value == pytest.approx(180 * 0.45359237)
    assert values[(M.BODY_WEIGHT, "w-1")].manual is True
    assert values[(M.BLOOD_GLUCOSE, "bg-1")].value == pytest.approx(126 / 18.016)
    assert result.rejections == ()


def test_ihealth_empty_lists_are_not_errors() -> None:
    result = run("ihealth", ihealth(BPDataList=[], BODataList=[]))
    assert (result.readings, result.rejections) == ((), ())


@pytest.mark.parametrize(
    ("record", "reason", "field"),
    [
        (bp_record(HP=None), RejectReason.SCHEMA_INVALID, "BPDataList[1].HP: missing"),
        (bp_record(BPUnit=7), RejectReason.UNKNOWN_UNIT, "BPDataList[1].BPUnit"),
        (bp_record(TimeZone="Europe/Stockholm"), RejectReason.SCHEMA_INVALID,
         "BPDataList[1].TimeZone"),
        (bp_record(MDate="today"), RejectReason.SCHEMA_INVALID, "BPDataList[1].MDate"),
        (bp_record(DataID=""), RejectReason.SCHEMA_INVALID, "BPDataList[1].DataID"),
        (bp_record(HP=400), RejectReason.IMPLAUSIBLE_VALUE, "BPDataList[1].HP"),
    ],
)
def test_ihealth_a_bad_record_is_rejected_and_its_sibling_kept(
    record: dict[str, Any], reason: RejectReason, field: str
) -> None:
    good = bp_record(DataID="good-1")
    result = run("ihealth", ihealth(BPDataList=[good, record]))
    assert [r.key for r in result.readings][:3] == ["good-1"] * 3
    [rejection] = result.rejections
    assert rejection.reason is reason
    assert rejection.detail.startswith(field)


def test_ihealth_without_any_list_is_rejected() -> None:
    [rejection] = run("ihealth", {"Error": "4001"}).rejections
    assert rejection.reason is RejectReason.SCHEMA_INVALID
