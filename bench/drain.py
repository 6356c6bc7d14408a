"""Drain benchmark of `hemmon run`: how fast it empties a backlog, against what merely
receiving the same backlog costs, on the same services in the same run.

1. A database with a roster of virtual patients; Mosquitto queueing without limit.
2. `hemmon run` is started once and stopped, which leaves its persistent session (its
   client id and subscriptions, whatever they are) with the broker; a bare paho session
   is primed beside it.
3. A backlog (default 30,000 messages = 60,000 readings for 1,000 patients, native
   format: cuff, oximeter, scale; one oximeter message in 50 with a red SpO2) is queued
   for both sessions by `mosquitto_pub` (its rate is printed; it is not timed).
4. Ceilings: the bare paho client drains its copy; the same rows go into PostgreSQL by
   binary COPY.
5. `hemmon run` is started again and timed from the first message it received (the
   smallest received_at) until every reading is stored (readings table) and evaluated
   (hemmon_readings_evaluated_total). CPU seconds per 1,000 readings per process tree
   (hemmon less its idle start-up, PostgreSQL's backends, Mosquitto) and hemmon's peak RSS
   (summed over its processes).
6. The live rate: publish -> stored and publish -> alert at 1,000 readings/s, with the
   publisher's achieved rate beside the target.

`hemmon run` is a black box here: a process, its HEMMON_* settings (any set in the
environment, e.g. HEMMON_PIPELINES or HEMMON_BATCH_MAX, are passed through), its
/readyz and /metrics, and the database.

    python -m bench.drain [--quick]        (or bench/run drain)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import backlog as mq
from bench import profile as profiler
from bench.embedded import (
    KINDS,
    RESULTS,
    Row,
    _ready,
    bench_database,
    copy_rate,
    latency,
    machine,
    print_table,
    publisher_rate,
    write_results,
)
from bench.kafka import end, machine_busy, postmaster, stop_on_sigterm
from bench.procs import PeakRss, cpu_seconds
from hemmon.ingest.topics import readings_topic
from hemmon.service import free_port
from hemmon.simulator import VirtualPatient
from tests.services import metric_value, postgres_server

EVALUATED = "hemmon_readings_evaluated_total"
DEFAULTS = {"HEMMON_BATCH_MAX": "2000", "HEMMON_LOG_LEVEL": "WARNING"}


@dataclass
class Backlog:
    by_topic: dict[str, list[bytes]]
    messages: int
    readings: int
    rows: list[Row]
    """The same readings as rows of the readings table, for the COPY ceiling."""


def make_backlog(patients: list[VirtualPatient], messages: int, red_every: int = 50
                 ) -> Backlog:
    """`messages` device messages round-robin over the patients' devices, the mix of
    `bench.embedded.KINDS`; every `red_every`-th oximeter message has SpO2 80 %."""
    by_topic: dict[str, list[bytes]] = defaultdict(list)
    rows: list[Row] = []
    now = datetime.now(UTC)
    for index in range(messages):
        patient = patients[index % len(patients)]
        _, measurements = KINDS[index % len(KINDS)]
        if measurements[0][0] == "spo2" and (index // len(KINDS)) % red_every == 0:
            measurements = [("spo2", 80, "%"), *measurements[1:]]
        body = {"schema": "hemmon.reading/1", "message_id": f"b-{index}",
                "measured_at": now.isoformat(),
                "measurements": [{"type": t, "value": v, "unit": u} for t, v, u in measurements]}
        by_topic[readings_topic(patient.device_id)].append(json.dumps(body).encode())
        rows += [(patient.patient_id, patient.device_id, t, float(v), now, now, "native", False,
                  f"b-{index}-{t}", None) for t, v, _ in measurements]
    return Backlog(dict(by_topic), messages, len(rows), rows)


def hemmon_env(url: str, mqtt_port: int, http_port: int) -> dict[str, str]:
    """The process environment: HEMMON_* from ours pass through (a tuning setting such as
    HEMMON_PIPELINES), the addresses of this run's services win."""
    return {**DEFAULTS, **os.environ, "HEMMON_DATABASE_URL": url,
            "HEMMON_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "HEMMON_SECRET_KEY": "bench-secret-" + "x" * 32, "HEMMON_HTTP_PORT": str(http_port),
            "HEMMON_HTTP_HOST": "127.0.0.1"}


def passed_settings() -> dict[str, str]:
    """The HEMMON_* tuning settings this run used (for the results file)."""
    env = {**DEFAULTS, **os.environ}
    own = ("DATABASE_URL", "MQTT_URL", "SECRET_KEY", "HTTP_PORT", "HTTP_HOST", "WEBHOOK_SECRET")
    return {k: v for k, v in sorted(env.items())
            if k.startswith("HEMMON_") and k.removeprefix("HEMMON_") not in own}


