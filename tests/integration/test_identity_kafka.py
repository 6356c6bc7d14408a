"""The distributed runner handles a named patient: her name and personnummer appear in no
Kafka record, no MQTT feedback, no role's /metrics and no role's log (at DEBUG)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from hemmon.roster import RosterFile, load_roster
from hemmon.settings import MqttAddress
from hemmon.simulator import VirtualPatient, roster_for

from ..services import Kafka, PostgresServer
from .cluster import Cluster
from .harness import Device, wait_until
from .test_embedded_pipeline import native

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "identity"
PATIENT = VirtualPatient("pid-0001", "pid-d-0001", "copd")
NAME, PNR = "Ingrid Testdotter", "19420119-9124"
FORMS = (NAME, "Testdotter", "19420119", "420119-9124", "4201199124")


@pytest.fixture
def cluster(pg: PostgresServer, mqtt: MqttAddress, kafka_broker: Kafka,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    name = f"i_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE hemmon_template")
    roster = roster_for([PATIENT])
    roster["patients"][0].update(name=NAME, personnummer=PNR.replace("-", ""))
    with psycopg.connect(pg.url(name)) as conn:
        load_roster(conn, RosterFile.model_validate(roster), actor="test", reason="test",
                    now=datetime.now(UTC))
    running = Cluster(pg.url(name), mqtt, kafka_broker.bootstrap,
                      ARTIFACTS / request.node.name)
    running.env["HEMMON_LOG_LEVEL"] = "DEBUG"
    try:
        yield running
    finally:
        running.stop_all()


def records(bootstrap: str, topics: list[str]) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=5000)
        finally:
            await consumer.stop()
        return [bytes(r.key or b"") + b" " + bytes(r.value or b"")
                for found in batches.values() for r in found]

    return asyncio.run(read())


def test_no_name_or_personnummer_leaves_the_inbox(cluster: Cluster, mqtt: MqttAddress,
                                                  kafka_broker: Kafka) -> None:
    cluster.start_all()
    device = Device(mqtt, PATIENT.device_id)
    try:
        # measured 13 minutes ago: the template's wait for a re-measurement is over
        device.publish(native(("spo2", 84, "%"), ("heart_rate", 112, "/min"),
                              measured_at=datetime.now(UTC) - timedelta(minutes=13)))
        feedback = device.next_feedback(timeout=60)
    finally:
        device.close()
    assert feedback["status"] == "red"

    def alert_stored() -> bool:
        with psycopg.connect(cluster.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM alerts").fetchone()
        return bool(row and row[0])

    wait_until(alert_stored, timeout=60, what="the alert service to open the alert")
    stem = cluster.env["HEMMON_KAFKA_TOPIC"].removesuffix(".raw")
    seen = records(kafka_broker.bootstrap, [f"{stem}.{t}" for t in
                                            ("raw", "readings", "findings")])
    assert len(seen) >= 3, seen  # the reading went through every stage
    assert any(b"pid-0001" in r for r in seen)  # the pseudonym travels, as it should

    from hemmon.alerts.access import Principal

    from .harness import issue

    token = issue(cluster.database_url,
                  Principal(user="hc-sim-nurse", role="nurse", unit_id="hc-sim"),
                  timedelta(hours=1))
    card = httpx.get(f"http://127.0.0.1:{cluster.roles['alerts'].port}/api/v1/patients/pid-0001",
                     headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
    assert card["patient_name"] == NAME  # the inbox does know her

    texts = [r.decode(errors="replace") for r in seen] + [str(feedback)]
    texts += [httpx.get(f"http://127.0.0.1:{role.port}/metrics", timeout=5).text
              for role in cluster.roles.values()]
    texts += [role.log.read_text(errors="replace") for role in cluster.roles.values()]
    assert any("DEBUG" in text for text in texts)  # the logs were as talkative as they get
    for text in texts:
        for form in FORMS:
            assert form not in text
