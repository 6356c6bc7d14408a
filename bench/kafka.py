"""Benchmark of the Kafka path (bridge + two workers + alert service), against raw
ceilings measured in the same run on the same services.

Same load as `bench.embedded`: cuff, oximeter and scale messages from many simulated
devices, one MQTT publish each; a reading is one measurement. Each role runs as its own
`hemmon` process, as an operator runs them. Ceilings: paho publish -> subscribe through the
same Mosquitto (messages/s), binary COPY of the same rows into the same PostgreSQL
(readings/s), and aiokafka produce -> consume through the same Kafka (records/s).

    python -m bench.kafka [--quick]        (or bench/run)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.embedded import (
    _ready,
    bench_database,
    broker_ceiling,
    copy_ceiling,
    count_readings,
    machine,
    message,
    paced,
    peak_rss_mb,
    percentile_ms,
    print_table,
    publish_parallel,
    publisher_rate,
    wait_for,
    write_results,
)
from bench.procs import cpu_seconds
from hemmon.service import free_port
from tests.services import kafka, metric_value, mosquitto, postgres_server

PARTITIONS = 4
WORKERS = 2


def kafka_ceiling(bootstrap: str, count: int) -> float:
    """aiokafka produce (acks=all, idempotent) -> consume of envelope-sized records, /s."""
    topic = f"bench-ceiling-{uuid.uuid4().hex[:6]}"
    body = message(0)[1] * 2  # about the size of an envelope

    async def run() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest")
        await producer.start()
        await consumer.start()
        started = time.perf_counter()
        try:
            sends = [await producer.send(topic, key=str(i % 500).encode(), value=body)
                     for i in range(count)]
            await asyncio.gather(*sends)
            seen = 0
            while seen < count:
                batch = await consumer.getmany(timeout_ms=1000)
                seen += sum(len(records) for records in batch.values())
        finally:
            await producer.stop()
            await consumer.stop()
        return count / (time.perf_counter() - started)

    return asyncio.run(run())


def create_topics(bootstrap: str, raw: str, partitions: int) -> None:
    """Create the path's topics (named from the raw topic's stem, as hemmon names them)
    before any role starts. The roles declare them too, but a role that subscribes while
    another is creating a topic was seen to be left without it until faust's next metadata
    refresh, minutes later ("Ignoring missing topic"), which a benchmark would time."""
    stem = raw.removesuffix(".raw")
    names = [raw, *(f"{stem}.{t}" for t in ("readings", "findings", "rejected"))]

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        finally:
            await admin.close()

    asyncio.run(run())


class Roles:
    """bridge, workers and alerts as `hemmon` processes with shared settings."""

    def __init__(self, url: str, mqtt_port: int, bootstrap: str) -> None:
        stem = f"bench{uuid.uuid4().hex[:6]}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")},
                    "HEMMON_DATABASE_URL": url, "HEMMON_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
                    "HEMMON_KAFKA_BOOTSTRAP": bootstrap, "HEMMON_KAFKA_TOPIC": f"{stem}.raw",
                    "HEMMON_KAFKA_PARTITIONS": str(PARTITIONS),
                    "HEMMON_BRIDGE_CLIENT_ID": f"{stem}-bridge", "HEMMON_BRIDGE_GROUP": stem,
                    "HEMMON_SECRET_KEY": "bench-secret-" + "x" * 32, "HEMMON_BATCH_MAX": "2000",
                    "HEMMON_LOG_LEVEL": "WARNING", "HEMMON_SWEEP_SECONDS": "3600"}
        self.processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.peaks: dict[str, float] = {}

    def start(self, name: str, command: str, **env: str) -> None:
        self.launch(name, command, **env)
        self.wait_ready(name)

    def launch(self, name: str, command: str, **env: str) -> None:
        """Start a role without waiting for it (several can start at once)."""
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "hemmon.cli", command],
                                   env={**self.env, "HEMMON_HTTP_PORT": str(port), **env},
                                   stdout=subprocess.DEVNULL)
        self.processes[name] = (process, port)

    def wait_ready(self, name: str, poll: float = 0.2) -> float:
        """Until the role answers /readyz; the time it became ready (perf_counter)."""
        process, port = self.processes[name]

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            return _ready(port)

        return wait_for(ready, timeout=120, poll=poll)

    def stop_one(self, name: str) -> None:
        process, _ = self.processes.pop(name)
        process.terminate()
        end(process)

    def metric(self, name: str, **labels: str) -> float:
        """A metric summed over every role."""
        return sum(metric_value(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text,
                                name, **labels) for _, port in self.processes.values())

    def stop(self) -> None:
        """Stop every role, keeping each one's peak RSS (MB) in `peaks`."""
        self.peaks = {name: peak_rss_mb(p.pid) for name, (p, _) in self.processes.items()}
        for process, _ in self.processes.values():
            process.terminate()
        for process, _ in self.processes.values():
            end(process)


