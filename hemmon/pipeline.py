"""One batch of device messages through the core: normalise, store, evaluate, alert.

The batch is committed in one transaction: readings, rejections and the alerts that new
readings open or update. Only readings that were not stored before are evaluated for
alerts, so a redelivered message changes nothing. The caller acknowledges the messages to
the broker only after `process` returns, and then publishes the feedback.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from hemmon import metrics
from hemmon.alerts.feedback import Feedback, feedback_for
from hemmon.alerts.storage import (
    AlertChange,
    apply_findings,
    escalate_due,
    expire_snoozes,
    mark_cleared,
    open_notice_keys,
    resolve_cleared,
)
from hemmon.ingest.model import Normalised, Reading, Rejection, RejectReason, SourceFormat
from hemmon.ingest.normalise import normalise
from hemmon.ingest.status import StatusError, parse_status, status_device
from hemmon.ingest.storage import (
    Identity,
    device_states,
    get_rejection,
    identity,
    mark_replayed,
    record_seen,
    record_status,
    store_readings,
    store_rejections,
)
from hemmon.ingest.topics import ReadingsTopic, TopicError, parse_readings_topic
from hemmon.rules.devices import DeviceState, battery_key, device_findings
from hemmon.rules.engine import Clear, evaluate_points, lookback, measurements_needed
from hemmon.rules.evaluate import Finding
from hemmon.rules.model import MissedRule
from hemmon.rules.schedule import missed
from hemmon.rules.storage import (
    last_readings,
    link_findings,
    load_series,
    point_key,
    store_findings,
)

from .roster import RosterSnapshot, read_snapshot, roster_revision

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
STOCKHOLM = ZoneInfo("Europe/Stockholm")
STALE_AFTER = timedelta(hours=24)
"""A finding about a reading measured longer ago than this is history: stored, not alerted."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Message:
    """A device message as taken from the broker."""

    topic: str
    payload: bytes
    received_at: datetime
    token: Any = None
    """The transport's handle for acknowledging it (MQTT: packet id and session)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Feedback to publish to one device."""

    device_id: str
    feedback: Feedback


