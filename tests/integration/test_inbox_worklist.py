"""The worklist over HTTP on a running service: names under PDL, notes, assignment, "Mina",
the history at a glance, and no name anywhere outside the inbox."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hemmon.alerts.access import Principal
from hemmon.roster import RosterError, RosterFile, load_roster, read_roster
from hemmon.settings import MqttAddress

from ..conftest import ROSTER
from .harness import Clock, Device, Running, running_service
from .test_embedded_pipeline import native

NAME = "Tora Testsson"
PNR = "19440813-9089"
PNR_DIGITS = PNR.replace("-", "")
ANNA = Principal(user="nurse-anna", role="nurse", unit_id="hc-stugun")
EVA = Principal(user="nurse-eva", role="nurse", unit_id="hc-stugun")


def reveals(text: str) -> bool:
    """Whether a text shows p-0001's name or personnummer, in any of its usual forms."""
    return any(form in text for form in (NAME, PNR_DIGITS[:8], PNR[2:], PNR_DIGITS[2:]))


KARIN = Principal(user="nurse-karin", role="nurse", unit_id="hc-hammarstrand")


def named_roster() -> dict[str, Any]:
    """The test roster with p-0001's identity and a colleague of Anna's."""
    roster = copy.deepcopy(ROSTER)
    roster["clinicians"].append({"id": "nurse-eva", "name": "Eva Lund", "unit": "hc-stugun"})
    roster["patients"][0].update(name=NAME, personnummer=PNR_DIGITS)
    return roster


