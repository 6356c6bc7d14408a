"""The distributed runner (bridge + faust workers + alert service) on real Mosquitto, Kafka
and PostgreSQL: the same 20,000 readings from 200 patients as the embedded runner, the same
readings and alerts, whatever crashes on the way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from hemmon.db import migrate
from hemmon.roster import RosterFile, load_roster
from hemmon.settings import MqttAddress
from hemmon.simulator import roster_for

from ..services import Kafka, PostgresServer, kafka, mosquitto, postgres_server
from .cluster import (
    PATIENTS,
    READINGS,
    SCENARIO,
    Cluster,
    Outcome,
    outcome,
    publish,
    wait_for,
)
from .harness import Device, running_service, wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "distributed"


def new_database(server: PostgresServer, *, template: str | None = "hemmon_template") -> str:
    name = f"d_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    url = server.url(name)
    if template is None:
        migrate(url)
    with psycopg.connect(url) as conn:
        load_roster(conn, RosterFile.model_validate(roster_for(PATIENTS)), actor="test",
                    reason="test", now=datetime.now(UTC))
    return url


@pytest.fixture(scope="module")
def mqtt() -> Iterator[MqttAddress]:
    """A broker of this module's own: no retained message or session of another test."""
    with mosquitto() as broker:
        yield MqttAddress("127.0.0.1", broker.port, False, None, None)


@pytest.fixture(scope="module")
def embedded(pg: PostgresServer, mqtt: MqttAddress) -> Outcome:
    """The reference: the scenario through the embedded runner."""
    address = mqtt
    url = new_database(pg)
    with running_service(url, address, sweep_seconds=3600):
        publish(address)
        wait_until(lambda: outcome(url).readings >= READINGS, timeout=180,
                   what="the embedded runner to store the scenario")
        seen = outcome(url)
        wait_until(lambda: outcome(url) == seen or None, timeout=30, what="quiet")
    result = outcome(url)
    assert result.readings == READINGS
    assert result.distinct_readings == READINGS
    assert result.rejections == 0, result.rejected
    # the scenario is worth comparing: deteriorating patients give alerts of each kind
    rules = {rule for _, rule, _, _ in result.alerts}
    assert len(result.alerts) >= 20, result.brief()
    assert any("body_weight" in rule for rule in rules), rules
    return result


