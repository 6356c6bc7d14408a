"""The embedded runner: MQTT -> core -> PostgreSQL -> alerts, on one machine.

A thread drains the MQTT queue in batches (up to `batch_max` messages or `batch_wait_ms`).
With `pipelines=0` it runs each batch through the pipeline itself, in one transaction;
with `pipelines=N` it hands each batch's messages to N pipeline processes by patient
(hemmon/partitioned.py), so that the work uses the machine's cores. Either way a message
is acknowledged, and its feedback published, only after it is committed; a database error
keeps the batch and retries it with a new connection: nothing is acknowledged that was not
committed.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from paho.mqtt.enums import MQTTProtocolVersion

from hemmon.ingest.model import Device
from hemmon.ingest.mqtt import Incoming, MqttSource
from hemmon.ingest.topics import feedback_topic

from . import metrics
from .core import Message, Reply, SeriesState
from .db import DatabaseUnavailable, connect_with_schema
from .errors import Unavailable
from .partitioned import ChildSettings, PipelinePool, owner
from .pipeline import STOCKHOLM, Clock, Pipeline, utc_now
from .settings import MqttAddress, SettingsError

log = logging.getLogger(__name__)


class BatchWorker:
    """A pipeline on its own connection; `process` retries while the database is away and
    falls back to one message per transaction when a batch fails for another reason."""

    def __init__(self, database_url: str, *, clock: Clock = utc_now,
                 escalate_after: timedelta = timedelta(minutes=30),
                 zone: ZoneInfo = STOCKHOLM, stop: threading.Event | None = None) -> None:
        self._database_url = database_url
        self._clock = clock
        self._escalate_after = escalate_after
        self._zone = zone
        self._stop = stop or threading.Event()
        self._state = SeriesState()
        """The series of the patients this worker owns: kept across reconnects."""
        self._conn: psycopg.Connection[Any] | None = None
        self.pipeline: Pipeline | None = None

    def open(self) -> None:
        """Connect now: a bad setting stops the program at start."""
        conn = connect_with_schema(self._database_url)
        self._conn = conn
        self.pipeline = Pipeline(conn, clock=self._clock, escalate_after=self._escalate_after,
                                 zone=self._zone, state=self._state)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def process(self, messages: list[Message]) -> list[Reply] | None:
        """The batch committed and its feedback; None when stopping first (nothing of it
        is acknowledged then, so the broker delivers it again)."""
        delay = 0.5
        isolate = False
        while not self._stop.is_set():
            try:
                if self.pipeline is None:
                    self.open()
                assert self.pipeline is not None
                if isolate:
                    return self.pipeline.process_isolating(messages)
                return self.pipeline.process(messages)
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                log.error("database unavailable, batch of %d kept for retry: %s",
                          len(messages), exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                self.reconnect()
            except Exception:
                # not acknowledged, so not lost: retried one message at a time, so that a
                # single message the database refuses is kept and the rest go through
                log.exception("batch of %d failed; retrying message by message",
                              len(messages))
                isolate = True
        return None

    def sweep(self) -> None:
        try:
            if self.pipeline is None:
                self.open()
            assert self.pipeline is not None
            self.pipeline.sweep()
        except (psycopg.OperationalError, Unavailable) as exc:
            log.error("sweep skipped, database unavailable: %s", exc)
            self.reconnect()
        except Exception:
            log.exception("sweep failed")

    def reconnect(self) -> None:
        self.close()
        self._conn = self.pipeline = None
        try:
            self.open()
        except (SettingsError, Unavailable) as exc:
            log.error("%s", exc)


@dataclass
class _Batch:
    incoming: list[Incoming]
    parts: int
    replies: list[Reply] = field(default_factory=list)


class EmbeddedRunner:
    """The batching thread, its MQTT client and (optionally) the pipeline processes;
    `start()` fails fast on bad settings."""

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
        pipelines: int = 0,
        log_level: str = "INFO",
    ) -> None:
        self._sweep_seconds = sweep_seconds
        self._last_sweep = 0.0
        self._batch_max = batch_max
        self._batch_wait = batch_wait_ms / 1000
        self._stop = threading.Event()
        self.worker = BatchWorker(database_url, clock=clock, escalate_after=escalate_after,
                                  zone=zone, stop=self._stop)
        self.source = MqttSource(mqtt, client_id=client_id, protocol=protocol,
                                 receive_maximum=max(2 * batch_max, 100), clock=clock)
        self._thread = threading.Thread(target=self._run, name="hemmon-pipeline", daemon=True)
        self.pool: PipelinePool | None = None
        if pipelines:
            self.pool = PipelinePool(pipelines, ChildSettings(
                database_url, zone.key, escalate_after, log_level), self._part_done)
        self._devices: dict[str, Device] = {}
        self._batches: dict[int, _Batch] = {}
        self._parts: dict[int, int] = {}
        """part id -> batch id"""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # batches handed out and not committed yet: bounded, so a backlog waits in the
        # broker (which keeps it) rather than in this process's memory
        self._in_flight = threading.Semaphore(4 * max(pipelines, 1))

    def start(self) -> None:
        self.worker.open()
        if self.pool is not None:
            self.pool.start()
        self.source.start()
        self._thread.start()

    @property
    def ready(self) -> bool:
        pool_ok = self.pool is None or self.pool.alive
        return self.source.connected and self._thread.is_alive() and pool_ok

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.pool is not None:
            self.pool.stop(timeout)
        self.source.stop()
        metrics.MQTT_CONNECTED.set(0)
        self.worker.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # read from the client itself, so that a lost connection shows while it lasts
            metrics.MQTT_CONNECTED.set(1 if self.source.connected else 0)
            batch = self.source.take(self._batch_max, self._batch_wait)
            if batch:
                if self.pool is None:
                    self._process(batch)
                else:
                    self._hand_out(batch)
            if time.monotonic() - self._last_sweep >= self._sweep_seconds:
                self._last_sweep = time.monotonic()
                self.worker.sweep()

    def _process(self, batch: list[Incoming]) -> None:
        messages = [Message(m.topic, m.payload, m.received_at) for m in batch]
        replies = self.worker.process(messages)
        if replies is not None:
            self._finish(batch, replies)

    def _hand_out(self, batch: list[Incoming]) -> None:
        """Split a batch by owning pipeline process and send each part; the batch is
        acknowledged when the last part is committed (`_part_done`)."""
        assert self.pool is not None
        if self.worker.pipeline is not None:
            try:
                self._devices = self.worker.pipeline.snapshot().devices
            except psycopg.Error as exc:  # the roster as last read will do meanwhile
                log.warning("roster not read (%s); using the last one", type(exc).__name__)
        devices = self._devices
        parts: dict[int, list[Message]] = defaultdict(list)
        for m in batch:
            parts[owner(m.topic, devices, self.pool.count)].append(
                Message(m.topic, m.payload, m.received_at))
        while not self._in_flight.acquire(timeout=0.5):
            if self._stop.is_set():
                return  # not acknowledged: the broker delivers it again
        batch_id = next(self._ids)
        with self._lock:
            self._batches[batch_id] = _Batch(batch, len(parts))
            ids = {index: next(self._ids) for index in parts}
            self._parts.update({part: batch_id for part in ids.values()})
        for index, messages in parts.items():
            self.pool.submit(index, ids[index], messages)

    def _part_done(self, part_id: int, replies: list[Reply]) -> None:
        with self._lock:
            batch_id = self._parts.pop(part_id, None)
            if batch_id is None:
                return  # a part sent again after a restart, finished twice
            batch = self._batches[batch_id]
            batch.replies.extend(replies)
            batch.parts -= 1
            if batch.parts:
                return
            del self._batches[batch_id]
        self._in_flight.release()
        self._finish(batch.incoming, batch.replies)

    def _finish(self, batch: list[Incoming], replies: list[Reply]) -> None:
        for m in batch:
            self.source.ack(m)
        for reply in replies:
            try:
                self.source.publish(feedback_topic(reply.device_id), reply.feedback.payload())
            except Exception:  # feedback is a courtesy; the reading is already stored
                log.exception("feedback could not be published")
