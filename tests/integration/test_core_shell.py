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
        for hours, kg in ((47, 80.0), (23, 81.2)):
            device.publish(native(("body_weight", kg, "kg"),
                                  measured_at=now - timedelta(hours=hours)))
            assert device.next_feedback()["status"] == "green"
        # first sight, then memory (the counter is this test process's, over both runs)
        assert running.metric("hemmon_series_loads_total") == 1
    # a new process: nothing in memory, the database is the truth
    with running_service(roster_db, mqtt) as running:
        device.publish(native(("body_weight", 82.5, "kg"), measured_at=now))
        assert device.next_feedback()["status"] != "green"
        alerts = running.get("/api/v1/alerts").json()["alerts"]
        assert [a["rule"] for a in alerts if a["category"] == "clinical"] == [
            "rise:body_weight"]
        assert running.metric("hemmon_series_loads_total") == 2  # read again after restart


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
