"""The batch core in the embedded runner: series held in memory and read again after a
restart, and a bug in a rule kind told apart from bad input (real MQTT and PostgreSQL)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from hemmon.rules import engine
from hemmon.settings import MqttAddress

from .harness import Device, running_service, wait_until
from .test_embedded_pipeline import native, stored


def test_a_rising_weight_still_alerts_on_day_three_after_a_restart(
        roster_db: str, mqtt: MqttAddress, device: Device) -> None:
    now = datetime.now(UTC)
    with running_service(roster_db, mqtt) as running:
        # the counter is this test process's, over every service it ran
        loads = running.metric("hemmon_series_loads_total")
        for hours, kg in ((47, 80.0), (23, 80.8)):  # under the 1.0 kg yellow step
            device.publish(native(("body_weight", kg, "kg"),
                                  measured_at=now - timedelta(hours=hours)))
            assert device.next_feedback()["status"] == "green"
        assert running.metric("hemmon_series_loads_total") == loads + 1  # first sight only
    # a new process: nothing in memory, the database is the truth
    with running_service(roster_db, mqtt) as running:
        # the red rise waits for a re-weighing, which confirms it
        device.publish(native(("body_weight", 82.5, "kg"), measured_at=now))
        assert device.next_feedback()["status"] == "yellow"
        device.publish(native(("body_weight", 82.4, "kg"),
                              measured_at=now + timedelta(seconds=30)))
        assert device.next_feedback()["status"] == "red"
        alerts = running.get("/api/v1/alerts").json()["alerts"]
        assert [a["rule"] for a in alerts if a["category"] == "clinical"] == [
            "rise:body_weight"]
        assert running.metric("hemmon_series_loads_total") == loads + 2  # again after restart


def test_a_bug_in_a_rule_kind_is_an_internal_error_kept_for_replay_not_bad_input(
        roster_db: str, mqtt: MqttAddress, device: Device, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("injected bug")

    monkeypatch.setattr(engine._Evaluator, "threshold", broken)
    with running_service(roster_db, mqtt) as running, caplog.at_level(logging.ERROR):
        device.publish(native(("spo2", 85, "%"), message_id="hit-by-a-bug"))
        wait_until(lambda: stored(roster_db, "SELECT 1 FROM rejections"), what="the rejection")
        assert running.metric("hemmon_internal_errors_total", stage="rules") == 1
        assert running.metric("hemmon_rejections_total", reason="internal_error") == 1
    [(reason, raw)] = stored(roster_db, "SELECT reason, raw FROM rejections")
    assert reason == "internal_error"
    assert b"hit-by-a-bug" in bytes(raw)
    assert stored(roster_db, "SELECT count(*) FROM readings") == [(0,)]  # replayable
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None
    assert "injected bug" in str(record.exc_info[1])
    assert "p-0001" not in record.getMessage()
    assert "85" not in record.getMessage()


def test_a_backlog_synced_a_week_late_gives_the_same_alerts_live_and_in_a_backtest(
        roster_db: str, mqtt: MqttAddress, device: Device) -> None:
    from hemmon.backtest import run_backtest

    from ..conftest import ROSTER

    now = datetime.now(UTC)
    week_ago = now - timedelta(days=7)
    stream = [native(("spo2", 84, "%"), ("body_weight", 80.0 + day, "kg"),
                     measured_at=week_ago + timedelta(days=day)) for day in range(4)]
    stream.append(native(("spo2", 85, "%"), measured_at=now))  # today's: that one alerts
    recorded = []
    with running_service(roster_db, mqtt) as running:
        for body in stream:
            device.publish(body)
            device.next_feedback()
            recorded.append({"topic": "hemmon/v1/devices/dev-0001/readings",
                             "payload": body, "received_at": datetime.now(UTC).isoformat()})
        live = {(a["rule"], a["level"], a["occurrences"])
                for a in running.get("/api/v1/alerts").json()["alerts"]
                if a["category"] == "clinical"}
    replayed = {(r["rule"], r["level"], r["occurrences"])
                for r in run_backtest(ROSTER, recorded)
                if r["kind"] == "alert" and r["category"] == "clinical"
                and r["patient_id"] == "p-0001"}
    assert live == replayed == {("threshold:spo2", "red", 1)}
    assert stored(roster_db, "SELECT count(*) FROM readings") == [(9,)]


def test_a_rule_preview_answers_from_stored_readings_and_only_to_the_patients_unit(
        roster_db: str, mqtt: MqttAddress, device: Device) -> None:
    from hemmon.alerts.access import Principal

    now = datetime.now(UTC)
    with running_service(roster_db, mqtt) as running:
        for day, spo2 in enumerate((90, 96, 91, 96, 89, 96)):
            device.publish(native(("spo2", spo2, "%"),
                                  measured_at=now - timedelta(days=6 - day, hours=1)))
            device.next_feedback()
        anna = running.token(Principal("nurse-anna", "nurse", "hc-stugun"))
        karin = running.token(Principal("nurse-karin", "nurse", "hc-hammarstrand"))
        lower = {"rules": [{"kind": "threshold", "measurement": "spo2", "yellow_below": 88,
                            "red_below": 85}]}
        answer = running.post("/api/v1/patients/p-0001/rules/preview", lower, token=anna)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        # today's limits (yellow below 92): three alerts, each opened again after its
        # automatic resolution a day later; the proposed ones: none
        assert (body["current"]["alerts"], body["proposed"]["alerts"]) == (3, 0)
        assert body["text"] == "Med dessa gränser: 0 larm senaste 30 dygnen, i dag 3"
        refused = running.post("/api/v1/patients/p-0001/rules/preview", lower, token=karin)
        assert refused.status_code == 403
        log = running.get("/api/v1/access-log", patient="p-0001").json()["entries"]
        assert {(e["user_id"], e["action"], e["allowed"]) for e in log} >= {
            ("nurse-anna", "preview_rules", True), ("nurse-karin", "preview_rules", False)}


@pytest.mark.parametrize(("again", "alerted"), [(None, True), (95, False)],
                         ids=["nobody-re-measures", "warm-hands"])
def test_a_held_red_alerts_when_its_wait_is_over_unless_a_normal_value_contradicts_it(
        roster_db: str, mqtt: MqttAddress, again: float | None, alerted: bool) -> None:
    from .harness import Clock

    clock = Clock()
    other = Device(mqtt, "dev-0002")  # p-0002: COPD template, SpO2 waits 12 minutes
    try:
        with running_service(roster_db, mqtt, clock=clock, sweep_seconds=0.1) as running:
            # two held values of one patient (SpO2 and pulse wait for a re-measurement)
            other.publish(native(("spo2", 84, "%"), ("heart_rate", 112, "/min"),
                                 measured_at=clock()))
            told = other.next_feedback()
            assert (told["status"], told["text"][:28]) == ("yellow", "Värdet ser avvikande ut. Sit")
            if again is not None:
                other.publish(native(("spo2", again, "%"), ("heart_rate", 80, "/min"),
                                     measured_at=clock() + timedelta(minutes=3)))
                assert other.next_feedback()["status"] == "green"
            clock.offset = timedelta(minutes=13)  # the wait is over; a sweep every 0.1 s
            if alerted:
                wait_until(lambda: len(running.get("/api/v1/alerts").json()["alerts"]) == 2,
                           what="the confirmed alerts")
            else:
                import time

                time.sleep(1.0)  # ten sweeps
            alerts = [(a["rule"], a["level"]) for a in
                      running.get("/api/v1/alerts").json()["alerts"]]
    finally:
        other.close()
    assert sorted(alerts) == ([("threshold:heart_rate", "yellow"), ("threshold:spo2", "red")]
                              if alerted else [])
