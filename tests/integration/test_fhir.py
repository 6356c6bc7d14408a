"""The FHIR search routes and the journal push, on real MQTT, PostgreSQL and HTTP; what
they give, and one of every resource kind the export emits, validated by HAPI FHIR."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from hemmon.alerts.access import Principal
from hemmon.alerts.fhir_export import FhirSystems
from hemmon.alerts.notify import WebhookNotifier
from hemmon.notifier import Journal
from hemmon.service import Service, ServiceConfig
from hemmon.settings import MqttAddress

from ..fhir_samples import every_kind
from ..fhir_validator import validate
from ..services import free_port
from .harness import (
    SECRET,
    Clock,
    Device,
    Running,
    answers,
    issue,
    running_service,
    wait_until,
)
from .test_embedded_pipeline import native

JOURNAL_SECRET = "journal-secret-0123456789-abcdefghijklm"
DECADE = timedelta(days=3650)
ANNA = Principal(user="nurse-anna", role="nurse", unit_id="hc-stugun")
KARIN = Principal(user="nurse-karin", role="nurse", unit_id="hc-hammarstrand")


def access_log(running: Running, patient: str) -> list[dict[str, Any]]:
    entries = running.get("/api/v1/access-log", patient=patient).json()["entries"]
    return [e for e in entries if e["action"].startswith("fhir_")]


def test_fhir_search_gives_valid_bundles_to_the_unit_and_403_to_another_unit_all_logged(
    roster_db: str, mqtt: MqttAddress, device: Device
) -> None:
    import psycopg

    with psycopg.connect(roster_db) as conn:  # as `roster load` keeps a personnummer
        conn.execute("INSERT INTO patient_identity (patient_id, name, personnummer)"
                     " VALUES ('p-0001', 'Tora Eriksson', '19121212-1212')")
    with running_service(roster_db, mqtt) as running:
        anna, karin = running.token(ANNA), running.token(KARIN)
        device.publish(native(("blood_pressure_systolic", 185, "mm[Hg]"),
                              ("blood_pressure_diastolic", 96, "mm[Hg]"), ("spo2", 85, "%")))
        assert device.next_feedback()["status"] == "red"
        spo2 = next(a for a in running.get("/api/v1/alerts", anna).json()["alerts"]
                    if a["rule"].endswith("spo2"))
        assert running.post(f"/api/v1/alerts/{spo2['id']}/acknowledge", {"note": "ringer"},
                            anna).status_code == 200
        assert running.post(f"/api/v1/alerts/{spo2['id']}/resolve",
                            {"note": "syrgas justerad", "outcome": "patient_contacted"},
                            anna).status_code == 200

        found = running.get("/fhir/r4/Observation", anna, patient="p-0001",
                            date="ge2020-01-01", code="http://loinc.org|85354-9")
        assert found.status_code == 200, found.text
        assert found.headers["content-type"].startswith("application/fhir+json")
        observations = found.json()
        [panel] = [e["resource"] for e in observations["entry"]]
        assert [c["valueQuantity"]["value"] for c in panel["component"]] == [185, 96]
        assert panel["subject"]["identifier"] == {
            "system": "http://electronichealth.se/identifier/personnummer",
            "value": "191212121212"}
        everything = running.get("/fhir/r4/Observation", anna, patient="Patient/p-0001").json()
        assert everything["total"] == 2  # the panel and the SpO2
        later = running.get("/fhir/r4/Observation", anna, patient="p-0001",
                            date=f"gt{(datetime.now(UTC) + timedelta(hours=1)):%Y-%m-%d}")
        assert later.json()["total"] == 0

        flags = running.get("/fhir/r4/Flag", anna, patient="p-0001", status="inactive").json()
        [flag] = [e["resource"] for e in flags["entry"] if e["search"]["mode"] == "match"]
        told = [e["resource"] for e in flags["entry"] if e["search"]["mode"] == "include"]
        assert flag["status"] == "inactive"
        assert flag["identifier"][0]["value"] == str(spo2["id"])
        assert [c["category"][0]["coding"][0]["code"] for c in told] == [
            "opened", "acknowledge", "resolve"]
        assert "patienten kontaktad" in told[-1]["payload"][0]["contentString"]
        active = running.get("/fhir/r4/Flag", anna, patient="p-0001", status="active").json()
        assert active["total"] == 1  # the blood pressure's

        refused = [running.get("/fhir/r4/Observation", karin, patient="p-0001"),
                   running.get("/fhir/r4/Flag", karin, patient="p-0001")]
        assert [r.status_code for r in refused] == [403, 403]
        assert running.get("/fhir/r4/Flag", anna, patient="p-9999").status_code == 404
        assert running.get("/fhir/r4/Observation", anna, patient="p-0001",
                           date="ge-yesterday").status_code == 422
        log = access_log(running, "p-0001")
    assert sorted((e["user_id"], e["action"], e["allowed"]) for e in log) == sorted(
        [("nurse-anna", "fhir_observations", True)] * 3
        + [("nurse-anna", "fhir_flags", True)] * 2
        + [("nurse-karin", "fhir_observations", False), ("nurse-karin", "fhir_flags", False)])
    # one validator run for what the routes gave and for every kind the export emits
    samples = every_kind()
    assert {r["resourceType"] for r in samples.values()} == {
        "Observation", "Flag", "Communication", "Bundle"}
    result = validate({"api-observations": observations, "api-everything": everything,
                       "api-flags": flags, **samples})
    # without a terminology server LOINC and UCUM can only be warned about: errors count
    assert result.errors == [], "\n".join(result.errors)
    assert result.output.splitlines()[-1] == "0 errors"


class FakeJournal(ThreadingHTTPServer):
    """A region's FHIR journal: the first call fails, the second is stored but its answer
    is lost (500), then it answers. It applies a transaction as a FHIR server would:
    conditional update of a Flag and conditional create (`ifNoneExist`) of a Communication
    by identifier."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _JournalHandler)
        self.calls = 0
        self.flags: dict[str, dict[str, Any]] = {}
        self.created: dict[str, dict[str, list[dict[str, Any]]]] = {}
        """resource type -> identifier -> the resources created with it"""
        self.problems: list[str] = []