def end(process: subprocess.Popen[bytes], grace: float = 30) -> None:
    """Wait for a terminated process; kill it if it does not stop (a benchmark must not
    leave a process spinning on a shared machine)."""
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def stop_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so that every `finally` stops
    the processes the benchmark started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@contextmanager
def running_roles(url: str, mqtt_port: int, bootstrap: str) -> Iterator[Roles]:
    roles = Roles(url, mqtt_port, bootstrap)
    create_topics(bootstrap, roles.env["HEMMON_KAFKA_TOPIC"], PARTITIONS)
    try:
        roles.start("alerts", "alerts")
        for i in range(WORKERS):
            roles.start(f"worker-{i}", "worker", HEMMON_WORKER_CLIENT_ID=f"bench-w{i}")
        roles.start("bridge", "bridge")
        yield roles
    finally:
        roles.stop()


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def throughput(url: str, port: int, roles: Roles, devices: list[str],
               messages: int, others: dict[str, int]) -> dict[str, Any]:
    jobs, readings = [], 0
    for i in range(messages):
        count, body = message(i)
        readings += count
        jobs.append((f"hemmon/v1/devices/{devices[i % len(devices)]}/readings", body))
    before = count_readings(url)
    evaluated = roles.metric("hemmon_readings_evaluated_total")
    pids = {**{name: p.pid for name, (p, _) in roles.processes.items()}, **others}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before, total_before = machine_busy()
    started = time.perf_counter()
    publish_parallel(port, jobs, 2)
    published = time.perf_counter()
    wait_for(lambda: count_readings(url) >= before + readings, timeout=900, poll=0.2)
    finished = wait_for(
        lambda: roles.metric("hemmon_readings_evaluated_total") >= evaluated + readings,
        timeout=900, poll=0.2)
    elapsed = finished - started
    busy_after, total_after = machine_busy()
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    return {"messages": messages, "readings": readings, "seconds": elapsed,
            "readings_per_s": readings / elapsed, "messages_per_s": messages / elapsed,
            "publish_seconds": published - started,
            "machine_busy": (busy_after - busy_before) / (total_after - total_before),
            "cpu_ms_per_1000_readings": {name: 1e6 * sec / readings
                                         for name, sec in sorted(cpu.items())}}


def latency(url: str, port: int, devices: list[str], red_devices: list[str],
            readings_per_s: float, seconds: float, red_every: int = 50) -> dict[str, float]:
    """At a fixed rate: publish -> feedback (stored and evaluated) for every message, and
    publish -> alert committed (alerts.opened_at) for red SpO2 from devices without an
    open alert."""
    sent: dict[str, float] = {}
    stored: list[float] = []
    red_sent: dict[str, float] = {}
    reds = iter(red_devices)

    def on_feedback(key: str, now: float) -> None:
        if key in sent:
            stored.append(now - sent.pop(key))

    def publish_one(pub: Any, index: int) -> int:
        red = index % red_every == 0
        count, body = message(index, red=red)
        device = next(reds, None) if red else devices[index % len(devices)]
        if device is None:
            return 0
        if red:
            red_sent[device] = time.time()
        else:
            sent[f"m-{index}"] = time.perf_counter()
        pub.publish(f"hemmon/v1/devices/{device}/readings", body, qos=1)
        return count

    publisher = paced(port, readings_per_s, seconds, 20_000_000, publish_one, on_feedback,
                      settle=5.0)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.id, a.opened_at FROM alerts a JOIN devices d USING (patient_id)"
            " WHERE d.id = ANY(%s)", (list(red_sent),)).fetchall()
    alerted = [r[1].timestamp() - red_sent[r[0]] for r in rows]
    return {"rate_readings_per_s": readings_per_s, "seconds": seconds,
            "publisher_readings_per_s": publisher["achieved_readings_per_s"],
            "publisher_max_behind_ms": publisher["max_behind_schedule_ms"],
            "stored_p50_ms": percentile_ms(stored, 50),
            "stored_p99_ms": percentile_ms(stored, 99),
            "alert_p50_ms": percentile_ms(alerted, 50),
            "alert_p99_ms": percentile_ms(alerted, 99),
            "alerts_measured": len(alerted), "alerts_missing": len(red_sent) - len(alerted),
            "lost_feedback": len(sent)}