@dataclass
class Hemmon:
    """`hemmon run` as a process."""

    url: str
    mqtt_port: int
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60, on_spawn: Callable[[int], None] | None = None
              ) -> float:
        """Start and wait for /readyz; the seconds it took. `on_spawn(pid)` runs as soon as
        the process exists."""
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hemmon.cli", "run"],
            env=hemmon_env(self.url, self.mqtt_port, self.http_port))
        if on_spawn is not None:
            on_spawn(self.process.pid)
        deadline = time.monotonic() + timeout
        while not _ready(self.http_port):
            if self.process.poll() is not None:
                raise RuntimeError(f"hemmon run exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("hemmon run did not become ready")
            time.sleep(0.02)
        return time.perf_counter() - started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5).text
        return metric_value(text, name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            end(self.process)
            self.process = None


def prime_hemmon(hemmon: Hemmon) -> dict[str, float]:
    """Start and stop `hemmon run` with nothing queued: this leaves its session with the
    broker, and measures its start-up (seconds and CPU), to take out of the drain."""
    seconds = hemmon.start()
    time.sleep(0.5)  # let the subscriptions settle before anything is queued
    startup_cpu = cpu_seconds(hemmon.pid)
    hemmon.stop()
    return {"startup_seconds": seconds, "startup_cpu_seconds": startup_cpu}


def drain_hemmon(hemmon: Hemmon, url: str, expected: int, pids: dict[str, int],
                 startup_cpu: float, timeout: float = 900, profile_to: Path | None = None
                 ) -> tuple[dict[str, Any], PeakRss]:
    """Start hemmon on its queued backlog and time until all `expected` readings are
    stored and evaluated. `pids`: other process trees whose CPU time counts.
    `profile_to`: a py-spy profile of hemmon's drain goes there."""
    recorders: list[subprocess.Popen[bytes]] = []

    def record(pid: int) -> None:
        if profile_to is not None:
            recorders.append(profiler.start(pid, profile_to))

    with psycopg.connect(url, autocommit=True) as poll:
        own = poll.execute("SELECT pg_backend_pid()").fetchone()
        excluded = {int(own[0])} if own else set()

        def stored() -> int:
            row = poll.execute("SELECT count(*) FROM readings").fetchone()
            return int(row[0]) if row else 0

        before = {name: cpu_seconds(pid, excluded) for name, pid in pids.items()}
        busy_before = machine_busy()
        startup = hemmon.start(on_spawn=record)
        peak = PeakRss(hemmon.pid)
        deadline = time.monotonic() + timeout
        last_sample, evaluated, count = 0.0, 0.0, 0
        while True:
            evaluated = hemmon.metric(EVALUATED)
            if time.monotonic() - last_sample > 0.5:
                peak.sample()
                last_sample = time.monotonic()
            if evaluated >= expected and (count := stored()) >= expected:
                break
            if time.monotonic() > deadline:
                hint = (" (all stored: does /metrics count every pipeline process?)"
                        if stored() >= expected else "")
                raise TimeoutError(f"hemmon stored {stored()} and evaluated {evaluated:.0f}"
                                   f" of {expected} readings{hint}")
            time.sleep(0.1)
        done = time.time()
        for recorder in recorders:
            profiler.stop(recorder)
        cpu = {name: cpu_seconds(pid, excluded) - before[name] for name, pid in pids.items()}
        cpu["hemmon"] = max(0.0, cpu_seconds(hemmon.pid) - startup_cpu)
        busy_after = machine_busy()
        peak.sample()
        first = poll.execute("SELECT min(received_at) FROM readings").fetchone()
    assert first is not None
    assert first[0] is not None
    seconds = done - first[0].timestamp()
    return {"readings": count, "evaluated": evaluated, "seconds": seconds,
            "startup_seconds": startup,
            "readings_per_s": count / seconds,
            "machine_busy": (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]),
            "cpu_seconds": cpu,
            "cpu_s_per_1000_readings": {k: 1000 * v / count for k, v in sorted(cpu.items())},
            }, peak


