"""Benchmark of the embedded path, against raw ceilings measured in the same run.

Load: a home-monitoring mix from many simulated devices, one MQTT publish per message:
cuff (systolic, diastolic, pulse), oximeter (SpO2, pulse), scale (weight). A reading is
one measurement. Ceilings on the same services: paho publish -> subscribe through the same
Mosquitto (messages/s) and binary COPY of the same rows into the same PostgreSQL
(readings/s). The embedded path runs as `hemmon run` in its own process.

    python -m bench.embedded [--quick]        (or bench/run)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hemmon.db import migrate
from hemmon.roster import RosterFile, load_roster
from hemmon.service import free_port
from hemmon.simulator import VirtualPatient, roster_for, virtual_patients
from tests.services import PostgresServer, mosquitto, postgres_server

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = (  # (readings in the message, measurements)
    (3, [("blood_pressure_systolic", 132, "mm[Hg]"), ("blood_pressure_diastolic", 81, "mm[Hg]"),
         ("heart_rate", 71, "/min")]),
    (2, [("spo2", 96, "%"), ("heart_rate", 72, "/min")]),
    (1, [("body_weight", 78.4, "kg")]),
)


def message(index: int, *, red: bool = False) -> tuple[int, bytes]:
    count, measurements = KINDS[index % len(KINDS)]
    measured = datetime.now(UTC)
    if red:
        count, measurements = 1, [("spo2", 80, "%")]
        # a red whose wait for a re-measurement (the templates' `confirm: 12m`) is over:
        # what is timed is the alert path, not the 12 minutes a lone red waits by design
        measured -= timedelta(minutes=13)
    body = {"schema": "hemmon.reading/1", "message_id": f"m-{index}",
            "measured_at": measured.isoformat(),
            "measurements": [{"type": t, "value": v, "unit": u} for t, v, u in measurements]}
    return count, json.dumps(body).encode()


def client(port: int, name: str, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
           in_flight: int = 1000) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"{name}-{uuid.uuid4().hex[:6]}", protocol=protocol)
    c.max_inflight_messages_set(in_flight)
    c.max_queued_messages_set(0)
    return c


def publish_all(port: int, jobs: list[tuple[str, bytes]]) -> None:
    """Publish QoS 1 and wait for every PUBACK (a capped number in flight)."""
    c = client(port, "bench-pub")
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, body, qos=1) for topic, body in jobs]
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def _publisher_process(port: int, jobs: list[tuple[str, bytes]]) -> None:
    publish_all(port, jobs)


def publish_parallel(port: int, jobs: list[tuple[str, bytes]], processes: int) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_publisher_process, args=(port, jobs[i::processes]))
               for i in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def broker_ceiling(port: int, count: int) -> float:
    """paho -> Mosquitto -> paho, QoS 1, messages/s."""
    received = 0
    done = threading.Event()

    def on_message(*_: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    sub = client(port, "bench-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("bench/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    jobs = [(f"bench/devices/d-{i % 500}/readings", message(i)[1]) for i in range(count)]
    started = time.perf_counter()
    publish_all(port, jobs)
    done.wait(120)
    elapsed = time.perf_counter() - started
    sub.disconnect()
    sub.loop_stop()
    return received / elapsed


Row = tuple[str, str, str, float, datetime, datetime, str, bool, str, bool | None]


def copy_ceiling(url: str, rows: int) -> float:
    """Binary COPY of readings-shaped rows into the readings table, readings/s."""
    now = datetime.now(UTC)
    return copy_rate(url, [(f"p-{i % 1000}", f"d-{i % 1000}", "heart_rate", 70.0 + i % 30, now,
                            now, "native", False, f"c-{i}", None) for i in range(rows)])


def copy_rate(url: str, data: list[Row]) -> float:
    """Binary COPY of `data` into the readings table (emptied again after), readings/s."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "COPY readings (patient_id, device_id, type, value, measured_at, received_at,"
            " source_format, manual, message_key, on_oxygen) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "text", "float8", "timestamptz", "timestamptz",
                            "text", "bool", "text", "bool"])
            for row in data:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("TRUNCATE readings")
        conn.commit()
    return len(data) / elapsed