@pytest.fixture
def cluster(roster_url: str, mqtt: MqttAddress, kafka_broker: Kafka,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    running = Cluster(roster_url, mqtt, kafka_broker.bootstrap,
                      ARTIFACTS / request.node.name)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def roster_url(pg: PostgresServer) -> str:
    return new_database(pg)


def assert_same(seen: Outcome, expected: Outcome, cluster: Cluster) -> None:
    logs = "\n".join(f"--- {name}\n{cluster.tail(name)}" for name in
                     ("bridge", "worker-0", "worker-1", "alerts"))
    assert seen.readings == READINGS, f"{seen.brief()}\n{logs}"
    assert seen.distinct_readings == READINGS
    assert seen.rejections == 0, seen.rejected
    assert seen.open_twice == 0
    assert seen.findings == expected.findings, (
        f"missing {sorted(expected.findings - seen.findings)[:5]},"
        f" extra {sorted(seen.findings - expected.findings)[:5]}\n{logs}")
    assert seen.alerts == expected.alerts, (
        f"missing {sorted(expected.alerts - seen.alerts)[:5]},"
        f" extra {sorted(seen.alerts - expected.alerts)[:5]}\n{logs}")


def test_same_readings_and_alerts_as_the_embedded_runner(
        cluster: Cluster, mqtt: MqttAddress, embedded: Outcome) -> None:
    cluster.start_all()
    publish(mqtt)
    seen = wait_for(cluster.database_url, embedded)
    assert_same(seen, embedded, cluster)
    worker = cluster.roles["worker-0"]
    assert worker.metric("hemmon_kafka_records_total", role="worker", stage="raw") > 0
    assert worker.metric("hemmon_readings_accepted_total") == READINGS
    wait_until(lambda: worker.metric("hemmon_kafka_consumer_lag", role="worker",
                                     stage="raw") == 0 or None,
               timeout=30, what="the worker's lag to reach 0")
    alerts = cluster.roles["alerts"]
    assert alerts.metric("hemmon_kafka_records_total", role="alerts", stage="findings") > 0
    assert alerts.metric("hemmon_alerts_opened_total") == len(embedded.alerts)
    bridge = cluster.roles["bridge"]
    assert bridge.metric("hemmon_bridge_messages_total") >= 5000
    assert bridge.metric("hemmon_mqtt_connected") == 1
    assert bridge.metric("hemmon_bridge_queue") == 0


def test_kill_9_of_worker_bridge_and_alerts_mid_stream_changes_nothing(
        cluster: Cluster, mqtt: MqttAddress, embedded: Outcome) -> None:
    cluster.start_all()

    def crash(name: str, command: str) -> None:
        cluster.kill(name)
        cluster.start(name, command)

    publish(mqtt, rate=400, at={
        0.2: lambda: crash("worker-0", "worker"),
        0.45: lambda: crash("bridge", "bridge"),
        0.7: lambda: crash("alerts", "alerts"),
    })
    assert_same(wait_for(cluster.database_url, embedded), embedded, cluster)


def test_kafka_and_postgres_restarted_mid_stream_changes_nothing(
        mqtt: MqttAddress, embedded: Outcome, tmp_path: Path) -> None:
    # a Kafka and a PostgreSQL of its own, so that restarting them hurts no other test;
    # PostgreSQL with synchronous commit, as in production: the fast test setting loses
    # the last commits in a crash, and the readings with them
    with kafka() as own_kafka, postgres_server(durable=True) as own_pg:
        url = new_database(own_pg, template=None)
        cluster = Cluster(url, mqtt, own_kafka.bootstrap,
                          ARTIFACTS / "kafka_and_postgres_restarted")
        try:
            cluster.start_all()
            publish(mqtt, rate=400, at={
                0.3: lambda: own_kafka.restart(down_seconds=3),
                0.65: lambda: own_pg.restart(down_seconds=3),
            })
            assert_same(wait_for(url, embedded, timeout=180), embedded, cluster)
        finally:
            cluster.stop_all()


def test_two_workers_share_the_partitions_and_one_takes_over(
        cluster: Cluster, mqtt: MqttAddress, embedded: Outcome) -> None:
    cluster.start_all(workers=2)
    first, second = cluster.roles["worker-0"], cluster.roles["worker-1"]

    def both_busy() -> bool:
        return all(w.metric("hemmon_kafka_records_total", role="worker", stage="raw") > 0
                   for w in (first, second))

    def stop_one() -> None:
        wait_until(both_busy, timeout=30, what="both workers to take records")
        cluster.stop("worker-1")

    # the weight of deteriorating heart-failure patients rises over the whole stream, so
    # their weight-rise alerts depend on rule state from before the hand-over
    publish(mqtt, rate=400, at={0.4: stop_one})
    seen = wait_for(cluster.database_url, embedded)
    assert_same(seen, embedded, cluster)
    assert any("body_weight" in rule for _, rule, _, _ in seen.alerts)


def test_bad_input_is_kept_in_the_table_and_the_dead_letter_topic(
        cluster: Cluster, mqtt: MqttAddress, kafka_broker: Kafka) -> None:
    import asyncio
    import base64
    import json

    from aiokafka import AIOKafkaConsumer

    cluster.start_all()
    device, stranger = Device(mqtt, PATIENTS[0].device_id), Device(mqtt, "dist-d-unknown")
    try:
        device.publish(b"{not json")
        assert device.next_feedback(timeout=60)["status"] == "rejected"
        stranger.publish(b'{"schema": "hemmon.reading/1"}')
        wait_until(lambda: outcome(cluster.database_url).rejections == 2, timeout=60,
                   what="both rejections in the table")
    finally:
        device.close()
        stranger.close()

    async def dead_letters() -> list[dict[str, str]]:
        consumer = AIOKafkaConsumer(cluster.env["HEMMON_KAFKA_TOPIC"].replace(".raw",
                                                                             ".rejected"),
                                    bootstrap_servers=kafka_broker.bootstrap,
                                    group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=5000)
        finally:
            await consumer.stop()
        return [json.loads(r.value) for records in batches.values() for r in records]

    letters = asyncio.run(dead_letters())
    assert {letter["reason"] for letter in letters} == {"not_json", "unknown_device"}
    assert b"{not json" in {base64.b64decode(letter["payload"]) for letter in letters}


def test_a_message_the_database_refuses_is_kept_and_its_batch_goes_through(
        cluster: Cluster, mqtt: MqttAddress) -> None:
    import json

    with psycopg.connect(cluster.database_url) as conn:  # an operator's constraint, say
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                     " BEGIN IF NEW.message_key = 'poison' THEN"
                     " RAISE EXCEPTION 'refused by the database'; END IF; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON readings"
                     " FOR EACH ROW EXECUTE FUNCTION refuse()")
    cluster.start_all()
    device = Device(mqtt, PATIENTS[0].device_id)
    try:
        for key in ("good-1", "poison", "good-2"):  # one batch, most likely
            device.publish({"schema": "hemmon.reading/1", "message_id": key,
                            "measured_at": datetime.now(UTC).isoformat(),
                            "measurements": [{"type": "heart_rate", "value": 70,
                                              "unit": "/min"}]})
        wait_until(lambda: outcome(cluster.database_url).readings == 2, timeout=60,
                   what="the two good readings")
        wait_until(lambda: outcome(cluster.database_url).rejections == 1, timeout=30,
                   what="the refused message kept")
    finally:
        device.close()
    with psycopg.connect(cluster.database_url) as conn:
        [(detail, raw)] = conn.execute("SELECT detail, raw FROM rejections").fetchall()
    assert "could not be processed" in detail
    assert json.loads(bytes(raw))["message_id"] == "poison"


