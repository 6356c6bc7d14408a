"""The distributed runner as an operator runs it: `hemmon bridge|worker|alerts` processes
on real Mosquitto, Kafka and PostgreSQL, with the same recorded scenario as the embedded
runner, and what both left in the database to compare."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from hemmon.service import free_port
from hemmon.settings import MqttAddress
from hemmon.simulator import Publisher, VirtualPatient, schedule, virtual_patients

from ..services import metric_value
from .harness import SECRET

# 200 patients, 25 sessions each, 50 minutes apart, all within the last day (findings on
# older readings are history, not alerts): 5,000 messages, 20,000 readings.
PATIENTS: list[VirtualPatient] = virtual_patients(200, prefix="dist", deteriorating=24, seed=7)
SESSIONS = 25
SPACING = timedelta(minutes=50)
START = (datetime.now(UTC) - timedelta(hours=21)).replace(second=0, microsecond=0)
SCENARIO: list[tuple[str, bytes]] = list(schedule(PATIENTS, sessions=SESSIONS, start=START,
                                                  spacing=SPACING, seed=7))
READINGS = 20_000


@dataclass(frozen=True)
class Outcome:
    """What a run left: readings, findings and clinical alerts, without timestamps of
    processing or routes (office hours depend on the wall clock)."""

    readings: int
    distinct_readings: int
    rejections: int
    rejected: tuple[str, ...]
    """The first few rejections, to say what they were."""
    findings: frozenset[tuple[str, str, str]]
    alerts: frozenset[tuple[str, str, str, int]]
    open_twice: int

    def brief(self) -> str:
        return (f"{self.readings} readings ({self.distinct_readings} distinct),"
                f" {self.rejections} rejections, {len(self.findings)} findings,"
                f" {len(self.alerts)} alerts")


def outcome(database_url: str) -> Outcome:
    with psycopg.connect(database_url) as conn:
        readings, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, message_key, type)) FROM readings"
        ).fetchone() or (0, 0)
        rejections = conn.execute("SELECT count(*) FROM rejections").fetchone()
        kinds = conn.execute("SELECT reason, topic, detail FROM rejections LIMIT 5").fetchall()
        findings = conn.execute(
            "SELECT patient_id, rule, reading_key FROM findings WHERE category = 'clinical'"
        ).fetchall()
        alerts = conn.execute(
            "SELECT patient_id, rule, level, occurrences FROM alerts"
            " WHERE category = 'clinical'").fetchall()
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT patient_id, rule FROM alerts"
            " WHERE status <> 'resolved' GROUP BY 1, 2 HAVING count(*) > 1) AS d").fetchone()
    return Outcome(int(readings), int(distinct), int(rejections[0] if rejections else 0),
                   tuple(f"{r} on {t}: {d}" for r, t, d in kinds),
                   frozenset((str(a), str(b), str(c)) for a, b, c in findings),
                   frozenset((str(a), str(b), str(c), int(d)) for a, b, c, d in alerts),
                   int(twice[0] if twice else 0))


def wait_for(database_url: str, expected: Outcome, timeout: float = 150.0) -> Outcome:
    """Until the run has left what `expected` holds (or the time is out: returns the last)."""
    deadline = time.monotonic() + timeout
    seen = outcome(database_url)
    while time.monotonic() < deadline and seen != expected:
        time.sleep(1.0)
        seen = outcome(database_url)
    return seen


def publish(address: MqttAddress, *, rate: float | None = None,
            at: dict[float, Callable[[], None]] | None = None) -> None:
    """The scenario over MQTT (QoS 1), optionally paced, calling `at[f]` once a fraction f
    of it is out (to crash something in the middle of the stream)."""
    pending = dict(sorted((at or {}).items()))
    publisher = Publisher(address, client_id=f"scenario-{uuid.uuid4().hex[:6]}", in_flight=50)
    started = time.monotonic()
    try:
        for sent, (topic, body) in enumerate(SCENARIO, start=1):
            publisher.publish(topic, body)
            while pending and sent >= next(iter(pending)) * len(SCENARIO):
                publisher.flush()
                pending.pop(next(iter(pending)))()
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        publisher.close()


@dataclass
class Role:
    command: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def metric(self, name: str, **labels: str) -> float:
        """A sample from /metrics; without labels, the sum over every label set."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return metric_value(text, name, **labels)


