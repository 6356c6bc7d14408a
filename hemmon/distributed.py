"""The distributed runner: the same core as the embedded runner, in faust-streaming agents.

Three stages, each an agent over a Kafka topic, each calling one stage of `Pipeline`:

- `hemmon.raw`, keyed by device -> worker agent `ingest`: normalise; store readings,
  rejections and device state; produce `hemmon.readings` and the dead-letter topic
  `hemmon.rejected`;
- `hemmon.readings`, keyed by patient bucket -> worker agent `evaluate`: the patients'
  rules; produce `hemmon.findings`; feedback to the device over MQTT;
- `hemmon.findings`, keyed by patient bucket -> alert service agent `alert`: keep
  findings, open or update alerts, queue pages.

A patient bucket (`bucket()`) is a stable hash of the patient id: one record carries a
batch's messages for many patients, and each patient's records stay in order on one
partition.

(`hemmon.raw` is HEMMON_KAFKA_TOPIC; the others take its stem.) Every stage is
at-least-once: an agent takes a batch, does its work, waits until Kafka has what it
produced, and only then moves on, which acknowledges the batch (faust commits offsets of
acknowledged events). After a crash the batch comes again, and the idempotent sinks make
that harmless: readings and rejections have unique keys, findings have unique keys and
only a finding not kept before opens or updates an alert. The evaluate stage writes
nothing, so re-running it is free.

Rule state is each worker's in-memory series of the patients whose buckets it holds
(`core.SeriesState`), read from the database when it first sees a patient and dropped when
its partitions change, not faust tables: the rules look back up to days, the database has
that history already, and a rebalance then moves no state over Kafka. Partitioning by
patient keeps one patient's readings in order on one worker. Database calls are blocking
(psycopg), so each agent runs them on its own thread with its own connection and retries
while the database is away; the agent holds its batch meanwhile, and nothing is
acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import faust
import psycopg

from hemmon.alerts.feedback import feedback_for
from hemmon.ingest.bridge import open_envelope
from hemmon.ingest.model import Normalised, Reading, Rejection, RejectReason
from hemmon.ingest.mqtt import MqttSource
from hemmon.ingest.storage import store_rejections
from hemmon.ingest.topics import feedback_topic
from hemmon.rules.engine import Clear
from hemmon.rules.evaluate import Finding
from hemmon.rules.storage import store_held

from . import core, metrics
from .core import Evaluation, Message
from .db import DatabaseUnavailable, connect_with_schema
from .pipeline import STOCKHOLM, Clock, Pipeline, Stored, count_alerts, count_ingested, utc_now
from .roster import RosterSnapshot

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Topics:
    """The Kafka topic names and consumer groups, all from HEMMON_KAFKA_TOPIC's stem."""

    raw: str

    @property
    def stem(self) -> str:
        return self.raw.removesuffix(".raw")

    @property
    def readings(self) -> str:
        return f"{self.stem}.readings"

    @property
    def findings(self) -> str:
        return f"{self.stem}.findings"

    @property
    def rejected(self) -> str:
        return f"{self.stem}.rejected"

    @property
    def worker_group(self) -> str:
        return f"{self.stem}-worker"

    @property
    def alerts_group(self) -> str:
        return f"{self.stem}-alerts"


# -- records between the stages (JSON; pure) ------------------------------------------

def bucket(patient_id: str, buckets: int) -> bytes:
    """The Kafka key of a patient's records after the raw topic: a stable hash bucket, so
    that one record carries a batch's messages of many patients (a faust event costs more
    than a reading) while each patient's records stay in order on one partition."""
    return f"b{zlib.crc32(patient_id.encode()) % buckets}".encode()


def readings_record(messages: Sequence[tuple[str, Normalised]]) -> bytes:
    """Device messages' readings (device id, the message's readings), for the evaluate
    stage."""
    return json.dumps({"messages": [
        {"device_id": device_id, "key": normalised.key,
         "readings": [r.model_dump(mode="json") for r in normalised.readings]}
        for device_id, normalised in messages
    ]}).encode()


def open_readings_record(value: bytes) -> list[tuple[str, Normalised]]:
    """(device id, the message's readings as a Normalised) for each message in a record."""
    return [
        (str(m["device_id"]), Normalised(
            readings=tuple(Reading.model_validate(r) for r in m["readings"]), key=m["key"]))
        for m in json.loads(value)["messages"]
    ]


