"""The single-process service: the embedded runner plus the inbox over HTTP."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from paho.mqtt.enums import MQTTProtocolVersion

from hemmon.alerts.fhir_export import FhirSystems
from hemmon.alerts.inbox import create_app
from hemmon.alerts.notify import WebhookNotifier
from hemmon.alerts.signin import AuthConfig

from .db import open_pool
from .notifier import Journal, NotifierThread
from .pipeline import STOCKHOLM, Clock, replay_rejection, utc_now
from .runner import EmbeddedRunner
from .settings import MqttAddress, SettingsError

log = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    database_url: str
    mqtt: MqttAddress
    secret_key: str
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    batch_max: int = 500
    batch_wait_ms: int = 20
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5
    client_id: str = "hemmon-embedded"
    clock: Clock = field(default=utc_now)
    http_clock: Clock | None = None
    """The inbox's clock (sign-in, a nurse's actions) when it is not the pipeline's: the
    demo replays two weeks on a compressed clock, but sessions last in real time."""
    sweep_seconds: float = 60.0
    escalate_after: timedelta = timedelta(minutes=30)
    pipelines: int = 0
    """Pipeline processes (0: the pipeline runs in this process, as tests with a clock
    need)."""
    log_level: str = "INFO"
    zone: ZoneInfo = STOCKHOLM
    """HEMMON_TIMEZONE: office hours, care-plan deadlines and local times in texts."""
    webhook: tuple[str, str] | None = None
    """(url, secret) of the pager/SMS gateway's webhook; None: pages wait in the outbox."""
    auth: AuthConfig | None = None
    """Sign-in (identity provider, sessions); None: service tokens and codes, plain cookies."""
    journal: Journal | None = None
    """The region's FHIR journal, fed with the alerts' history; None: not connected."""
    fhir_system: str = "urn:hemmon"
    """The base of the region's identifier systems in what hemmon exports (FHIR)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Until something listens on 127.0.0.1:port; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def run_server(server: uvicorn.Server, on_started: Callable[[], None] | None) -> None:
    """Run uvicorn in this thread until SIGINT/SIGTERM, calling `on_started` once it
    listens (to print an address only when it is true)."""
    if on_started is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            on_started()

        server.startup = startup  # type: ignore[method-assign]
    server.run()


def check_port_free(host: str, port: int) -> None:
    """Fail at start, naming the setting, when the HTTP port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SettingsError(
                f"setting HEMMON_HTTP_PORT has value {port}: {host}:{port} is in use ({exc})"
            ) from exc


class Service:
    """Start with `start()`, serve with `serve()` (blocks until Ctrl-C), then `stop()`."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.runner = EmbeddedRunner(
            config.database_url, config.mqtt, batch_max=config.batch_max,
            batch_wait_ms=config.batch_wait_ms, protocol=config.protocol,
            client_id=config.client_id, clock=config.clock, sweep_seconds=config.sweep_seconds,
            escalate_after=config.escalate_after, zone=config.zone,
            pipelines=config.pipelines, log_level=config.log_level,
        )
        self.notifier: NotifierThread | None = None
        if config.webhook is not None or config.journal is not None:
            pager = WebhookNotifier(*config.webhook) if config.webhook else None
            self.notifier = NotifierThread(config.database_url, pager, config.clock,
                                           journal=config.journal)
        self._pool: Any = None
        self.server: uvicorn.Server | None = None

    def start(self) -> None:
        check_port_free(self.config.http_host, self.config.http_port)
        self.runner.start()
        try:
            self._pool = open_pool(self.config.database_url)
        except Exception:
            self.runner.stop()
            raise
        pool = self._pool

        def replay(rejection_id: int) -> dict[str, Any]:
            with pool.connection() as conn:
                return replay_rejection(conn, rejection_id, self.config.clock)

        app = create_app(pool, secret_key=self.config.secret_key,
                         clock=self.config.http_clock or self.config.clock,
                         ready=lambda: self.runner.ready, replay=replay,
                         auth=self.config.auth, zone=self.config.zone,
                         fhir_systems=FhirSystems(self.config.fhir_system))
        if self.notifier is not None:
            self.notifier.start()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=self.config.http_host, port=self.config.http_port,
                           log_level="warning", access_log=False)
        )

    def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve HTTP in this thread until SIGINT/SIGTERM."""
        assert self.server is not None
        run_server(self.server, on_started)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.runner.stop()
        if self.notifier is not None:
            self.notifier.stopped.set()
            self.notifier.join(10)
        if self._pool is not None:
            self._pool.close()


def role_app(ready: Callable[[], bool]) -> Any:
    """Health, readiness and metrics for a role without the inbox (bridge, worker)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ok = ready()
        return JSONResponse({"status": "ready" if ok else "not_ready"},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve_role(ready: Callable[[], bool], host: str, port: int,
               on_started: Callable[[], None] | None = None) -> None:
    """Serve a role's health and metrics until SIGINT/SIGTERM."""
    check_port_free(host, port)
    run_server(uvicorn.Server(uvicorn.Config(role_app(ready), host=host, port=port,
                                             log_level="warning", access_log=False)),
               on_started)
