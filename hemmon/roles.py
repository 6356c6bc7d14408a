"""`hemmon worker` and `hemmon alerts`: the faust apps with their HTTP side and clean-up.

faust's Worker owns the main thread, its event loop and the signals (SIGINT/SIGTERM stop
it cleanly); `/healthz`, `/readyz` and `/metrics` (and for the alert service the inbox)
are served by uvicorn on a thread beside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import faust
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from hemmon.alerts.notify import WebhookNotifier
from hemmon.ingest.bridge import KafkaUnavailable
from hemmon.ingest.mqtt import MqttSource

from .db import open_pool
from .distributed import KafkaConfig, StageRunner, Topics, Watchdog, alerts_app, worker_app
from .notifier import NotifierThread
from .pipeline import replay_rejection, utc_now
from .service import check_port_free, role_app
from .settings import Settings, mqtt_address

log = logging.getLogger(__name__)
STALLED = 3
"""Exit code of a role its watchdog stopped: restart it."""


def kafka_config(settings: Settings) -> KafkaConfig:
    return KafkaConfig(bootstrap=settings.kafka_bootstrap, topics=Topics(settings.kafka_topic),
                       partitions=settings.kafka_partitions, batch_max=settings.batch_max,
                       batch_wait_ms=settings.batch_wait_ms)


def check_kafka(bootstrap: str) -> None:
    """Fail at start, naming the setting, when Kafka cannot be reached (faust would retry
    for ever and never say why)."""
    import asyncio

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
        finally:
            await admin.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 20))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at HEMMON_KAFKA_BOOTSTRAP ({bootstrap}): {exc}") from exc


def _http_thread(app: Any, settings: Settings) -> uvicorn.Server:
    check_port_free(settings.http_host, settings.http_port)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.http_host,
                                           port=settings.http_port, log_level="warning",
                                           access_log=False))
    threading.Thread(target=server.run, name="hemmon-http", daemon=True).start()
    return server


def _started(app: faust.App) -> Callable[[], bool]:
    """True once the faust app has started and has its partitions."""
    flag = threading.Event()

    async def assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        flag.set()

    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]
    return flag.is_set


def _run_faust(app: faust.App, settings: Settings) -> None:
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), redirect_stdouts=False,
                          override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def run_worker(settings: Settings) -> int:
    kafka = kafka_config(settings)
    check_kafka(kafka.bootstrap)
    url = settings.require_database_url()
    stages = (StageRunner("ingest", url, zone=settings.zone),
              StageRunner("evaluate", url, zone=settings.zone))
    feedback = MqttSource(mqtt_address(settings.mqtt_url), client_id=settings.worker_client_id,
                          subscriptions=())
    server = None
    try:
        for stage in stages:
            stage.open()
        feedback.start()
        watchdog = Watchdog("worker", stages, settings.stall_seconds)
        app = worker_app(kafka, stages, feedback, watchdog)
        started = _started(app)
        server = _http_thread(role_app(lambda: started() and feedback.connected), settings)
        log.info("hemmon worker running: Kafka %s -> readings, findings", kafka.topics.raw)
        _run_faust(app, settings)
    finally:
        if server is not None:
            server.should_exit = True
        feedback.stop()
        for stage in stages:
            stage.close()
    return STALLED if watchdog.stalled else 0


def run_alerts(settings: Settings) -> int:
    kafka = kafka_config(settings)
    check_kafka(kafka.bootstrap)
    url = settings.require_database_url()
    secret = settings.require_secret_key()
    escalate_after = timedelta(minutes=settings.escalate_after_minutes)
    stage = StageRunner("alert", url, escalate_after=escalate_after, zone=settings.zone)
    sweeper = StageRunner("sweep", url, escalate_after=escalate_after, zone=settings.zone)
    notifier = None
    pool = None
    server = None
    try:
        stage.open()
        sweeper.open()
        pool = open_pool(url)
        if (webhook := settings.webhook()) is not None:
            notifier = NotifierThread(url, WebhookNotifier(*webhook), utc_now)
            notifier.start()
        watchdog = Watchdog("alerts", (stage,), settings.stall_seconds)
        app = alerts_app(kafka, stage, sweeper, watchdog, sweep_seconds=settings.sweep_seconds)
        started = _started(app)
        opened = pool

        def replay(rejection_id: int) -> dict[str, Any]:
            with opened.connection() as conn:
                return replay_rejection(conn, rejection_id, utc_now)

        from hemmon.alerts.inbox import create_app
        from hemmon.alerts.signin import auth_from_settings

        server = _http_thread(create_app(pool, secret_key=secret, clock=utc_now, ready=started,
                                         replay=replay, auth=auth_from_settings(settings),
                                         zone=settings.zone),
                              settings)
        log.info("hemmon alerts running: inbox on http://%s:%d/", settings.http_host,
                 settings.http_port)
        _run_faust(app, settings)
    finally:
        if server is not None:
            server.should_exit = True
        if notifier is not None:
            notifier.stopped.set()
            notifier.join(10)
        stage.close()
        sweeper.close()
        if pool is not None:
            pool.close()
    return STALLED if watchdog.stalled else 0