def findings_record(evaluation: Evaluation) -> bytes:
    """Findings and ended excursions, for the alert stage."""
    return json.dumps({
        "findings": [f.model_dump(mode="json") for f in evaluation.findings],
        "clears": [{"patient_id": p, "rule_key": c.rule_key,
                    "measured_at": c.measured_at.isoformat()} for p, c in evaluation.clears],
        "received": {k: v.isoformat() for k, v in evaluation.received.items()},
    }).encode()


def open_findings_records(values: Iterable[bytes]) -> Evaluation:
    """The findings records of a batch, merged into one Evaluation."""
    merged = Evaluation(findings=[], clears=[], received={})
    for value in values:
        data = json.loads(value)
        merged.findings.extend(Finding.model_validate(f) for f in data["findings"])
        merged.clears.extend(
            (c["patient_id"], Clear(c["rule_key"], datetime.fromisoformat(c["measured_at"])))
            for c in data["clears"])
        merged.received.update({k: datetime.fromisoformat(v)
                                for k, v in data["received"].items()})
    return merged


def split_by_bucket(evaluation: Evaluation, buckets: int) -> dict[bytes, Evaluation]:
    """One Evaluation per patient bucket (each is produced under its bucket's key)."""
    out: dict[bytes, Evaluation] = {}

    def own(patient: str) -> Evaluation:
        return out.setdefault(bucket(patient, buckets),
                              Evaluation(findings=[], clears=[], received={}))

    for finding in evaluation.findings:
        part = own(finding.patient_id)
        part.findings.append(finding)
        if (arrived := evaluation.received.get(finding.reading_key)) is not None:
            part.received[finding.reading_key] = arrived
    for patient, clear in evaluation.clears:
        own(patient).clears.append((patient, clear))
    return out


def dead_letter_record(rejection: Rejection) -> bytes:
    """A rejection for the dead-letter topic: its reason and the message's bytes."""
    return json.dumps({
        "reason": rejection.reason.value, "detail": rejection.detail, "topic": rejection.topic,
        "received_at": rejection.received_at.isoformat(),
        "payload": base64.b64encode(rejection.raw).decode(),
    }).encode()


# -- the blocking side: one pipeline on one thread --------------------------------------

