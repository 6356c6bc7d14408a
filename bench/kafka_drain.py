"""Drain benchmark of the Kafka path (bridge + workers + alert service), the same way as
`bench.drain` measures `hemmon run`.

The bridge is started once and stopped, which leaves its session in the shared
subscription group with the broker; the backlog is queued for it (and for a bare paho
session, the ceiling) by `mosquitto_pub`. The workers and the alert service are started
and idle; then the bridge is started and the path is timed from the first message the
bridge received (the smallest received_at) until every reading is stored and evaluated
and the alert service has applied every findings record the workers produced. CPU
seconds per 1,000 readings per role (each a process tree; the bridge less its idle
start-up), PostgreSQL, Mosquitto and Kafka; peak RSS per role. Then the live rate as in
`bench.kafka`.

The backlog goes to the first half of the patients; the live run's red SpO2 comes from
the other half, so that each opens a new alert (its opened_at is the measurement).

    python -m bench.kafka_drain [--quick]        (or bench/run kafka-drain)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import backlog as mq
from bench.drain import backlog_rows, cpu_line, make_backlog, step
from bench.embedded import (
    bench_database,
    copy_rate,
    machine,
    print_table,
    publisher_rate,
    write_results,
)
from bench.kafka import (
    PARTITIONS,
    WORKERS,
    Roles,
    create_topics,
    kafka_ceiling,
    latency,
    machine_busy,
    postmaster,
    stop_on_sigterm,
)
from bench.procs import PeakRss, cpu_seconds
from tests.services import kafka, postgres_server

EVALUATED = "hemmon_readings_evaluated_total"
ALERTS_TAKEN = "hemmon_kafka_records_total"


def topic_end(bootstrap: str, topic: str) -> int:
    """Records in a topic so far (the sum of its partitions' end offsets)."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            described = await admin.describe_topics([topic])
            partitions = [TopicPartition(topic, p["partition"])
                          for t in described for p in t["partitions"]]
            ends = await consumer.end_offsets(partitions)
            return sum(ends.values())
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())