@dataclass(frozen=True, slots=True)
class Ingested:
    """A batch normalised and stored: each message's result and what was new."""

    results: list[tuple[Message, Normalised]]
    topics: dict[str, ReadingsTopic | None]
    readings: list[Reading]
    new: set[Identity]
    rejections: list[Rejection]
    new_rejections: list[Rejection]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the rules found in a batch: findings, ended excursions (patient, clear) and
    when each reading arrived (for the receipt -> alert latency)."""

    findings: list[Finding]
    clears: list[tuple[str, Clear]]
    received: dict[str, datetime]

    def by_reading(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            out[finding.reading_key].append(finding)
        return out


class Pipeline:
    """The core wired to one database connection; not shared between threads."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        clock: Clock = utc_now,
        reload_interval: float = 2.0,
        zone: ZoneInfo = STOCKHOLM,
        escalate_after: timedelta = timedelta(minutes=30),
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._zone = zone
        self._escalate_after = escalate_after
        self._reload_interval = reload_interval
        self._snapshot: RosterSnapshot | None = None
        self._checked = 0.0

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def now(self) -> datetime:
        return self._clock()

    def snapshot(self) -> RosterSnapshot:
        """The roster, re-read when its revision has changed (checked every few seconds)."""
        now = time.monotonic()
        if self._snapshot is None or now - self._checked >= self._reload_interval:
            revision = roster_revision(self._conn)
            if self._snapshot is None or revision != self._snapshot.revision:
                self._snapshot = read_snapshot(self._conn)
                log.info("roster revision %d loaded: %d devices",
                         self._snapshot.revision, len(self._snapshot.devices))
            self._conn.commit()
            self._checked = now
        return self._snapshot

    def evaluate(self, snap: RosterSnapshot, readings: Sequence[Reading]) -> Evaluation:
        """The findings of the readings and of the later readings whose windows they fall
        into, from the stored series (nothing is kept in memory), and the excursions that
        ended. Reads only; the caller owns the transaction."""
        by_patient: dict[str, list[Reading]] = defaultdict(list)
        for reading in readings:
            if reading.patient_id in snap.rules:
                by_patient[reading.patient_id].append(reading)
        spans = {p: lookback(snap.rules[p].rules) for p in by_patient}
        series = load_series(self._conn, [
            (p, min(r.measured_at for r in rs) - spans[p],
             max(r.measured_at for r in rs) + spans[p],
             sorted(k.value for k in measurements_needed(snap.rules[p].rules,
                                                        {r.type for r in rs})))
            for p, rs in by_patient.items()
        ])
        found = Evaluation(findings=[], clears=[],
                           received={reading_key(r): r.received_at for r in readings})
        for patient, batch in by_patient.items():
            rules = snap.rules[patient]
            own = series[patient]
            targets = {
                (point.key, point.measured_at): point
                for r in batch
                for point in own.get(r.type, [])
                if r.measured_at <= point.measured_at <= r.measured_at + spans[patient]
            }
            ordered = sorted(targets.values(), key=lambda point: point.measured_at)
            outcome = evaluate_points(patient, rules.rules, rules.version, own, ordered)
            found.findings.extend(outcome.findings)
            found.clears.extend((patient, clear) for clear in outcome.clears)
        return found

    def ingest(self, snap: RosterSnapshot, messages: Sequence[Message]) -> Ingested:
        """Normalise a batch and store its readings, rejections and device states; the
        caller owns the transaction and counts with `count_ingested` after the commit."""
        statuses: list[tuple[Message, str]] = []
        results: list[tuple[Message, Normalised]] = []
        for m in messages:
            if (device := status_device(m.topic)) is not None:
                statuses.append((m, device))
            else:
                results.append((m, normalise(m.payload, topic=m.topic, devices=snap.devices,
                                             received_at=m.received_at)))
        seen: dict[str, datetime] = {}
        batteries: dict[str, float] = {}
        topics = {m.topic: _topic(m.topic) for m, _ in results}
        for message, normalised in results:
            parsed_topic = topics[message.topic]
            device = parsed_topic.device_id if parsed_topic else None
            if device is not None and device in snap.devices:
                seen[device] = max(seen.get(device, message.received_at), message.received_at)
                if normalised.extras.battery is not None:
                    batteries[device] = normalised.extras.battery
        readings = [r for _, n in results for r in n.readings]
        new = store_readings(self._conn, readings)
        status_rejections = self._store_statuses(statuses, snap)
        record_seen(self._conn, seen, batteries)
        rejections = [j for _, n in results for j in n.rejections] + status_rejections
        new_rejections = store_rejections(self._conn, rejections)
        return Ingested(results=results, topics=topics, readings=readings, new=new,
                        rejections=rejections, new_rejections=new_rejections)

    @staticmethod
    def count_ingested(snap: RosterSnapshot, ingested: Ingested, committed: datetime) -> None:
        for message, normalised in ingested.results:
            label = _format_label(ingested.topics[message.topic], snap)
            metrics.MESSAGES_RECEIVED.labels(label).inc()
            if normalised.skipped:
                metrics.RECORDS_SKIPPED.labels(label).inc(normalised.skipped)
        for r in ingested.readings:
            if identity(r) in ingested.new:
                metrics.READINGS_ACCEPTED.labels(r.type.value).inc()
                metrics.READING_STORED_SECONDS.observe(
                    max(0.0, (committed - r.received_at).total_seconds())
                )
        metrics.READINGS_DUPLICATE.inc(len(ingested.readings) - len(ingested.new))
        for j in ingested.new_rejections:
            metrics.REJECTIONS.labels(j.reason.value).inc()
            log.warning("message rejected: %s (%s)", j.reason.value, j.detail)
            log.debug("rejected message on %s: %r", j.topic, j.raw[:200])

    def alert(self, snap: RosterSnapshot, evaluation: Evaluation,
              now: datetime) -> list[AlertChange]:
        """Keep the findings not kept yet and open or update alerts from those (recent ones
        only), and mark ended excursions; the caller owns the transaction. A finding kept
        before (a redelivery) changes nothing."""
        by_patient: dict[str, list[Clear]] = defaultdict(list)
        for patient, clear in evaluation.clears:
            by_patient[patient].append(clear)
        for patient, clears in by_patient.items():
            mark_cleared(self._conn, patient, clears)
        new_findings = store_findings(self._conn, evaluation.findings, now)
        alertable = [f for f in new_findings if now - f.measured_at <= STALE_AFTER]
        changes = apply_findings(self._conn, alertable, snap.teams, now)
        link_findings(self._conn, [(c.finding, c.alert.id) for c in changes
                                   if c.alert.id is not None])
        metrics.FINDINGS_HISTORICAL.inc(len(new_findings) - len(alertable))
        return changes

    @staticmethod
    def count_alerts(changes: Sequence[AlertChange], received: dict[str, datetime],
                     committed: datetime) -> None:
        for change in changes:
            if change.opened:
                _count_opened(change)
                arrived = received.get(change.finding.reading_key)
                if arrived is not None:
                    metrics.ALERT_OPENED_SECONDS.observe(
                        max(0.0, (committed - arrived).total_seconds()))
            else:
                metrics.ALERT_UPDATES.labels(change.finding.level.value).inc()

    def process(self, messages: Sequence[Message]) -> list[Reply]:
        """Store and evaluate a batch; returns the feedback to publish. Raises on I/O errors.

        The embedded runner's one transaction over the three stages the distributed runner
        runs apart: `ingest` (worker), `evaluate` (worker, by patient), `alert` (alerts)."""
        started = time.perf_counter()
        snap = self.snapshot()
        now = self._clock()
        with self._conn.transaction():
            ingested = self.ingest(snap, messages)
            evaluation = self.evaluate(snap, ingested.readings)
            changes = self.alert(snap, evaluation, now)
        committed = self._clock()
        self.count_ingested(snap, ingested, committed)
        metrics.READINGS_EVALUATED.inc(len(ingested.readings))
        self.count_alerts(changes, evaluation.received, committed)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return [reply for m, n in ingested.results
                if (reply := _reply(ingested.topics[m.topic], n,
                                    evaluation.by_reading())) is not None]

    def _store_statuses(self, statuses: list[tuple[Message, str]],
                        snap: RosterSnapshot) -> list[Rejection]:
        rejections = []
        for message, device_id in statuses:
            device = snap.devices.get(device_id)
            try:
                if device is None:
                    raise StatusError("the device is not in the roster")
                report = parse_status(device_id, message.payload)
            except StatusError as exc:
                reason = (RejectReason.UNKNOWN_DEVICE if device is None
                          else RejectReason.SCHEMA_INVALID)
                rejections.append(Rejection(
                    reason=reason, detail=str(exc), topic=message.topic, raw=message.payload,
                    received_at=message.received_at, device_id=device_id,
                    patient_id=device.patient_id if device else None))
                continue
            record_status(self._conn, device_id, report.online, report.battery,
                          message.received_at)
        return rejections

    def sweep(self) -> None:
        """The time-driven checks: silent devices and batteries, then missed measurements
        (not for patients whose device is silent: that is one device notice, not a storm
        of adherence notices)."""
        silent = self.sweep_devices()
        self.sweep_adherence(silent)
        self.sweep_escalations()

    def sweep_escalations(self) -> None:
        """Unacknowledged red alerts past their time move on; snoozes that ended say so."""
        now = self._clock()
        snap = self.snapshot()
        with self._conn.transaction():
            expire_snoozes(self._conn, now)
            moved = escalate_due(self._conn, snap.teams, now, self._escalate_after)
        for alert in moved:
            metrics.ESCALATIONS.labels(alert.route.value).inc()
            log.warning("alert %s escalated to %s", alert.id, alert.route.value)

    def sweep_adherence(self, silent_patients: set[str]) -> None:
        """Adherence notices for measurements the care plan expected and nobody took."""
        now = self._clock()
        snap = self.snapshot()
        plans = [(patient, rules, rule) for patient, rules in snap.rules.items()
                 if patient not in silent_patients and patient in snap.teams
                 for rule in rules.rules if isinstance(rule, MissedRule)]
        if not plans:
            return
        with self._conn.transaction():
            last = last_readings(self._conn,
                                 {(p, rule.measurement.value) for p, _, rule in plans})
            found = [
                finding for patient, rules, rule in plans
                if (finding := missed(rule, patient_id=patient, version=rules.version,
                                      effective_from=rules.effective_from, now=now,
                                      zone=self._zone,
                                      last=last[(patient, rule.measurement.value)]))
            ]
            new = store_findings(self._conn, found, now)
            changes = apply_findings(self._conn, new, snap.teams, now)
            link_findings(self._conn, [(c.finding, c.alert.id) for c in changes
                                       if c.alert.id is not None])
        for change in changes:
            if change.opened:
                _count_opened(change)

    def sweep_devices(self) -> set[str]:
        """Open notices for silent devices and low batteries, resolve those that cleared.

        Time-driven, so a device that stops sending is noticed on time, not when it comes
        back. Returns the patients with a silent device.
        """
        now = self._clock()
        snap = self.snapshot()
        with self._conn.transaction():
            open_keys = open_notice_keys(self._conn, "device")
            findings = [
                f
                for device, patient, every, last_seen, battery, online
                in device_states(self._conn)
                if patient in snap.teams
                for f in device_findings(
                    DeviceState(device, patient, every, last_seen, battery, online), now,
                    battery_notice_open=battery_key(device) in open_keys)
            ]
            fresh = [f for f in findings if f.rule_key not in open_keys]
            changes = apply_findings(self._conn, fresh, snap.teams, now)
            resolve_cleared(self._conn, "device", {f.rule_key for f in findings}, now,
                            "mätaren hörs av igen")
        for change in changes:
            _count_opened(change)
        silent = [f for f in findings if f.rule_key.startswith("device:silent:")]
        metrics.SILENT_DEVICES.set(len(silent))
        return {f.patient_id for f in silent}

    def process_isolating(self, messages: Sequence[Message]) -> list[Reply]:
        """One message per transaction: a message the database or a bug refuses is kept as
        a rejection with its bytes instead of holding back every message after it."""
        replies = []
        for message in messages:
            try:
                replies.extend(self.process([message]))
            except psycopg.OperationalError:
                raise
            except Exception as exc:
                self._keep_unprocessable(message, exc)
        return replies

    def ingest_isolating(self, snap: RosterSnapshot, messages: Sequence[Message]) -> Ingested:
        """`ingest`, one message per transaction (the distributed runner's fallback when a
        batch fails): a message the database or a bug refuses is kept as a rejection."""
        parts: list[Ingested] = []
        kept: list[Rejection] = []
        for message in messages:
            try:
                with self._conn.transaction():
                    parts.append(self.ingest(snap, [message]))
            except psycopg.OperationalError:
                raise
            except Exception as exc:
                kept.append(self._keep_unprocessable(message, exc))
        return Ingested(
            results=[r for part in parts for r in part.results],
            topics={k: v for part in parts for k, v in part.topics.items()},
            readings=[r for part in parts for r in part.readings],
            new={i for part in parts for i in part.new},
            rejections=[j for part in parts for j in part.rejections] + kept,
            new_rejections=[j for part in parts for j in part.new_rejections])

    def _keep_unprocessable(self, message: Message, exc: Exception) -> Rejection:
        log.exception("a message could not be processed; kept as a rejection")
        rejection = Rejection(
            reason=RejectReason.SCHEMA_INVALID,
            detail=f"could not be processed ({type(exc).__name__}); kept for replay",
            topic=message.topic, raw=message.payload, received_at=message.received_at,
        )
        with self._conn.transaction():
            if store_rejections(self._conn, [rejection]):
                metrics.REJECTIONS.labels(rejection.reason.value).inc()
        return rejection