class _JournalHandler(BaseHTTPRequestHandler):
    server: FakeJournal

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        journal = self.server
        journal.calls += 1
        expected = "sha256=" + hmac.new(
            JOURNAL_SECRET.encode(), self.headers["X-Hemmon-Timestamp"].encode() + b"." + body,
            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers["X-Hemmon-Signature"]):
            journal.problems.append("bad signature")
        if self.headers["Content-Type"] != "application/fhir+json":
            journal.problems.append(f"content type {self.headers['Content-Type']}")
        if journal.calls == 1:
            self.send_response(503)
            self.end_headers()
            return
        bundle = json.loads(body)
        for entry in bundle["entry"]:
            request, resource = entry["request"], entry["resource"]
            if request["method"] == "PUT":
                journal.flags[request["url"].split("identifier=")[1]] = resource
            else:
                key = request["ifNoneExist"].split("identifier=")[1]
                same = journal.created.setdefault(request["url"], {}).setdefault(key, [])
                if not same:  # else it exists: nothing is created
                    same.append(resource)
        self.send_response(500 if journal.calls == 2 else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def journal() -> Iterator[FakeJournal]:
    server = FakeJournal()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@contextmanager
def service_with_journal(database_url: str, address: MqttAddress, clock: Clock,
                         url: str) -> Iterator[httpx.Client]:
    port = free_port()
    connected = Journal(WebhookNotifier(url, JOURNAL_SECRET, content_type="application/fhir+json"),
                        FhirSystems("https://fhir.regionjh.se/sid/hemmon"),
                        settle=timedelta(0))
    service = Service(ServiceConfig(
        database_url=database_url, mqtt=address, secret_key=SECRET, http_port=port,
        batch_wait_ms=5, client_id=f"hemmon-journal-{uuid.uuid4().hex[:6]}", clock=clock,
        journal=connected))
    service.start()
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                        headers={"Authorization": f"Bearer {issue(database_url, ANNA, DECADE)}"})
    wait_until(lambda: answers(http), what="the inbox to answer")
    try:
        yield http
    finally:
        http.close()
        service.stop()
        thread.join(10)


def test_each_alert_event_reaches_the_journal_once_in_effect_through_two_failures(
    roster_db: str, mqtt: MqttAddress, device: Device, journal: FakeJournal
) -> None:
    clock = Clock().in_office_hours()  # no page: the journal's Bundles are all there is
    url = f"http://127.0.0.1:{journal.server_address[1]}/fhir"
    with service_with_journal(roster_db, mqtt, clock, url) as http:
        device.publish(native(("spo2", 85, "%"), measured_at=clock()))
        assert device.next_feedback()["status"] == "red"
        [alert] = [a for a in http.get("/api/v1/alerts").json()["alerts"]
                   if a["category"] == "clinical"]
        assert http.post(f"/api/v1/alerts/{alert['id']}/acknowledge",
                         json={"note": "ringer"}).status_code == 200
        assert http.post(f"/api/v1/alerts/{alert['id']}/resolve",
                         json={"note": "mår bättre", "outcome": "advice_given"}
                         ).status_code == 200

        def arrived() -> bool:
            clock.offset += timedelta(seconds=30)  # let the retry delays pass
            return len(journal.created.get("Communication", {})) == 3 and all(
                f["status"] == "inactive" for f in journal.flags.values())

        wait_until(arrived, timeout=40, what="the alert's history in the journal")
        admin = issue(roster_db, Principal(user="admin", role="admin"), DECADE)
        wait_until(lambda: all(n["delivered_at"] for n in http.get(
            "/api/v1/notifications", headers={"Authorization": "Bearer " + admin}
        ).json()["notifications"]),
            what="the outbox to record the deliveries")
    assert journal.problems == []
    assert journal.calls == 5  # refused, stored with its answer lost, again, then two more
    system = "https://fhir.regionjh.se/sid/hemmon/alert"
    [(identifier, flag)] = journal.flags.items()
    assert identifier == f"{system}|{alert['id']}"
    assert flag["subject"]["identifier"] == {
        "system": "https://fhir.regionjh.se/sid/hemmon/patient", "value": "p-0001"}
    assert all(len(same) == 1 for kind in journal.created.values() for same in kind.values())
    [[observation]] = journal.created["Observation"].values()
    assert observation["valueQuantity"]["value"] == 85
    told = [c[0] for c in journal.created["Communication"].values()]
    assert told[0]["payload"][1]["contentReference"]["reference"].startswith("urn:uuid:")
    texts = [c["payload"][0]["contentString"] for c in told]
    assert [t.split(".")[0] for t in texts] == ["Larm öppnat", "Larm kvitterat",
                                                 "Larm avslutat"]
    assert "utfall: råd givet. mår bättre" in texts[-1]
