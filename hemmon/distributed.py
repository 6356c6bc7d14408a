"""The distributed runner: the same core as the embedded runner, in faust-streaming agents.

Three stages, each an agent over a Kafka topic, each calling one stage of `Pipeline`:

- `hemmon.raw`, keyed by device -> worker agent `ingest`: normalise; store readings,
  rejections and device state; produce `hemmon.readings` (keyed by patient) and the
  dead-letter topic `hemmon.rejected`;
- `hemmon.readings`, keyed by patient -> worker agent `evaluate`: the patient's rules;
  produce `hemmon.findings`; feedback to the device over MQTT;
- `hemmon.findings`, keyed by patient -> alert service agent `alert`: keep findings, open
  or update alerts, queue pages.

(`hemmon.raw` is HEMMON_KAFKA_TOPIC; the others take its stem.) Every stage is
at-least-once: an agent takes a batch, does its work, waits until Kafka has what it
produced, and only then moves on, which acknowledges the batch (faust commits offsets of
acknowledged events). After a crash the batch comes again, and the idempotent sinks make
that harmless: readings and rejections have unique keys, findings have unique keys and
only a finding not kept before opens or updates an alert. The evaluate stage writes
nothing, so re-running it is free.

Rule state is the stored series in the database, read per batch (as in the embedded
runner), not faust tables: the rules look back up to days, the database has that history
already, and a rebalance then moves no state at all. Partitioning by patient keeps one
patient's readings in order on one worker. Database calls are blocking (psycopg), so each
agent runs them on its own thread with its own connection and retries while the database
is away; the agent holds its batch meanwhile, and nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import faust
import psycopg

from hemmon.alerts.feedback import feedback_for
from hemmon.ingest.bridge import open_envelope
from hemmon.ingest.model import Normalised, Reading, Rejection
from hemmon.ingest.mqtt import MqttSource
from hemmon.ingest.topics import feedback_topic
from hemmon.rules.engine import Clear
from hemmon.rules.evaluate import Finding

from . import metrics
from .db import DatabaseUnavailable, connect
from .pipeline import Clock, Evaluation, Message, Pipeline, reading_key, utc_now
from .settings import SettingsError

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

def readings_record(device_id: str, normalised: Normalised) -> bytes:
    """One device message's readings, for the evaluate stage (keyed by patient)."""
    return json.dumps({
        "device_id": device_id, "key": normalised.key,
        "readings": [r.model_dump(mode="json") for r in normalised.readings],
    }).encode()


def open_readings_record(value: bytes) -> tuple[str, Normalised]:
    """(device id, the message's readings as a Normalised) from a readings record."""
    data = json.loads(value)
    readings = tuple(Reading.model_validate(r) for r in data["readings"])
    return str(data["device_id"]), Normalised(readings=readings, key=data["key"])


def findings_record(evaluation: Evaluation) -> bytes:
    """A batch's findings and ended excursions for one patient, for the alert stage."""
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


