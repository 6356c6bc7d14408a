"""The embedded runner: MQTT -> core -> PostgreSQL -> alerts, in one process.

A thread drains the MQTT queue in batches (up to `batch_max` messages or `batch_wait_ms`),
runs each through the pipeline in one transaction, then acknowledges the messages and
publishes the feedback. A database error keeps the batch and retries it with a new
connection; nothing is acknowledged that was not committed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from paho.mqtt.enums import MQTTProtocolVersion

from hemmon.ingest.mqtt import Incoming, MqttSource
from hemmon.ingest.topics import feedback_topic

from . import metrics
from .core import Message, SeriesState
from .db import DatabaseUnavailable, connect_with_schema
from .errors import Unavailable
from .pipeline import STOCKHOLM, Clock, Pipeline, utc_now
from .settings import MqttAddress, SettingsError

log = logging.getLogger(__name__)


class EmbeddedRunner:
    """The pipeline thread and its MQTT client; `start()` fails fast on bad settings."""

    def __init__(
        self,
        database_url: str,
        mqtt: MqttAddress,
        *,
        batch_max: int = 500,
        batch_wait_ms: int = 20,
        client_id: str = "hemmon-embedded",
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        clock: Clock = utc_now,
        sweep_seconds: float = 60.0,
        escalate_after: timedelta = timedelta(minutes=30),
        zone: ZoneInfo = STOCKHOLM,
    ) -> None:
        self._zone = zone
        self._state = SeriesState()
        """The series of the patients this runner owns: kept across database reconnects."""
        self._database_url = database_url
        self._escalate_after = escalate_after
        self._sweep_seconds = sweep_seconds
        self._last_sweep = 0.0
        self._batch_max = batch_max
        self._batch_wait = batch_wait_ms / 1000
        self._clock = clock
        self.source = MqttSource(mqtt, client_id=client_id, protocol=protocol,
                                 receive_maximum=max(2 * batch_max, 100), clock=clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hemmon-pipeline", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None
        self._pipeline: Pipeline | None = None

    def start(self) -> None:
        self._open_database()
        self.source.start()
        self._thread.start()

    def _open_database(self) -> None:
        conn = connect_with_schema(self._database_url)
        self._conn = conn
        self._pipeline = Pipeline(conn, clock=self._clock, escalate_after=self._escalate_after,
                                  zone=self._zone, state=self._state)

    @property
    def ready(self) -> bool:
        return self.source.connected and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.source.stop()
        metrics.MQTT_CONNECTED.set(0)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # read from the client itself, so that a lost connection shows while it lasts
            metrics.MQTT_CONNECTED.set(1 if self.source.connected else 0)
            batch = self.source.take(self._batch_max, self._batch_wait)
            if batch:
                self._process(batch)
            if time.monotonic() - self._last_sweep >= self._sweep_seconds:
                self._sweep()

    def _sweep(self) -> None:
        self._last_sweep = time.monotonic()
        try:
            assert self._pipeline is not None
            self._pipeline.sweep()
        except psycopg.OperationalError as exc:
            log.error("device sweep skipped, database unavailable: %s", exc)
            self._reconnect()
        except Exception:
            log.exception("device sweep failed")

    def _process(self, batch: list[Incoming]) -> None:
        messages = [Message(m.topic, m.payload, m.received_at, m) for m in batch]
        delay = 0.5
        isolate = False
        while not self._stop.is_set():
            try:
                assert self._pipeline is not None
                if isolate:
                    replies = self._pipeline.process_isolating(messages)
                else:
                    replies = self._pipeline.process(messages)
                break
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                log.error("database unavailable, batch of %d kept for retry: %s",
                          len(batch), exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                self._reconnect()
            except Exception:
                # not acknowledged, so not lost: retried one message at a time, so that a
                # single bad message is kept as a rejection and the rest go through
                log.exception("batch of %d failed; retrying message by message", len(batch))
                isolate = True
        else:
            return  # stopping: not acknowledged, so the broker delivers them again
        for m in batch:
            self.source.ack(m)
        for reply in replies:
            try:
                self.source.publish(feedback_topic(reply.device_id), reply.feedback.payload())
            except Exception:  # feedback is a courtesy; the reading is already stored
                log.exception("feedback could not be published")

    def _reconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
        try:
            self._open_database()
        except (SettingsError, Unavailable) as exc:
            log.error("%s", exc)
