"""Debian's Prometheus scrapes a running hemmon (the embedded runner on real PostgreSQL and
Mosquitto): the series exist with their labels, the alert rules reach `firing`, and every
PromQL expression of the Grafana dashboards returns data.

Prometheus gets a copy of deploy/prometheus/alerts.yml generated here with short windows
and `for:` (and without the daytime condition of the stalled-ingest rule), so that a test
of a minute or two can make them fire; the thresholds are the real ones.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hemmon.alerts.access import Principal
from hemmon.settings import MqttAddress

from ..integration.harness import Clock, Device, Running, running_service, wait_until
from ..integration.test_embedded_pipeline import native
from ..services import free_port, require

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WINDOW = "20s"
DAYTIME = " and on() hour() >= 5 and on() hour() <= 20"
# Only the distributed roles (bridge, worker, alerts over Kafka) have these series.
DISTRIBUTED_ONLY = {"sum by (role, stage) (hemmon_kafka_consumer_lag)",
                    "sum by (role, stage) (rate(hemmon_kafka_records_total[5m]))"}


def short_rules() -> dict[str, Any]:
    """The real rule file with windows of WINDOW and `for:` of 2 s."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = re.sub(r"\[\d+[mh]\]", f"[{WINDOW}]", rule["expr"])
            if rule["alert"] == "HemmonIngestStalled":
                assert DAYTIME in expr, "the stalled-ingest rule changed: update this test"
                expr = expr.replace(DAYTIME, "")  # the test may run at night
            rule["expr"], rule["for"] = expr, "2s"
    return rules


class Prometheus:
    def __init__(self, folder: Path, targets: dict[str, str]) -> None:
        """`targets`: address -> role label."""
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "alerts.yml").write_text(yaml.safe_dump(short_rules()), encoding="utf-8")
        (folder / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "hemmon", "static_configs": [
                {"targets": [address], "labels": {"role": role}}
                for address, role in targets.items()]}],
        }), encoding="utf-8")
        self.process = subprocess.Popen(
            [require("prometheus", "./scripts/setup installs Debian's prometheus"),
             f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"))
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def api(self, path: str, **params: str) -> Any:
        try:
            answer = self.http.get(f"/api/v1/{path}", params=params)
        except httpx.TransportError:
            return None
        if answer.status_code == 503:  # still starting
            return None
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"]) if data else []

    def firing(self) -> set[str]:
        data = self.api("alerts")
        return {a["labels"]["alertname"] for a in (data or {"alerts": []})["alerts"]
                if a["state"] == "firing"}

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(20)


@pytest.fixture
def prometheus_and_hemmon(roster_db: str, mqtt: MqttAddress,
                          tmp_path: Path) -> Iterator[tuple[Prometheus, Running, Clock]]:
    clock = Clock().in_office_hours()  # the red alert escalates after 30 minutes
    with running_service(roster_db, mqtt, clock=clock, sweep_seconds=1) as running:
        port = str(running.http.base_url).rsplit(":", 1)[1].strip("/")
        prometheus = Prometheus(tmp_path, {f"127.0.0.1:{port}": "embedded"})
        try:
            wait_until(lambda: prometheus.query('up{job="hemmon"} == 1'), timeout=60,
                       what="Prometheus to scrape hemmon")
            yield prometheus, running, clock
        finally:
            prometheus.stop()


def fhir_with_a_skipped_part(at: datetime) -> dict[str, Any]:
    now = at.isoformat()
    mdc = "urn:iso:std:iso:11073:10101"
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "id": uuid.uuid4().hex, "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                      "effectiveDateTime": now,
                      "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org",
                                        "code": "/min"}}},
        {"resource": {"resourceType": "Observation", "id": uuid.uuid4().hex, "status": "final",
                      "code": {"coding": [{"system": mdc, "code": "67975"}]},
                      "effectiveDateTime": now, "valueDateTime": now}},
    ]}


@pytest.fixture
def device(mqtt: MqttAddress) -> Iterator[Device]:
    """Patient p-0001's device, dev-0001."""
    d = Device(mqtt, "dev-0001")
    yield d
    d.close()


def test_prometheus_scrapes_hemmon_and_its_alert_rules_fire(
    prometheus_and_hemmon: tuple[Prometheus, Running, Clock], device: Device
) -> None:
    prometheus, running, clock = prometheus_and_hemmon
    anna = running.token(Principal(user="nurse-anna", role="nurse", unit_id="hc-stugun"))
    device.publish(native(("blood_pressure_systolic", 165, "mm[Hg]"),
                          ("blood_pressure_diastolic", 85, "mm[Hg]"), measured_at=clock()))
    assert device.next_feedback()["status"] == "yellow"
    device.publish(fhir_with_a_skipped_part(clock()), fmt="fhir")
    device.next_feedback()
    device.publish(native(("spo2", 85, "%"), measured_at=clock()))
    assert device.next_feedback()["status"] == "red"
    for n in range(4):
        device.publish(f"not json, number {n}".encode())  # different bytes: new rejections
        assert device.next_feedback()["status"] == "rejected"
        if n == 0:  # a counter's first sample is no increase: let Prometheus see it first
            wait_until(lambda: prometheus.query("hemmon_rejections_total"),
                       what="the rejection counter in Prometheus")
    yellow = next(a for a in running.get("/api/v1/alerts", anna).json()["alerts"]
                  if a["level"] == "yellow")
    assert running.post(f"/api/v1/alerts/{yellow['id']}/acknowledge", {}, anna).is_success

    wait_until(lambda: "HemmonRejectionRateSpike" in prometheus.firing(), timeout=30,
               what="the rejection-rate rule to fire")
    clock.offset += timedelta(minutes=31)  # the red SpO2 alert has now waited 31 minutes
    wait_until(lambda: "HemmonRedAlertUnacknowledged" in prometheus.firing(), timeout=30,
               what="the unacknowledged-red rule to fire")
    clock.offset += timedelta(days=2)  # no weight for two mornings: an adherence notice,
    device.publish(native(("heart_rate", 70, "/min"), measured_at=clock()))  # (not silent)
    assert device.next_feedback()["status"] == "green"
    wait_until(lambda: prometheus.query('hemmon_alerts_opened_total{category="adherence"}'),
               what="an adherence notice")
    wait_until(lambda: "HemmonIngestStalled" in prometheus.firing(), timeout=60,
               what="the stalled-ingest rule to fire once messages stop")
    assert "HemmonDown" not in prometheus.firing()

    for selector in ('hemmon_messages_received_total{format="native"}',
                     'hemmon_messages_received_total{format="fhir"}',
                     'hemmon_readings_accepted_total{type="spo2"}',
                     'hemmon_rejections_total{reason="not_json"}',
                     'hemmon_alerts_opened_total{level="red",category="clinical"}',
                     'hemmon_escalations_total{route="mobile_team"}',
                     'hemmon_open_alerts{level="red"}',
                     'hemmon_acknowledge_seconds_count{level="yellow"}',
                     'hemmon_records_skipped_total{format="fhir"}'):
        [*found] = prometheus.query(selector)
        assert found, f"no series {selector}"
        assert {s["metric"]["job"] for s in found} == {"hemmon"}
        assert {s["metric"]["role"] for s in found} == {"embedded"}
    unanswered = [expr for expr in dashboard_exprs() if not prometheus.query(expr)]
    assert sorted(unanswered) == sorted(DISTRIBUTED_ONLY)


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs
