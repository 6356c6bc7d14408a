"""Real PostgreSQL and Mosquitto for the tests, from Debian's packages, on private ports.

`scripts/test` installs the packages; a missing one fails the test setup with a message
saying so (never a silent skip).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hemmon.service import free_port, wait_for_port


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` (e.g. `hemmon_x_total`) in a /metrics page whose
    labels include `labels`; 0 when there are none."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def require(binary: str, hint: str, *, also: tuple[str, ...] = ()) -> str:
    """The path of a program the tests need; a clear failure (never a skip) without it."""
    found = shutil.which(binary) or next(
        (p for p in (f"{d}/{binary}" for d in also) if Path(p).exists()), None)
    if found is None:
        pytest.fail(f"{binary} not found: {hint}", pytrace=False)
    return found


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found: run ./scripts/test, which installs "
                    "Debian's postgresql package", pytrace=False)
    return Path(found[-1]).parent


@dataclass(frozen=True)
class PostgresServer:
    port: int
    control: tuple[str, ...] = ()
    """pg_ctl with its data directory and options (to restart the cluster)."""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the cluster abruptly (like a crash), wait, start it again."""
        subprocess.run([*self.control, "-m", "immediate", "stop"], check=True,
                       capture_output=True)
        time.sleep(down_seconds)
        subprocess.run([*self.control, "-w", "start"], check=True, capture_output=True)


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A throw-away cluster: initdb as the postgres user when run as root. Fast (fsync
    and synchronous commit off: a crash may lose the last commits) unless `durable`, as
    a test that crashes the server needs."""
    bin_dir = _postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="hemmon-test-pg-"))
    os.chmod(base, 0o755)
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = base / "data"
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-l", str(base / "log"), "-w", "start"], check=True, capture_output=True)
    control = (*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
               "-l", str(base / "log"))
    try:
        yield PostgresServer(port, control)
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Mosquitto:
    port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def mosquitto(auth: str = "allow_anonymous true\n",
              queue: str = "max_queued_messages 100000\n") -> Iterator[Mosquitto]:
    """A broker on a private port; `auth` replaces the anonymous default, `queue` the
    limits of what it keeps for a session that is away."""
    binary = require("mosquitto", "./scripts/setup installs Debian's mosquitto",
                     also=("/usr/sbin",))
    base = Path(tempfile.mkdtemp(prefix="hemmon-test-mqtt-"))
    port = free_port()
    conf = base / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n{auth}persistence false\n"
        f"{queue}max_inflight_messages 1000\n"
    )
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield Mosquitto(port, process)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(base, ignore_errors=True)


KAFKA = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
_KRAFT = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=4
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
"""
_LOG4J = """log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%d %p %m (%c)%n
"""


@dataclass
class Kafka:
    port: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=60)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextlib.contextmanager
def kafka() -> Iterator[Kafka]:
    """A single-node Apache Kafka (KRaft) from the jars scripts/kafka-jars fetched."""
    java = require("java", "Java 17 runs the Kafka broker")
    if not (KAFKA / "lib" / ".complete").exists():
        pytest.fail("Kafka's jars are missing: ./scripts/setup fetches them "
                    "(scripts/kafka-jars)", pytrace=False)
    import base64
    import uuid

    base = Path(tempfile.mkdtemp(prefix="hemmon-test-kafka-"))
    port, controller = free_port(), free_port()
    (base / "server.properties").write_text(
        _KRAFT.format(port=port, controller=controller, data=base / "data"))
    (base / "log4j.properties").write_text(_LOG4J)
    cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    command = [java, f"-Dlog4j.configuration=file:{base / 'log4j.properties'}", "-Xmx512m",
               "-cp", f"{KAFKA / 'lib'}/*"]
    # "=" form: a random id may start with "-", which would read as an option
    subprocess.run([*command, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}",
                    "-c", str(base / "server.properties")], check=True, capture_output=True)
    server = Kafka(port, [*command, "kafka.Kafka", str(base / "server.properties")])
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