def reading_key(reading: Reading) -> str:
    return point_key(reading.device_id, reading.key, reading.type.value)


def _topic(topic: str) -> ReadingsTopic | None:
    try:
        return parse_readings_topic(topic)
    except TopicError:
        return None


def _reply(
    topic: ReadingsTopic | None, normalised: Normalised, findings: dict[str, list[Finding]]
) -> Reply | None:
    if topic is None:
        return None
    device_id = topic.device_id
    own = [f for r in normalised.readings for f in findings.get(reading_key(r), [])
           if f.measured_at == r.measured_at]
    feedback = feedback_for(normalised, own)
    return None if feedback is None else Reply(device_id=device_id, feedback=feedback)


def _count_opened(change: AlertChange) -> None:
    alert = change.alert
    metrics.ALERTS_OPENED.labels(alert.level.value, alert.route.value, alert.category).inc()


_FORMATS = frozenset(f.value for f in SourceFormat)


def _format_label(parsed: ReadingsTopic | None, snap: RosterSnapshot) -> str:
    if parsed is None:
        return "unknown"
    if parsed.format is not None:
        return parsed.format if parsed.format in _FORMATS else "unknown"
    device = snap.devices.get(parsed.device_id)
    return device.format.value if device else "unknown"


def replay_rejection(
    conn: psycopg.Connection[Any], rejection_id: int, clock: Clock
) -> dict[str, Any]:
    """Run a kept message through the pipeline again (after a roster or code fix)."""
    with conn.transaction():
        row = get_rejection(conn, rejection_id)
    if row is None:
        raise LookupError(rejection_id)
    now = clock()
    pipeline = Pipeline(conn, clock=clock, reload_interval=0)
    replies = pipeline.process([Message(row["topic"], bytes(row["raw"]), now)])
    status = replies[0].feedback.status if replies else "rejected"
    with conn.transaction():
        mark_replayed(conn, rejection_id, now, status)
    return {"id": rejection_id, "result": status}