def wait_for(check: Callable[[], bool], timeout: float, poll: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.perf_counter()
        time.sleep(poll)
    raise TimeoutError("the benchmark waited too long")


def count_readings(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def start_service(url: str, port: int) -> tuple[subprocess.Popen[bytes], int]:
    http_port = free_port()
    env = {**os.environ, "HEMMON_DATABASE_URL": url, "HEMMON_MQTT_URL": f"mqtt://127.0.0.1:{port}",
           "HEMMON_SECRET_KEY": "bench-secret-" + "x" * 32, "HEMMON_HTTP_PORT": str(http_port),
           "HEMMON_BATCH_MAX": "2000", "HEMMON_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "hemmon.cli", "run"], env=env)
    wait_for(lambda: _ready(http_port), timeout=60, poll=0.2)
    return process, http_port


def _ready(http_port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def throughput(url: str, port: int, devices: list[str], messages: int,
               processes: int) -> dict[str, float]:
    jobs, readings = [], 0
    for i in range(messages):
        count, body = message(i)
        readings += count
        jobs.append((f"hemmon/v1/devices/{devices[i % len(devices)]}/readings", body))
    before = count_readings(url)
    started = time.perf_counter()
    publish_parallel(port, jobs, processes)
    published = time.perf_counter()
    finished = wait_for(lambda: count_readings(url) >= before + readings, timeout=600, poll=0.1)
    elapsed = finished - started
    return {"messages": messages, "readings": readings, "seconds": elapsed,
            "readings_per_s": readings / elapsed, "messages_per_s": messages / elapsed,
            "publish_seconds": published - started}


def paced(port: int, readings_per_s: float, seconds: float, first_index: int,
          publish_one: Callable[[mqtt.Client, int], int],
          on_feedback: Callable[[str, float], None], settle: float = 2.0) -> dict[str, float]:
    """Publish at a fixed rate of readings for `seconds`: `publish_one(client, index)`
    sends message `index` and returns its readings (0: stop early); `on_feedback(message_id,
    arrival)` hears every device feedback. Waits `settle` seconds for the last answers.
    Returns what the publisher achieved, to print beside the target: a latency measured
    behind a publisher that cannot keep the rate measures the publisher."""
    sub = client(port, "bench-feedback")
    sub.on_message = lambda _c, _u, msg: on_feedback(json.loads(msg.payload)["message_id"],
                                                     time.perf_counter())
    sub.connect("127.0.0.1", port)
    sub.subscribe("hemmon/v1/devices/+/feedback", qos=1)
    sub.loop_start()
    pub = client(port, "bench-rate")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)
    started = time.perf_counter()
    index, published, behind = first_index, 0, 0.0
    while time.perf_counter() - started < seconds:
        due = started + published / readings_per_s
        behind = max(behind, time.perf_counter() - due)
        sent = publish_one(pub, index)
        if not sent:
            break
        published += sent
        index += 1
        delay = started + published / readings_per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - started
    time.sleep(settle)
    sub.loop_stop()
    pub.loop_stop()
    return {"target_readings_per_s": readings_per_s,
            "achieved_readings_per_s": published / elapsed if elapsed > 0 else 0.0,
            "messages": index - first_index, "readings": published,
            "max_behind_schedule_ms": behind * 1000}


def percentile_ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def latency(port: int, devices: list[str], readings_per_s: float, seconds: float,
            red_every: int = 50, settle: float = 2.0) -> dict[str, float]:
    """Publish at a fixed rate; time from publish to the device's feedback (sent after the
    batch commits, alerts included), for all messages and for those that open or update
    an alert."""
    sent: dict[str, tuple[float, bool]] = {}
    stored: list[float] = []
    alerted: list[float] = []
    lock = threading.Lock()

    def on_feedback(key: str, now: float) -> None:
        with lock:
            if key in sent:
                at, red = sent.pop(key)
                (alerted if red else stored).append(now - at)

    def publish_one(pub: mqtt.Client, index: int) -> int:
        red = index % red_every == 0
        count, body = message(index, red=red)
        with lock:
            sent[f"m-{index}"] = (time.perf_counter(), red)
        pub.publish(f"hemmon/v1/devices/{devices[index % len(devices)]}/readings", body, qos=1)
        return count

    publisher = paced(port, readings_per_s, seconds, 10_000_000, publish_one, on_feedback,
                      settle)
    return {"rate_readings_per_s": readings_per_s, "seconds": seconds,
            "publisher_readings_per_s": publisher["achieved_readings_per_s"],
            "publisher_max_behind_ms": publisher["max_behind_schedule_ms"],
            "stored_p50_ms": percentile_ms(stored, 50),
            "stored_p99_ms": percentile_ms(stored, 99),
            "alert_p50_ms": percentile_ms(alerted, 50),
            "alert_p99_ms": percentile_ms(alerted, 99),
            "alerts_measured": len(alerted), "lost_feedback": len(sent)}


def publisher_rate(lat: dict[str, float]) -> str:
    """The publisher's achieved rate beside its target, flagged when it fell behind."""
    short = lat["publisher_readings_per_s"] < 0.95 * lat["rate_readings_per_s"]
    return (f"{lat['publisher_readings_per_s']:,.0f} readings/s"
            f" (target {lat['rate_readings_per_s']:,.0f}; at most"
            f" {lat['publisher_max_behind_ms']:.0f} ms behind schedule)"
            + ("  PUBLISHER TOO SLOW: these latencies are not hemmon's alone" if short else ""))


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory_gib": f"{int(memory) / 2**20:.0f}",
            "python": platform.python_version(), "kernel": platform.release()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small loads, a smoke run")
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args(argv)
    messages = 6000 if args.quick else 40_000
    ceiling_messages = 10_000 if args.quick else 50_000
    latency_seconds = 5.0 if args.quick else 20.0
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "machine": machine()}
    with postgres_server() as pg, mosquitto() as broker:
        url, patients = bench_database(pg, args.patients)
        devices = [p.device_id for p in patients]
        results["ceiling_broker_messages_per_s"] = broker_ceiling(broker.port, ceiling_messages)
        results["ceiling_copy_readings_per_s"] = copy_ceiling(url, messages * 2)
        process, _ = start_service(url, broker.port)
        try:
            results["embedded"] = throughput(url, broker.port, devices, messages, processes=2)
            results["latency"] = latency(broker.port, devices, 1000.0, latency_seconds)
            results["peak_rss_mb"] = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    embedded = results["embedded"]
    results["ratio_to_broker"] = embedded["messages_per_s"] / results[
        "ceiling_broker_messages_per_s"]
    results["ratio_to_copy"] = embedded["readings_per_s"] / results["ceiling_copy_readings_per_s"]
    report(results)
    write_results("embedded", results)
    return 0


def bench_database(pg: PostgresServer, patients: int) -> tuple[str, list[VirtualPatient]]:
    """A migrated database "bench" with a roster of virtual patients."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    url = pg.url("bench")
    migrate(url)
    virtual = virtual_patients(patients, prefix="bench")
    with psycopg.connect(url) as conn:
        load_roster(conn, RosterFile.model_validate(roster_for(virtual)), actor="bench",
                    reason="benchmark", now=datetime.now(UTC))
    return url, virtual


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def write_results(name: str, results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out}")


def report(r: dict[str, Any]) -> None:
    e, lat = r["embedded"], r["latency"]
    rows = [
        ("machine", f"{r['machine']['cpu']}, {r['machine']['cores']} cores, "
                    f"{r['machine']['memory_gib']} GiB"),
        ("ceiling: paho -> Mosquitto -> paho (QoS 1)",
         f"{r['ceiling_broker_messages_per_s']:,.0f} messages/s"),
        ("ceiling: binary COPY into readings",
         f"{r['ceiling_copy_readings_per_s']:,.0f} readings/s"),
        ("embedded: end to end (MQTT -> stored and evaluated)",
         f"{e['readings_per_s']:,.0f} readings/s ({e['messages_per_s']:,.0f} messages/s,"
         f" {e['readings']:,} readings in {e['seconds']:.1f} s)"),
        ("  ratio to the broker ceiling (messages)", f"{r['ratio_to_broker']:.2f}"),
        ("  ratio to the COPY ceiling (readings)", f"{r['ratio_to_copy']:.2f}"),
        (f"at {lat['rate_readings_per_s']:,.0f} readings/s: publish -> stored, p50 / p99",
         f"{lat['stored_p50_ms']:.1f} / {lat['stored_p99_ms']:.1f} ms"),
        ("  publisher achieved (target beside it)", publisher_rate(lat)),
        ("  publish -> alert, p50 / p99",
         f"{lat['alert_p50_ms']:.1f} / {lat['alert_p99_ms']:.1f} ms"
         f" ({lat['alerts_measured']} alerts)"),
        ("peak RSS of hemmon run", f"{r['peak_rss_mb']:.0f} MB"),
    ]
    print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