def load_named_roster(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        load_roster(conn, RosterFile.model_validate(named_roster()), actor="test",
                    reason="test", now=datetime.now(UTC))
    return database_url


@pytest.fixture
def named_db(database_url: str) -> str:
    return load_named_roster(database_url)


@pytest.fixture
def running(named_db: str, mqtt: MqttAddress) -> Iterator[Running]:
    # a red alert goes to the fast vårdkontakt, not the mobile team, at any hour of the run
    with running_service(named_db, mqtt, clock=Clock().in_office_hours()) as service:
        yield service


def red_alert(running: Running, mqtt: MqttAddress, readings: int = 1) -> tuple[int, list[Any]]:
    """p-0001 reports low SpO2 `readings` times; the alert and the feedback it got."""
    device = Device(mqtt, "dev-0001")
    feedback = []
    try:
        start = running.service.config.clock() - timedelta(minutes=readings)
        for i in range(readings):
            device.publish(native(("spo2", 86 - i % 3, "%"),
                                  measured_at=start + timedelta(minutes=i)))
            feedback.append(device.next_feedback())
    finally:
        device.close()
    [alert] = [a for a in running.get("/api/v1/alerts").json()["alerts"]
               if a["category"] == "clinical"]
    return int(alert["id"]), feedback


def test_a_nurse_of_the_unit_sees_the_name_notes_and_hands_over(
    running: Running, mqtt: MqttAddress, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alert_id, feedback = red_alert(running, mqtt, readings=30)
    anna, eva, karin = (running.token(p) for p in (ANNA, EVA, KARIN))

    [listed] = running.get("/api/v1/alerts", anna).json()["alerts"]
    assert listed["patient_name"] == NAME
    assert listed["personnummer"] == PNR
    assert listed["patient_display"] == f"{NAME}, {PNR}"
    assert listed["waiting"].startswith("väntat ")

    card = running.get("/api/v1/patients/p-0001", anna).json()
    assert (card["patient_name"], card["personnummer"]) == (NAME, PNR)
    assert card["unit_name"] == "Stugun hälsocentral"
    assert card["fast_vardkontakt_name"] == "Anna Berg"
    assert {c["id"] for c in card["colleagues"]} == {"nurse-anna", "nurse-eva"}

    detail = running.get(f"/api/v1/alerts/{alert_id}", anna).json()
    actions = [h["action"] for h in detail["history"]]
    assert actions == ["opened", "readings"], actions
    assert detail["history"][1]["count"] == 29
    assert detail["history"][1]["text"].startswith("29 nya värden, senaste 8")

    assert running.post(f"/api/v1/alerts/{alert_id}/notes", {"text": "Ringt, mår bra"},
                        anna).status_code == 200
    refused = running.post(f"/api/v1/alerts/{alert_id}/assign", {"assignee": "nurse-karin"},
                           anna)
    assert refused.status_code == 409
    assert "hör inte till" in refused.json()["detail"]
    handed = running.post(f"/api/v1/alerts/{alert_id}/assign", {"assignee": "nurse-eva"}, anna)
    assert handed.status_code == 200, handed.text
    body = handed.json()
    assert [h["action"] for h in body["history"]][-2:] == ["note", "assigned"]
    assert body["notes"][0]["text"] == "Ringt, mår bra"
    assert body["assignee"] == "nurse-eva"

    assert [a["id"] for a in running.get("/api/v1/alerts", eva, assignee="me").json()[
        "alerts"]] == [alert_id]
    assert running.get("/api/v1/alerts", anna, assignee="me").json()["alerts"] == []

    # another unit: 403, and her answers carry no name or personnummer
    answers = [running.get("/api/v1/patients/p-0001", karin),
               running.get("/api/v1/patients/p-0001/readings", karin),
               running.get(f"/api/v1/alerts/{alert_id}", karin),
               running.get("/api/v1/alerts", karin),
               running.post(f"/api/v1/alerts/{alert_id}/notes", {"text": "x"}, karin)]
    assert [a.status_code for a in answers] == [403, 403, 404, 200, 404]
    for answer in answers:
        assert not reveals(answer.text)
    # an administrator runs the system and sees the pseudonym only
    admin_view = running.get("/api/v1/alerts").text + running.get("/api/v1/patients/p-0001").text
    assert not reveals(admin_view)

    log = running.get("/api/v1/access-log", patient="p-0001").json()["entries"]
    views = [(e["user_id"], e["detail"]) for e in log if e["action"] == "view_identity"]
    assert ("nurse-anna", "list_alerts") in views
    assert ("nurse-anna", "patient card") in views
    assert ("nurse-anna", f"alert {alert_id}") in views
    assert ("nurse-eva", "list_alerts") in views
    assert not [e for e in log if e["user_id"] in ("nurse-karin", "test-admin")
                and e["action"] == "view_identity"]
    assert ("nurse-karin", False) in {(e["user_id"], e["allowed"]) for e in log}

    # the name and personnummer never leave the inbox
    outside = [str(f) for f in feedback] + [running.http.get("/metrics").text] + [
        r.getMessage() for r in caplog.records]
    for text in outside:
        assert not reveals(text)

    told = running.get("/api/v1/patients/p-0001/feedback", anna).json()["feedback"]
    assert len(told) == 30
    assert {t["status"] for t in told} == {"red"}


def test_the_mobile_team_sees_the_name_only_while_it_holds_an_alert(
    running: Running, mqtt: MqttAddress
) -> None:
    alert_id, _ = red_alert(running, mqtt)
    mint = running.token(Principal(user="mint-jour", role="mobile_team", team_id="mint"))
    assert running.get("/api/v1/patients/p-0001", mint).json()["patient_name"] is None
    anna = running.token(ANNA)
    assert running.post(f"/api/v1/alerts/{alert_id}/assign", {"assignee": "mobile_team"},
                        anna).status_code == 200
    [mine] = running.get("/api/v1/alerts", mint, assignee="me").json()["alerts"]
    assert mine["patient_name"] == NAME
    running.post(f"/api/v1/alerts/{alert_id}/resolve", {"outcome": "no_action"}, anna)
    assert running.get("/api/v1/patients/p-0001", mint).json()["patient_name"] is None


@pytest.mark.parametrize(("number", "why"), [
    ("19440813-9088", "check digit"), ("19440231-9089", "date"),
    ("194408139089", "the same as patient p-0001's")])
def test_a_bad_personnummer_stops_the_roster_naming_the_patient(
    tmp_path: Path, number: str, why: str
) -> None:
    import yaml

    roster = named_roster()
    roster["patients"][1]["personnummer"] = number
    path = tmp_path / "roster.yaml"
    path.write_text(yaml.safe_dump(roster, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RosterError, match=f"patient p-0002: personnummer: .*{why}") as caught:
        read_roster(path)
    assert number not in str(caught.value)
    assert PNR not in str(caught.value)


def test_identity_lives_in_one_table_and_a_reload_changes_nothing(named_db: str) -> None:
    with psycopg.connect(named_db) as conn:
        again = load_roster(conn, RosterFile.model_validate(named_roster()), actor="test",
                            reason="test", now=datetime.now(UTC))
        assert again.changed_rows == 0
        holders = conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name IN ('name', 'personnummer') AND table_name LIKE 'patient%%'"
        ).fetchall()
        assert {r[0] for r in holders} == {"patient_identity"}
        assert conn.execute("SELECT personnummer FROM patient_identity").fetchall() == [(PNR,)]
        roster = named_roster()
        del roster["patients"][0]["name"], roster["patients"][0]["personnummer"]
        gone = load_roster(conn, RosterFile.model_validate(roster), actor="test",
                           reason="test", now=datetime.now(UTC))
        assert gone.changed_rows == 1
        assert conn.execute("SELECT count(*) FROM patient_identity").fetchall() == [(0,)]