def postmaster(port: int) -> int:
    """The PostgreSQL server's pid (its backends are its children: their CPU time counts
    once they exit; the benchmark's connections are short)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            joined = b" ".join(command)
            if command[0].endswith(b"postgres") and f"-p {port}".encode() in joined:
                return int(entry.name)
    raise LookupError("no postmaster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small loads, a smoke run")
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    messages = 6000 if args.quick else 40_000
    ceiling_messages = 10_000 if args.quick else 50_000
    latency_seconds = 5.0 if args.quick else 20.0
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "machine": machine(),
                               "workers": WORKERS, "partitions": PARTITIONS}
    with postgres_server() as pg, mosquitto() as broker, kafka() as kafka_broker:
        url, patients = bench_database(pg, args.patients)
        half = len(patients) // 2
        devices = [p.device_id for p in patients[:half]]
        # red SpO2 opens an alert only where the group's rules watch SpO2
        red_devices = [p.device_id for p in patients[half:]
                       if p.group in ("heart_failure", "copd")]
        results["ceiling_broker_messages_per_s"] = broker_ceiling(broker.port, ceiling_messages)
        results["ceiling_copy_readings_per_s"] = copy_ceiling(url, messages * 2)
        results["ceiling_kafka_records_per_s"] = kafka_ceiling(kafka_broker.bootstrap,
                                                               ceiling_messages)
        with running_roles(url, broker.port, kafka_broker.bootstrap) as roles:
            assert kafka_broker.process is not None
            others = {"kafka": kafka_broker.process.pid, "mosquitto": broker.process.pid,
                      "postgresql": postmaster(pg.port)}
            results["kafka_path"] = throughput(url, broker.port, roles, devices, messages,
                                               others)
            results["latency"] = latency(url, broker.port, devices, red_devices, 1000.0,
                                         latency_seconds)
        results["peak_rss_mb"] = roles.peaks
    path = results["kafka_path"]
    results["ratio_to_broker"] = path["messages_per_s"] / results["ceiling_broker_messages_per_s"]
    results["ratio_to_copy"] = path["readings_per_s"] / results["ceiling_copy_readings_per_s"]
    results["ratio_to_kafka"] = path["messages_per_s"] / results["ceiling_kafka_records_per_s"]
    report(results)
    write_results("kafka", results)
    return 0


def report(r: dict[str, Any]) -> None:
    k, lat = r["kafka_path"], r["latency"]
    rows = [
        ("machine", f"{r['machine']['cpu']}, {r['machine']['cores']} cores, "
                    f"{r['machine']['memory_gib']} GiB"),
        ("ceiling: paho -> Mosquitto -> paho (QoS 1)",
         f"{r['ceiling_broker_messages_per_s']:,.0f} messages/s"),
        ("ceiling: binary COPY into readings",
         f"{r['ceiling_copy_readings_per_s']:,.0f} readings/s"),
        ("ceiling: aiokafka produce -> consume (acks=all)",
         f"{r['ceiling_kafka_records_per_s']:,.0f} records/s"),
        (f"Kafka path ({r['workers']} workers, {r['partitions']} partitions): end to end",
         f"{k['readings_per_s']:,.0f} readings/s ({k['messages_per_s']:,.0f} messages/s,"
         f" {k['readings']:,} readings in {k['seconds']:.1f} s)"),
        ("  ratio to the broker ceiling (messages)", f"{r['ratio_to_broker']:.2f}"),
        ("  ratio to the COPY ceiling (readings)", f"{r['ratio_to_copy']:.2f}"),
        ("  ratio to the Kafka ceiling (records)", f"{r['ratio_to_kafka']:.2f}"),
        (f"at {lat['rate_readings_per_s']:,.0f} readings/s: publish -> stored+evaluated,"
         " p50 / p99", f"{lat['stored_p50_ms']:.1f} / {lat['stored_p99_ms']:.1f} ms"),
        ("  publisher achieved (target beside it)", publisher_rate(lat)),
        ("  publish -> alert opened (its opened_at), p50 / p99",
         f"{lat['alert_p50_ms']:.1f} / {lat['alert_p99_ms']:.1f} ms"
         f" ({lat['alerts_measured']} alerts, {lat['alerts_missing']} missing)"),
        ("machine CPU busy during the run", f"{k['machine_busy']:.0%} of 2 cores"),
        ("CPU ms per 1,000 readings", ", ".join(
            f"{name} {ms:.0f}" for name, ms in k["cpu_ms_per_1000_readings"].items())),
        ("peak RSS per role", ", ".join(f"{name} {mb:.0f} MB"
                                       for name, mb in r["peak_rss_mb"].items())),
    ]
    print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
