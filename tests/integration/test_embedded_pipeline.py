"""The embedded runner end to end on a real Mosquitto and a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from hemmon.alerts.access import Principal
from hemmon.settings import MqttAddress

from .harness import Device, Running, running_service, wait_until


def native(*measurements: tuple[str, Any, str], message_id: str | None = None,
           measured_at: datetime | None = None) -> dict[str, Any]:
    return {
        "schema": "hemmon.reading/1",
        "message_id": message_id or uuid.uuid4().hex,
        "measured_at": (measured_at or datetime.now(UTC)).isoformat(),
        "measurements": [{"type": t, "value": v, "unit": u} for t, v, u in measurements],
    }


def stored(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def running(roster_db: str, mqtt: MqttAddress) -> Iterator[Running]:
    with running_service(roster_db, mqtt) as service:
        yield service


def test_a_message_published_twice_is_stored_once(
    running: Running, device: Device, roster_db: str
) -> None:
    message = native(("heart_rate", 71, "/min"), ("spo2", 96, "%"), message_id="twice-1")
    device.publish(message)
    device.publish(message)
    assert device.next_feedback()["status"] == "green"
    assert device.next_feedback()["status"] == "green"
    rows = stored(roster_db, "SELECT type, value FROM readings ORDER BY type")
    assert rows == [("heart_rate", 71.0), ("spo2", 96.0)]
    assert running.metric("hemmon_readings_duplicate_total") >= 2


def test_out_of_range_opens_one_alert_and_a_second_updates_it(
    running: Running, device: Device
) -> None:
    device.publish(native(("spo2", 87, "%")))
    assert device.next_feedback()["status"] == "red"
    device.publish(native(("spo2", 86, "%")))
    assert device.next_feedback()["status"] == "red"

    alerts = running.get("/api/v1/alerts").json()["alerts"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["patient_id"] == "p-0001"
    assert alert["rule"] == "threshold:spo2"
    assert alert["level"] == "red"
    assert alert["status"] == "open"
    assert alert["occurrences"] == 2
    assert alert["last_value"] == 86.0
    assert alert["route"] in ("fast_vardkontakt", "mobile_team")
    assert alert["explanation"] == "Syremättnad 86 %, under röd gräns 88 %"

    detail = running.get(f"/api/v1/alerts/{alert['id']}").json()
    assert [e["action"] for e in detail["history"]] == ["opened", "readings"]
    assert detail["history"][1]["text"].startswith("1 nytt värde, senaste 8")
    assert sorted(r["value"] for r in detail["readings"]) == [86.0, 87.0]


@pytest.mark.parametrize(
    ("topic_device", "payload", "reason"),
    [
        ("dev-0001", b'{"schema": "hemmon.reading/1", "message_id": ', "not_json"),
        ("dev-unknown", None, "unknown_device"),
    ],
)
def test_whole_message_rejections_are_kept_and_counted(
    running: Running, mqtt: MqttAddress, roster_db: str, topic_device: str,
    payload: bytes | None, reason: str,
) -> None:
    before = running.metric("hemmon_rejections_total", reason=reason)
    sender = Device(mqtt, topic_device)
    try:
        sender.publish(payload if payload is not None else native(("heart_rate", 70, "/min")))
        assert sender.next_feedback()["status"] == "rejected"
    finally:
        sender.close()
    rows = stored(roster_db, "SELECT reason, topic, length(raw) FROM rejections")
    assert [(r[0], r[1]) for r in rows] == [
        (reason, f"hemmon/v1/devices/{topic_device}/readings")
    ]
    assert rows[0][2] > 0
    assert running.metric("hemmon_rejections_total", reason=reason) == before + 1
    listed = running.get("/api/v1/rejections").json()["rejections"]
    assert [r["reason"] for r in listed] == [reason]


def test_bad_measurements_are_kept_while_good_siblings_are_stored(
    running: Running, device: Device, roster_db: str
) -> None:
    before_impossible = running.metric("hemmon_rejections_total", reason="implausible_value")
    before_future = running.metric("hemmon_rejections_total", reason="future_time")
    device.publish(native(("heart_rate", 64, "/min"), ("spo2", 12, "%"), message_id="mixed"))
    assert device.next_feedback()["status"] == "green"
    device.publish(native(("heart_rate", 66, "/min"), message_id="ahead",
                          measured_at=datetime.now(UTC) + timedelta(minutes=30)))
    assert device.next_feedback()["status"] == "rejected"

    assert stored(roster_db, "SELECT type, value, message_key FROM readings") == [
        ("heart_rate", 64.0, "mixed")
    ]
    reasons = stored(roster_db, "SELECT reason, message_key FROM rejections ORDER BY id")
    assert reasons == [("implausible_value", "mixed"), ("future_time", "ahead")]
    assert running.metric("hemmon_rejections_total",
                          reason="implausible_value") == before_impossible + 1
    assert running.metric("hemmon_rejections_total", reason="future_time") == before_future + 1


def test_a_pound_reading_is_stored_in_kilograms(
    running: Running, device: Device, roster_db: str
) -> None:
    device.publish(native(("body_weight", 185, "[lb_av]")))
    assert device.next_feedback()["status"] == "green"
    [(value, unit_type)] = stored(roster_db, "SELECT value, type FROM readings")
    assert unit_type == "body_weight"
    assert value == pytest.approx(83.91458845)
    readings = running.get("/api/v1/patients/p-0001/readings", type="body_weight").json()
    assert readings["readings"][0]["value"] == pytest.approx(83.91458845)


def test_feedback_is_green_in_range_and_red_for_red(running: Running, device: Device) -> None:
    device.publish(native(("blood_pressure_systolic", 135, "mm[Hg]")))
    green = device.next_feedback()
    assert green["status"] == "green"
    assert "inom dina gränser" in green["text"]
    device.publish(native(("blood_pressure_systolic", 190, "mm[Hg]"), message_id="high"))
    red = device.next_feedback()
    assert red == {"message_id": "high", "status": "red", "text": red["text"]}
    assert "112" in red["text"]


def test_the_api_refuses_a_missing_or_forged_token(running: Running) -> None:
    missing = running.http.get("/api/v1/alerts")
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    forged = running.http.get("/api/v1/alerts", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    assert running.http.get("/healthz").status_code == 200
    assert running.http.get("/readyz").json()["status"] == "ready"


def test_a_nurse_sees_her_own_unit_only(running: Running, mqtt: MqttAddress) -> None:
    other = Device(mqtt, "dev-0002")
    try:
        # p-0002's template waits for a re-measurement; the second red confirms the first
        other.publish(native(("spo2", 80, "%"), measured_at=datetime.now(UTC)
                             - timedelta(minutes=2)))
        assert other.next_feedback()["status"] == "yellow"
        other.publish(native(("spo2", 81, "%")))
        assert other.next_feedback()["status"] == "red"
    finally:
        other.close()
    anna = running.token(Principal(user="nurse-anna", role="nurse", unit_id="hc-stugun"))
    karin = running.token(Principal(user="nurse-karin", role="nurse",
                                    unit_id="hc-hammarstrand"))
    assert running.get("/api/v1/alerts", token=anna).json()["alerts"] == []
    seen_by_karin = running.get("/api/v1/alerts", token=karin).json()["alerts"]
    assert [(a["patient_id"], a["rule"]) for a in seen_by_karin] == [("p-0002", "threshold:spo2")]
    assert running.get("/api/v1/patients/p-0002/readings", token=anna).status_code == 403
    assert running.get("/api/v1/patients/p-0002/readings", token=karin).status_code == 200


def test_acknowledge_and_resolve_then_a_new_bad_value_reopens(
    running: Running, device: Device
) -> None:
    device.publish(native(("spo2", 90, "%")))
    assert device.next_feedback()["status"] == "yellow"
    [alert] = running.get("/api/v1/alerts").json()["alerts"]
    assert alert["level"] == "yellow"
    assert alert["route"] == "fast_vardkontakt"

    ack = running.post(f"/api/v1/alerts/{alert['id']}/acknowledge", {"note": "ringer"})
    assert ack.status_code == 200
    assert ack.json()["status"] == "acknowledged"
    again = running.post(f"/api/v1/alerts/{alert['id']}/acknowledge", {})
    assert again.status_code == 409
    bad_outcome = running.post(f"/api/v1/alerts/{alert['id']}/resolve", {"outcome": "maybe"})
    assert bad_outcome.status_code == 422
    done = running.post(f"/api/v1/alerts/{alert['id']}/resolve",
                        {"outcome": "advice_given", "note": "råd om syrgas"})
    assert done.json()["status"] == "resolved"
    assert running.post(f"/api/v1/alerts/{alert['id']}/resolve",
                        {"outcome": "no_action"}).status_code == 409

    device.publish(native(("spo2", 89, "%")))
    assert device.next_feedback()["status"] == "yellow"
    [reopened] = running.get("/api/v1/alerts").json()["alerts"]
    assert reopened["id"] != alert["id"]
    history = running.get(f"/api/v1/alerts/{alert['id']}").json()["history"]
    assert [e["action"] for e in history] == ["opened", "acknowledge", "resolve"]
    assert history[2]["actor"] == "test-admin"


def test_messages_sent_while_the_service_is_down_arrive_after_a_restart(
    roster_db: str, mqtt: MqttAddress
) -> None:
    device = Device(mqtt, "dev-0001")
    try:
        with running_service(roster_db, mqtt) as first:
            client_id = first.service.config.client_id
        # same client id: the broker keeps the persistent session and queues for it
        device.publish(native(("heart_rate", 75, "/min"), message_id="while-down"))
        with running_service(roster_db, mqtt, client_id=client_id):
            wait_until(lambda: stored(roster_db, "SELECT 1 FROM readings"),
                       what="the queued reading to be stored")
    finally:
        device.close()
    assert stored(roster_db, "SELECT message_key FROM readings") == [("while-down",)]


def test_a_patients_trend_by_day(running: Running, device: Device) -> None:
    now = datetime.now(UTC)
    for day, value in enumerate([95, 94, 93]):
        device.publish(native(("spo2", value, "%"), measured_at=now - timedelta(days=2 - day)))
        device.next_feedback()
    answer = running.get("/api/v1/patients/p-0001/trend", type="spo2", bucket="day").json()
    assert "points" in answer, answer
    assert [round(p["mean"]) for p in answer["points"]] == [95, 94, 93]
    assert running.get("/api/v1/patients/p-0001/trend", type="spo2",
                       bucket="week").status_code == 422