def drain_path(roles: Roles, url: str, bootstrap: str, expected: int, pids: dict[str, int],
               bridge_startup_cpu: float, timeout: float = 900
               ) -> tuple[dict[str, Any], dict[str, PeakRss]]:
    """Start the bridge on its queued backlog; time until stored, evaluated and alerted."""
    findings = roles.env["HEMMON_KAFKA_TOPIC"].removesuffix(".raw") + ".findings"
    with psycopg.connect(url, autocommit=True) as poll:
        own = poll.execute("SELECT pg_backend_pid()").fetchone()
        excluded = {int(own[0])} if own else set()

        def stored() -> int:
            row = poll.execute("SELECT count(*) FROM readings").fetchone()
            return int(row[0]) if row else 0

        role_pids = {name: p.pid for name, (p, _) in roles.processes.items()}
        before = {name: cpu_seconds(pid, excluded) for name, pid in {**pids, **role_pids}.items()}
        busy_before = machine_busy()
        roles.launch("bridge", "bridge")
        roles.wait_ready("bridge", poll=0.05)
        peaks = {name: PeakRss(p.pid) for name, (p, _) in roles.processes.items()}
        deadline = time.monotonic() + timeout
        evaluated, count, last_sample = 0.0, 0, 0.0
        while True:
            if time.monotonic() - last_sample > 0.5:
                for peak in peaks.values():
                    peak.sample()
                last_sample = time.monotonic()
            evaluated = roles.metric(EVALUATED)
            if evaluated >= expected and (count := stored()) >= expected:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"stored {stored()}, evaluated {evaluated:.0f}"
                                   f" of {expected} readings")
            time.sleep(0.2)
        # the workers wait for Kafka to have their findings before they count a reading
        # as evaluated: the findings topic is complete now
        end = topic_end(bootstrap, findings)
        while (taken := roles.metric(ALERTS_TAKEN, role="alerts", stage="findings")) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the alert service took {taken:.0f} of {end} records")
            time.sleep(0.2)
        done = time.time()
        now = {name: cpu_seconds(pid, excluded) for name, pid in {**pids, **role_pids}.items()}
        cpu = {name: now[name] - before[name] for name in before}
        cpu["bridge"] = max(0.0, cpu_seconds(roles.processes["bridge"][0].pid)
                            - bridge_startup_cpu)
        busy_after = machine_busy()
        for peak in peaks.values():
            peak.sample()
        first = poll.execute("SELECT min(received_at) FROM readings").fetchone()
    assert first is not None
    assert first[0] is not None
    seconds = done - first[0].timestamp()
    return {"readings": count, "evaluated": evaluated, "findings_records": end,
            "seconds": seconds, "readings_per_s": count / seconds,
            "machine_busy": (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]),
            "cpu_seconds": cpu,
            "cpu_s_per_1000_readings": {k: 1000 * v / count for k, v in sorted(cpu.items())},
            }, peaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller backlog, a smoke run")
    parser.add_argument("--messages", type=int, help="backlog size (default 30,000)")
    parser.add_argument("--patients", type=int, default=1000, help="patients in the backlog")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    messages = args.messages or (6000 if args.quick else 30_000)
    latency_seconds = 5.0 if args.quick else 20.0
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "machine": machine(),
                               "workers": WORKERS, "partitions": PARTITIONS,
                               "quick": args.quick}
    with postgres_server() as pg, mq.drain_broker() as broker, kafka() as kafka_broker:
        assert kafka_broker.process is not None
        url, patients = bench_database(pg, 2 * args.patients)
        load = make_backlog(patients[:args.patients], messages)
        roles = Roles(url, broker.port, kafka_broker.bootstrap)
        create_topics(kafka_broker.bootstrap, roles.env["HEMMON_KAFKA_TOPIC"], PARTITIONS)
        try:
            step("bridge: start once and stop (its persistent session)")
            roles.start("bridge", "bridge")
            time.sleep(0.5)
            bridge_startup_cpu = cpu_seconds(roles.processes["bridge"][0].pid)
            roles.stop_one("bridge")
            mq.prime_session(broker.port)
            step("queueing the backlog")
            results["backlog"] = {"patients": args.patients, "messages": load.messages,
                                  "readings": load.readings,
                                  "publisher": mq.publish_backlog(broker.port, load.by_topic)}
            step("ceiling: the bare paho drain")
            results["bare_paho"] = mq.bare_drain(broker.port, load.messages)
            step("ceiling: binary COPY")
            results["ceiling_copy_readings_per_s"] = copy_rate(url, load.rows)
            step("ceiling: aiokafka produce -> consume")
            results["ceiling_kafka_records_per_s"] = kafka_ceiling(kafka_broker.bootstrap,
                                                                   load.messages)
            step("starting the alert service and the workers")
            roles.launch("alerts", "alerts")
            for i in range(WORKERS):
                roles.launch(f"worker-{i}", "worker", HEMMON_WORKER_CLIENT_ID=f"bench-w{i}")
            for name in list(roles.processes):
                roles.wait_ready(name)
            pids = {"postgresql": postmaster(pg.port), "mosquitto": broker.process.pid,
                    "kafka": kafka_broker.process.pid}
            step("the Kafka path drains the backlog")
            drained, peaks = drain_path(roles, url, kafka_broker.bootstrap, load.readings,
                                        pids, bridge_startup_cpu,
                                        timeout=180 if args.quick else 900)
            drained["messages_per_s"] = load.messages / drained["seconds"]
            results["kafka_path"] = drained
            red = [p.device_id for p in patients[args.patients:]
                   if p.group in ("heart_failure", "copd")]
            step("the live rate")
            results["latency"] = latency(url, broker.port,
                                         [p.device_id for p in patients[:args.patients]], red,
                                         1000.0, latency_seconds)
            for peak in peaks.values():
                peak.sample()
            results["peak_rss_mib"] = {name: peak.mib for name, peak in sorted(peaks.items())}
        finally:
            roles.stop()
    results["ratio_to_bare_paho"] = (results["kafka_path"]["messages_per_s"]
                                     / results["bare_paho"]["messages_per_s"])
    report(results)
    write_results("kafka-drain-quick" if args.quick else "kafka-drain", results)
    return 0


def report(r: dict[str, Any]) -> None:
    k, lat = r["kafka_path"], r["latency"]
    rows = [
        *backlog_rows(r),
        ("ceiling: aiokafka produce -> consume (acks=all)",
         f"{r['ceiling_kafka_records_per_s']:,.0f} records/s"),
        (f"Kafka path ({r['workers']} workers, {r['partitions']} partitions) drains it",
         f"{k['messages_per_s']:,.0f} messages/s = {k['readings_per_s']:,.0f} readings/s"
         f" ({k['seconds']:.1f} s; stored, evaluated, alerts applied)"),
        ("  ratio Kafka path / bare paho (messages)", f"{r['ratio_to_bare_paho']:.2f}"),
        ("  CPU seconds per 1,000 readings", cpu_line(k["cpu_s_per_1000_readings"])),
        ("  machine CPU busy meanwhile (all processes)",
         f"{k['machine_busy']:.0%} of {r['machine']['cores']} cores"),
        ("  peak RSS per role", ", ".join(f"{name} {mib:.0f} MiB"
                                          for name, mib in r["peak_rss_mib"].items())),
        (f"at {lat['rate_readings_per_s']:,.0f} readings/s: publish -> stored+evaluated,"
         " p50 / p99", f"{lat['stored_p50_ms']:.1f} / {lat['stored_p99_ms']:.1f} ms"),
        ("  publish -> alert opened (its opened_at), p50 / p99",
         f"{lat['alert_p50_ms']:.1f} / {lat['alert_p99_ms']:.1f} ms"
         f" ({lat['alerts_measured']} alerts, {lat['alerts_missing']} missing)"),
        ("  publisher achieved", publisher_rate(lat)),
    ]
    print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