# -- `hemmon run` with pipeline processes: the same readings and alerts -------------------

@pytest.fixture
def embedded_run(roster_url: str, mqtt: MqttAddress,
                 request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """`hemmon run` as an operator runs it, with two pipeline processes (no Kafka)."""
    running = Cluster(roster_url, mqtt, "127.0.0.1:1", ARTIFACTS / request.node.name)
    running.env.update({"HEMMON_PIPELINES": "2",
                        "HEMMON_MQTT_CLIENT_ID": f"run-{uuid.uuid4().hex[:6]}"})
    try:
        yield running
    finally:
        running.stop_all()


def pipeline_processes(role_pid: int) -> list[int]:
    """The pipeline processes `hemmon run` spawned (not multiprocessing's helper)."""
    children = Path(f"/proc/{role_pid}/task/{role_pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_hemmon_run_with_pipeline_processes_loses_and_doubles_nothing_across_kill_9(
        embedded_run: Cluster, mqtt: MqttAddress, embedded: Outcome) -> None:
    import os
    import signal

    run = embedded_run.start("run", "run")
    assert len(pipeline_processes(run.process.pid)) == 2

    def kill_a_pipeline() -> None:
        os.kill(pipeline_processes(embedded_run.roles["run"].process.pid)[0], signal.SIGKILL)

    def kill_the_receiver() -> None:
        embedded_run.kill("run")
        embedded_run.start("run", "run")

    publish(mqtt, rate=400, at={0.3: kill_a_pipeline, 0.6: kill_the_receiver})
    assert_same(wait_for(embedded_run.database_url, embedded), embedded, embedded_run)
    run = embedded_run.roles["run"]
    assert len(pipeline_processes(run.process.pid)) == 2
    # every process's metrics, summed (prometheus_client's multiprocess mode)
    assert run.metric("hemmon_readings_evaluated_total") > 0
    assert run.metric("hemmon_mqtt_connected") == 1


def test_the_backtest_gives_the_embedded_runners_alerts(embedded: Outcome) -> None:
    """One recorded stream, live through MQTT and PostgreSQL and replayed by `hemmon
    backtest` with no services: the same clinical alerts (patient, rule, level, count)."""
    from hemmon.backtest import run_backtest

    recorded = [{"topic": topic, "payload": body.decode()} for topic, body in SCENARIO]
    records = run_backtest(roster_for(PATIENTS), recorded)
    replayed = frozenset((r["patient_id"], r["rule"], r["level"], r["occurrences"])
                         for r in records if r["kind"] == "alert"
                         and r["category"] == "clinical")
    assert replayed == embedded.alerts