class StageRunner:
    """A Pipeline on its own connection and thread; `run` retries while the database is
    away (the agent holds its batch meanwhile, so nothing is acknowledged)."""

    def __init__(self, name: str, database_url: str, *, clock: Clock = utc_now,
                 escalate_after: timedelta = timedelta(minutes=30),
                 zone: ZoneInfo = STOCKHOLM) -> None:
        self._zone = zone
        self.name = name
        self._database_url = database_url
        self._clock = clock
        self._escalate_after = escalate_after
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"hemmon-{name}")
        self._conn: psycopg.Connection[Any] | None = None
        self._pipeline: Pipeline | None = None
        self.stopping = threading.Event()
        self.retrying = False
        """True while a call waits for the database to come back."""

    def open(self) -> None:
        """Connect now (in the caller's thread): a bad setting stops the program at start."""
        self._executor.submit(self._open).result()

    def _open(self) -> None:
        conn = connect_with_schema(self._database_url)
        self._conn = conn
        self._pipeline = Pipeline(conn, clock=self._clock, escalate_after=self._escalate_after,
                                  zone=self._zone)

    def _call(self, work: Callable[[Pipeline], T]) -> T:
        delay = 0.5
        while True:
            try:
                if self._pipeline is None:
                    self._open()
                assert self._pipeline is not None
                result = work(self._pipeline)
                self.retrying = False
                return result
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                if self.stopping.is_set():
                    raise
                self.retrying = True
                log.error("%s: database unavailable, batch kept for retry: %s", self.name, exc)
                if self._conn is not None:
                    self._conn.close()
                self._conn = self._pipeline = None
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)

    async def run(self, work: Callable[[Pipeline], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)

    def close(self) -> None:
        self.stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._conn is not None:
            self._conn.close()


# -- the faust apps ------------------------------------------------------------------

@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str
    topics: Topics
    partitions: int = 12
    batch_max: int = 500
    batch_wait_ms: int = 20


def _app(group: str, kafka: KafkaConfig) -> faust.App:
    return faust.App(
        group, broker=f"kafka://{kafka.bootstrap}", value_serializer="raw",
        key_serializer="raw", web_enabled=False, store="memory://",
        topic_partitions=kafka.partitions, consumer_auto_offset_reset="earliest",
        # a worker that dies is noticed in seconds, not the default minute
        broker_session_timeout=10, broker_heartbeat_interval=1, broker_rebalance_timeout=10,
        broker_commit_interval=1.0, producer_acks=-1,
    )


async def _send_all(sends: Sequence[Callable[[], Awaitable[Any]]]) -> None:
    """Produce every record, then wait until Kafka has them all; the ones it did not take
    are sent again (with a growing pause) until it does."""
    pending = list(sends)
    delay = 0.5
    while pending:
        queued: list[tuple[Callable[[], Awaitable[Any]], Any]] = []
        failed: list[Callable[[], Awaitable[Any]]] = []
        for send in pending:
            try:
                queued.append((send, await send()))
            except Exception as exc:
                log.error("Kafka did not take a record (%s); retrying", exc)
                failed.append(send)
        outcomes = await asyncio.gather(*(future for _, future in queued),
                                        return_exceptions=True)
        for (send, _), result in zip(queued, outcomes, strict=True):
            if isinstance(result, BaseException):
                log.error("Kafka did not take a record (%s); retrying", result)
                failed.append(send)
        if failed:  # not acknowledged upstream: kept, and retried here
            metrics.KAFKA_SEND_FAILURES.inc(len(failed))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        pending = failed


class Watchdog:
    """Progress of a role's agents, and what to do when it stops.

    faust does not always resume fetching after the Kafka broker was away: the consumer
    keeps its partitions, no rebalance comes, and nothing more is read (seen here after
    a broker restart; faust-streaming/faust#523). So every few seconds the watchdog asks
    the broker for each partition's end and sets the lag gauge; when records wait, no
    agent has taken a batch for `stall_seconds` and no stage is waiting for the database,
    it stops the process (exit code 3) for its supervisor to restart it. At-least-once
    delivery and the idempotent sinks make that restart safe.
    """

    def __init__(self, role: str, stages: Sequence[StageRunner], stall_seconds: float) -> None:
        self.role = role
        self.stages = stages
        self.stall_seconds = stall_seconds
        self.last_progress = time.monotonic()
        self.stalled = False

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    def watch(self, app: faust.App, topics: Sequence[str]) -> None:
        async def check() -> None:
            consumer: Any = app.consumer
            assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
            try:
                ends = await consumer.highwaters(*assigned) if assigned else {}
            except Exception as exc:  # Kafka away: nothing to measure now
                log.warning("%s: partition ends not known (%s)", self.role, exc)
                return
            totals: dict[str, int] = {}
            for tp in assigned:
                committed = consumer._committed_offset.get(tp)  # faust has no public getter
                behind = ends.get(tp, 0) - (committed + 1 if committed is not None else 0)
                totals[tp.topic] = totals.get(tp.topic, 0) + max(0, behind)
            for name in topics:
                stage = name.rsplit(".", 1)[-1]  # raw, readings, findings: a fixed list
                metrics.KAFKA_LAG.labels(self.role, stage).set(totals.get(name, 0))
            idle = time.monotonic() - self.last_progress
            waiting = sum(totals.values())
            if (waiting and idle > self.stall_seconds
                    and not any(stage.retrying for stage in self.stages)):
                log.error("%s: %d records wait and nothing was taken for %.0f s;"
                          " stopping for a restart (faust-streaming/faust#523)",
                          self.role, waiting, idle)
                self.stalled = True
                os.kill(os.getpid(), signal.SIGTERM)

        app.timer(5.0)(check)


def worker_app(kafka: KafkaConfig, stages: tuple[StageRunner, StageRunner],
               feedback: MqttSource | None, watchdog: Watchdog,
               clock: Clock = utc_now) -> faust.App:
    """`hemmon worker`: the ingest agent (by device) and the evaluate agent (by patient)."""
    app = _app(kafka.topics.worker_group, kafka)
    # the worker declares every topic it reads, the raw one too: a consumer that starts
    # before its topic exists is not assigned it until a metadata refresh (minutes)
    raw = app.topic(kafka.topics.raw, key_type=bytes, value_type=bytes,
                    partitions=kafka.partitions, internal=True)
    readings = app.topic(kafka.topics.readings, key_type=bytes, value_type=bytes,
                         partitions=kafka.partitions, internal=True)
    findings = app.topic(kafka.topics.findings, key_type=bytes, value_type=bytes,
                         partitions=kafka.partitions, internal=True)
    rejected = app.topic(kafka.topics.rejected, key_type=bytes, value_type=bytes,
                         partitions=kafka.partitions, internal=True)
    ingest_stage, evaluate_stage = stages
    wait = kafka.batch_wait_ms / 1000 or 0.001

    def publish(device_id: str, payload: bytes) -> None:
        if feedback is None:
            return
        try:
            feedback.publish(feedback_topic(device_id), payload)
        except Exception:  # feedback is a courtesy; the reading is already stored
            log.exception("feedback could not be published")

    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(kafka.batch_max, within=wait):
            watchdog.progress()
            messages = []
            for value in values:
                try:
                    topic, payload, received_at = open_envelope(value)
                except (ValueError, KeyError, TypeError) as exc:
                    # not from a bridge: keep it as a rejection like any bad input
                    topic, payload, received_at = "kafka/unreadable", value, clock()
                    log.warning("unreadable record on the raw topic (%s)", exc)
                messages.append(Message(topic, payload, received_at))
            done = await ingest_stage.run(partial(_ingest, messages=messages))
            by_bucket: dict[bytes, list[tuple[str, Normalised]]] = defaultdict(list)
            for patient, device, normalised in done.forward:
                by_bucket[bucket(patient, kafka.partitions)].append((device, normalised))
            await _send_all(
                [partial(readings.send, key=key, value=readings_record(part))
                 for key, part in by_bucket.items()]
                + [partial(rejected.send, key=(j.device_id or j.topic).encode(),
                           value=dead_letter_record(j)) for j in done.rejections])
            metrics.KAFKA_RECORDS.labels("worker", "raw").inc(len(values))
            for device, payload in done.replies:
                publish(device, payload)

    assigned: frozenset[Any] = frozenset()

    async def evaluate(stream: faust.StreamT[bytes]) -> None:
        nonlocal assigned
        async for values in stream.take(kafka.batch_max, within=wait):
            watchdog.progress()
            now_assigned = frozenset(app.consumer.assignment())
            if now_assigned != assigned:
                # partitions moved: the series held may be another worker's now, and ours
                # may have changed meanwhile; the database is the truth, read it again
                await evaluate_stage.run(_forget_series)
                assigned = now_assigned
            opened = [message for v in values for message in open_readings_record(v)]
            batch = [r for _, n in opened for r in n.readings]
            evaluation = await evaluate_stage.run(partial(_evaluate, readings=batch))
            await _send_all([
                partial(findings.send, key=key, value=findings_record(part))
                for key, part in split_by_bucket(evaluation, kafka.partitions).items()
            ])
            metrics.KAFKA_RECORDS.labels("worker", "readings").inc(len(values))
            by_reading = evaluation.by_reading()
            held = evaluation.held()
            for device, normalised in opened:
                if (reply := core.message_feedback(normalised, by_reading, held)) is not None:
                    publish(device, reply.payload())

    app.agent(raw, name="hemmon.ingest")(ingest)
    app.agent(readings, name="hemmon.evaluate")(evaluate)
    watchdog.watch(app, (kafka.topics.raw, kafka.topics.readings))
    return app


@dataclass(frozen=True, slots=True)
class IngestDone:
    forward: list[tuple[str, str, Normalised]]
    """(patient, device, readings) of each message that gave readings."""
    rejections: list[Rejection]
    """Every rejection of the batch, new or kept before (the dead-letter topic is
    at-least-once; the table, with unique keys, is the record)."""
    replies: list[tuple[str, bytes]]
    """(device, feedback) for messages that gave no readings (rejected)."""


def _ingest(pipeline: Pipeline, messages: list[Message]) -> IngestDone:
    snap = pipeline.snapshot()
    ingested = core.ingest(snap, messages)
    try:
        with pipeline.connection.transaction():
            stored = pipeline.store(ingested)
    except psycopg.OperationalError:
        raise  # the database is away: the whole batch is retried
    except Exception:
        # a message the database or a bug refuses: the rest go through, it is kept
        log.exception("a batch of %d failed; storing message by message", len(messages))
        ingested, stored = _store_one_by_one(pipeline, snap, messages)
    count_ingested(snap, ingested, stored, pipeline.now())
    forward = []
    replies = []
    for message, normalised in ingested.results:
        parsed = ingested.topics.get(message.topic)
        if normalised.readings:
            first = normalised.readings[0]
            forward.append((first.patient_id, first.device_id, normalised))
        elif parsed is not None and (reply := feedback_for(normalised, ())) is not None:
            replies.append((parsed.device_id, reply.payload()))
    return IngestDone(forward=forward, rejections=stored.rejections, replies=replies)


def _store_one_by_one(pipeline: Pipeline, snap: RosterSnapshot, messages: list[Message]
                      ) -> tuple[core.Ingested, Stored]:
    """`Pipeline.store`, one message per transaction (the fallback when a batch fails): a
    message the database or a bug refuses is kept as a rejection."""
    merged = core.Ingested(results=[], topics={}, statuses=[], seen={}, batteries={})
    new: set[Any] = set()
    rejections: list[Rejection] = []
    new_rejections: list[Rejection] = []
    for message in messages:
        part = core.ingest(snap, [message])
        try:
            with pipeline.connection.transaction():
                stored = pipeline.store(part)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            rejections.append(pipeline.keep_unprocessable(message, exc))
            continue
        merged.results.extend(part.results)
        merged.topics.update(part.topics)
        new |= stored.new
        rejections.extend(stored.rejections)
        new_rejections.extend(stored.new_rejections)
    return merged, Stored(new=new, rejections=rejections, new_rejections=new_rejections)


def _evaluate(pipeline: Pipeline, readings: list[Reading]) -> Evaluation:
    snap = pipeline.snapshot()
    with pipeline.connection.transaction():
        evaluation = pipeline.evaluate(snap, readings)
        store_held(pipeline.connection, evaluation.pending)
        if evaluation.failed:
            _keep_failed(pipeline, readings, evaluation)
    pipeline.state.add(readings)
    pipeline.trim()
    metrics.READINGS_EVALUATED.inc(len(readings))
    return evaluation


def _keep_failed(pipeline: Pipeline, readings: list[Reading], evaluation: Evaluation) -> None:
    """The readings of patients a bug stopped are stored already (by the ingest stage);
    their record is kept as an internal_error rejection, the bug logged and counted."""
    now = pipeline.now()
    for patient, bug in evaluation.failed.items():
        log.error("evaluating a patient's readings failed: a bug in hemmon", exc_info=bug)
        metrics.INTERNAL_ERRORS.labels("rules").inc()
        own = [r for r in readings if r.patient_id == patient]
        raw = json.dumps([r.model_dump(mode="json") for r in own]).encode()
        store_rejections(pipeline.connection, [Rejection(
            reason=RejectReason.INTERNAL_ERROR, topic="kafka/readings", raw=raw,
            received_at=now, patient_id=patient,
            detail=f"a bug in hemmon (rules: {type(bug).__name__}); readings kept")])


def _alert(pipeline: Pipeline, evaluation: Evaluation) -> int:
    snap = pipeline.snapshot()
    now = pipeline.now()
    with pipeline.connection.transaction():
        changes = pipeline.alert(snap, evaluation, now)
    count_alerts(changes, evaluation.received, pipeline.now())
    return len(changes)


def _forget_series(pipeline: Pipeline) -> None:
    pipeline.state.forget()


def alerts_app(kafka: KafkaConfig, stage: StageRunner, sweeper: StageRunner,
               watchdog: Watchdog, sweep_seconds: float = 60.0) -> faust.App:
    """`hemmon alerts`: the alert lifecycle over the findings topic, and the time-driven
    sweeps (silent devices, missed measurements, escalations) on the group's leader only."""
    app = _app(kafka.topics.alerts_group, kafka)
    findings = app.topic(kafka.topics.findings, key_type=bytes, value_type=bytes,
                         partitions=kafka.partitions, internal=True)
    wait = kafka.batch_wait_ms / 1000 or 0.001

    async def alert(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(kafka.batch_max, within=wait):
            watchdog.progress()
            evaluation = open_findings_records(values)
            await stage.run(partial(_alert, evaluation=evaluation))
            metrics.KAFKA_RECORDS.labels("alerts", "findings").inc(len(values))

    app.agent(findings, name="hemmon.alert")(alert)

    async def sweep() -> None:
        try:
            await sweeper.run(Pipeline.sweep)
        except Exception:
            log.exception("sweep failed")

    app.timer(sweep_seconds, on_leader=True)(sweep)

    watchdog.watch(app, (kafka.topics.findings,))
    return app