def step(text: str) -> None:
    """Progress on stderr: a long run shows where it is."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller backlog, a smoke run")
    parser.add_argument("--messages", type=int, help="backlog size (default 30,000)")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy profile of hemmon's drain (its figures are not figures)")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    messages = args.messages or (6000 if args.quick else 30_000)
    latency_seconds = 5.0 if args.quick else 20.0
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "machine": machine(),
                               "settings": passed_settings(), "quick": args.quick}
    with postgres_server() as pg, mq.drain_broker() as broker:
        url, patients = bench_database(pg, args.patients)
        load = make_backlog(patients, messages)
        hemmon = Hemmon(url, broker.port)
        try:
            step("hemmon run: start once and stop (its persistent session)")
            results["hemmon_idle_start"] = prime_hemmon(hemmon)
            mq.prime_session(broker.port)
            step("queueing the backlog")
            results["backlog"] = {"patients": len(patients), "messages": load.messages,
                                  "readings": load.readings,
                                  "publisher": mq.publish_backlog(broker.port, load.by_topic)}
            step("ceiling: the bare paho drain")
            results["bare_paho"] = mq.bare_drain(broker.port, load.messages)
            step("ceiling: binary COPY")
            results["ceiling_copy_readings_per_s"] = copy_rate(url, load.rows)
            pids = {"postgresql": postmaster(pg.port), "mosquitto": broker.process.pid}
            step("hemmon run drains the backlog")
            idle_cpu = results["hemmon_idle_start"]["startup_cpu_seconds"]
            RESULTS.mkdir(exist_ok=True)
            profile_to = (RESULTS / f"drain-profile-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.txt"
                          if args.profile else None)
            drained, peak = drain_hemmon(hemmon, url, load.readings, pids, idle_cpu,
                                         timeout=180 if args.quick else 900,
                                         profile_to=profile_to)
            if profile_to is not None:
                results["profile"] = {"file": str(profile_to), "on_stack": dict(
                    profiler.inclusive_shares(profile_to.read_text()))}
            drained["messages_per_s"] = load.messages / drained["seconds"]
            results["hemmon"] = drained
            step("the live rate")
            results["latency"] = latency(broker.port, [p.device_id for p in patients], 1000.0,
                                         latency_seconds)
            peak.sample()
            results["hemmon_peak_rss_mib"] = peak.mib
            results["hemmon_processes"] = peak.processes
        finally:
            hemmon.stop()
    results["ratio_to_bare_paho"] = (results["hemmon"]["messages_per_s"]
                                     / results["bare_paho"]["messages_per_s"])
    report(results)
    write_results("drain-quick" if args.quick else "drain", results)
    return 0


def cpu_line(per_1000: dict[str, float]) -> str:
    return ", ".join(f"{name} {s:.3f}" for name, s in per_1000.items())


def backlog_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The machine, the settings, the backlog and the ceilings: the head of both drain
    reports (this one and the Kafka path's)."""
    b, bare = r["backlog"], r["bare_paho"]
    settings = [("settings passed to hemmon",
                 " ".join(f"{k}={v}" for k, v in r["settings"].items()))] if "settings" in r else []
    return [
        ("machine", f"{r['machine']['cpu']}, {r['machine']['cores']} cores, "
                    f"{r['machine']['memory_gib']} GiB"),
        *settings,
        ("backlog", f"{b['messages']:,} messages = {b['readings']:,} readings,"
                    f" {b['patients']:,} patients"),
        ("  queued by mosquitto_pub (not timed)",
         f"{b['publisher']['messages_per_s']:,.0f} messages/s"),
        ("ceiling: bare paho drains the backlog (QoS 1)",
         f"{bare['messages_per_s']:,.0f} messages/s ="
         f" {b['readings'] / bare['seconds']:,.0f} readings/s ({bare['seconds']:.1f} s;"
         f" {1000 * bare['cpu_seconds'] / b['readings']:.3f} CPU s per 1,000 readings)"),
        ("ceiling: binary COPY of the same rows",
         f"{r['ceiling_copy_readings_per_s']:,.0f} readings/s"),
    ]


def report(r: dict[str, Any]) -> None:
    h, lat = r["hemmon"], r["latency"]
    rows = [
        *backlog_rows(r),
        ("hemmon run drains it (stored and evaluated)",
         f"{h['messages_per_s']:,.0f} messages/s = {h['readings_per_s']:,.0f} readings/s"
         f" ({h['seconds']:.1f} s after {h['startup_seconds']:.1f} s start-up)"),
        ("  ratio hemmon / bare paho (messages)", f"{r['ratio_to_bare_paho']:.2f}"),
        ("  CPU seconds per 1,000 readings", cpu_line(h["cpu_s_per_1000_readings"])),
        ("  machine CPU busy meanwhile (all processes)",
         f"{h['machine_busy']:.0%} of {r['machine']['cores']} cores"),
        ("  peak RSS of hemmon run",
         f"{r['hemmon_peak_rss_mib']:.0f} MiB over {r['hemmon_processes']} process(es)"),
        (f"at {lat['rate_readings_per_s']:,.0f} readings/s: publish -> stored, p50 / p99",
         f"{lat['stored_p50_ms']:.1f} / {lat['stored_p99_ms']:.1f} ms"),
        ("  publish -> alert, p50 / p99",
         f"{lat['alert_p50_ms']:.1f} / {lat['alert_p99_ms']:.1f} ms"
         f" ({lat['alerts_measured']} alerts, {lat['lost_feedback']} answers missing)"),
        ("  publisher achieved", publisher_rate(lat)),
    ]
    if "profile" in r:
        rows += [("PROFILED RUN (py-spy competes for the cores: not figures)",
                  r["profile"]["file"])]
        rows += [(f"  on the stack in {share:.0%} of samples", name)
                 for name, share in r["profile"]["on_stack"].items()]
    print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