def split_by_patient(evaluation: Evaluation) -> dict[str, Evaluation]:
    """One Evaluation per patient (each is produced under its patient's key)."""
    out: dict[str, Evaluation] = {}

    def own(patient: str) -> Evaluation:
        return out.setdefault(patient, Evaluation(findings=[], clears=[], received={}))

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
                 escalate_after: timedelta = timedelta(minutes=30)) -> None:
        self.name = name
        self._database_url = database_url
        self._clock = clock
        self._escalate_after = escalate_after
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"hemmon-{name}")
        self._conn: psycopg.Connection[Any] | None = None
        self._pipeline: Pipeline | None = None
        self.stopping = threading.Event()

    def open(self) -> None:
        """Connect now (in the caller's thread): a bad setting stops the program at start."""
        self._executor.submit(self._open).result()

    def _open(self) -> None:
        conn = connect(self._database_url)
        try:
            conn.execute("SELECT 1 FROM roster_revision")
            conn.commit()
        except psycopg.errors.UndefinedTable as exc:
            conn.close()
            raise SettingsError("the database at HEMMON_DATABASE_URL has no hemmon schema:"
                                " run `hemmon migrate`") from exc
        self._conn = conn
        self._pipeline = Pipeline(conn, clock=self._clock, escalate_after=self._escalate_after)

    def _call(self, work: Callable[[Pipeline], T]) -> T:
        delay = 0.5
        while True:
            try:
                if self._pipeline is None:
                    self._open()
                assert self._pipeline is not None
                return work(self._pipeline)
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                if self.stopping.is_set():
                    raise
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
    """Produce and wait until Kafka has every record, retrying while it is away."""
    delay = 0.5
    for send in sends:
        while True:
            try:
                await (await send())
                break
            except Exception as exc:  # not acknowledged upstream: kept, retried here
                metrics.KAFKA_SEND_FAILURES.inc()
                log.error("Kafka did not take a record (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _watch_lag(app: faust.App, role: str, topics: Sequence[str]) -> None:
    """Every few seconds: records on this member's partitions not yet committed."""

    async def lag() -> None:
        consumer: Any = app.consumer
        totals: dict[str, int] = {}
        for tp in consumer.assignment():
            committed = consumer._committed_offset.get(tp)  # faust has no public getter
            end = consumer.highwater(tp)
            if end is None:
                continue
            behind = end - (committed + 1 if committed is not None else 0)
            totals[tp.topic] = totals.get(tp.topic, 0) + max(0, behind)
        for name in topics:
            stage = name.rsplit(".", 1)[-1]  # raw, readings, findings: a fixed list
            metrics.KAFKA_LAG.labels(role, stage).set(totals.get(name, 0))

    app.timer(5.0)(lag)


def worker_app(kafka: KafkaConfig, stages: tuple[StageRunner, StageRunner],
               feedback: MqttSource | None, clock: Clock = utc_now) -> faust.App:
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
            await _send_all(
                [partial(readings.send, key=patient.encode(),
                         value=readings_record(device, normalised))
                 for patient, device, normalised in done.forward]
                + [partial(rejected.send, key=(j.device_id or j.topic).encode(),
                           value=dead_letter_record(j)) for j in done.rejections])
            metrics.KAFKA_RECORDS.labels("worker", "raw").inc(len(values))
            for device, payload in done.replies:
                publish(device, payload)

    async def evaluate(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(kafka.batch_max, within=wait):
            opened = [open_readings_record(v) for v in values]
            batch = [r for _, n in opened for r in n.readings]
            evaluation = await evaluate_stage.run(partial(_evaluate, readings=batch))
            await _send_all([
                partial(findings.send, key=patient.encode(), value=findings_record(part))
                for patient, part in split_by_patient(evaluation).items()
            ])
            metrics.KAFKA_RECORDS.labels("worker", "readings").inc(len(values))
            by_reading = evaluation.by_reading()
            for device, normalised in opened:
                own = [f for r in normalised.readings
                       for f in by_reading.get(reading_key(r), [])
                       if f.measured_at == r.measured_at]
                if (reply := feedback_for(normalised, own)) is not None:
                    publish(device, reply.payload())

    app.agent(raw, name="hemmon.ingest")(ingest)
    app.agent(readings, name="hemmon.evaluate")(evaluate)
    _watch_lag(app, "worker", (kafka.topics.raw, kafka.topics.readings))
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
    with pipeline.connection.transaction():
        ingested = pipeline.ingest(snap, messages)
    pipeline.count_ingested(snap, ingested, pipeline.now())
    forward = []
    replies = []
    for message, normalised in ingested.results:
        parsed = ingested.topics[message.topic]
        if normalised.readings:
            first = normalised.readings[0]
            forward.append((first.patient_id, first.device_id, normalised))
        elif parsed is not None and (reply := feedback_for(normalised, ())) is not None:
            replies.append((parsed.device_id, reply.payload()))
    return IngestDone(forward=forward, rejections=ingested.rejections, replies=replies)


def _evaluate(pipeline: Pipeline, readings: list[Reading]) -> Evaluation:
    snap = pipeline.snapshot()
    with pipeline.connection.transaction():
        return pipeline.evaluate(snap, readings)


def _alert(pipeline: Pipeline, evaluation: Evaluation) -> int:
    snap = pipeline.snapshot()
    now = pipeline.now()
    with pipeline.connection.transaction():
        changes = pipeline.alert(snap, evaluation, now)
    pipeline.count_alerts(changes, evaluation.received, pipeline.now())
    return len(changes)


def alerts_app(kafka: KafkaConfig, stage: StageRunner, sweeper: StageRunner,
               sweep_seconds: float = 60.0) -> faust.App:
    """`hemmon alerts`: the alert lifecycle over the findings topic, and the time-driven
    sweeps (silent devices, missed measurements, escalations) on the group's leader only."""
    app = _app(kafka.topics.alerts_group, kafka)
    findings = app.topic(kafka.topics.findings, key_type=bytes, value_type=bytes,
                         partitions=kafka.partitions, internal=True)
    wait = kafka.batch_wait_ms / 1000 or 0.001

    async def alert(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(kafka.batch_max, within=wait):
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

    _watch_lag(app, "alerts", (kafka.topics.findings,))
    return app