@dataclass
class Cluster:
    """Bridge, workers and alert service as subprocesses sharing one set of settings, and
    a supervisor that restarts a role that exits on its own (as compose's `restart:
    unless-stopped` or Kubernetes would): a role's watchdog may stop it for a restart."""

    database_url: str
    mqtt: MqttAddress
    bootstrap: str
    logs: Path
    roles: dict[str, Role] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._supervise, daemon=True).start()
        stem = f"t{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")}
        self.env.update({
            "HEMMON_DATABASE_URL": self.database_url,
            "HEMMON_MQTT_URL": f"mqtt://{self.mqtt.host}:{self.mqtt.port}",
            "HEMMON_KAFKA_BOOTSTRAP": self.bootstrap, "HEMMON_KAFKA_TOPIC": f"{stem}.raw",
            "HEMMON_KAFKA_PARTITIONS": "4",
            # a share group of its own: a stopped bridge's persistent session stays a member
            "HEMMON_BRIDGE_CLIENT_ID": f"{stem}-bridge", "HEMMON_BRIDGE_GROUP": stem,
            "HEMMON_SECRET_KEY": SECRET, "HEMMON_BATCH_WAIT_MS": "10",
            "HEMMON_SWEEP_SECONDS": "3600", "HEMMON_STALL_SECONDS": "15",
        })
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: str, **env: str) -> Role:
        port = free_port()
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "hemmon.cli", command],
                env={**self.env, "HEMMON_HTTP_PORT": str(port), **env},
                stdout=out, stderr=subprocess.STDOUT)
        role = Role(command, port, process, log, env)
        with self._lock:
            self.roles[name] = role
        self._wait_ready(name, role)
        return role

    def _supervise(self) -> None:
        while not self._closed.wait(0.5):
            with self._lock:
                exited = [(name, role) for name, role in self.roles.items()
                          if role.process.poll() is not None]
                for name, _ in exited:
                    del self.roles[name]
            for name, role in exited:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                with role.log.open("a") as out:
                    out.write(f"=== supervisor: {name} exited ({role.process.returncode});"
                              " restarting\n")
                with contextlib.suppress(AssertionError):  # tried again on the next round
                    self.start(name, role.command, **role.env)

    def _wait_ready(self, name: str, role: Role, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if role.process.poll() is not None:
                raise AssertionError(f"{name} exited ({role.process.returncode}):\n"
                                     + self.tail(name))
            try:
                if httpx.get(f"http://127.0.0.1:{role.port}/readyz", timeout=2
                             ).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready after {timeout:.0f} s:\n" + self.tail(name))

    def kill(self, name: str) -> None:
        """kill -9: no goodbye, nothing flushed, offsets and acknowledgements left as they are."""
        with self._lock:
            role = self.roles.pop(name)
        role.process.send_signal(signal.SIGKILL)
        role.process.wait(10)

    def stop(self, name: str) -> None:
        with self._lock:
            role = self.roles.pop(name)
        role.process.send_signal(signal.SIGTERM)
        try:
            role.process.wait(30)
        except subprocess.TimeoutExpired:
            role.process.kill()
            role.process.wait(10)

    def stop_all(self) -> None:
        self._closed.set()
        for name in list(self.roles):
            self.stop(name)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def start_all(self, workers: int = 1) -> None:
        self.start("alerts", "alerts")
        for i in range(workers):
            self.start(f"worker-{i}", "worker",
                       HEMMON_WORKER_CLIENT_ID=f"w{i}-{uuid.uuid4().hex[:6]}")
        self.start("bridge", "bridge")


def in_background(work: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread
