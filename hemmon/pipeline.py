"""The shell around the batch core for one database connection: load -> core -> write.

`process` takes a batch of device messages and commits, in one transaction, what the core
decided: readings, rejections, device states, findings, alert changes and pages. Only
findings that were not kept before open or update alerts, so a redelivered message
changes nothing. The caller acknowledges the messages to the broker only after `process`
returns, and then publishes the feedback it returns.

The distributed runner runs the same three steps apart (`ingest`, `evaluate`, `alert`);
the backtest runs the core with no database at all (hemmon/backtest.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from hemmon import core, metrics
from hemmon.alerts import decide
from hemmon.alerts.decide import Change
from hemmon.alerts.storage import load_open_alerts, write_plan
from hemmon.ingest.model import Reading, Rejection, RejectReason
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
from hemmon.rules.devices import DeviceState, battery_key, device_findings
from hemmon.rules.engine import lookback
from hemmon.rules.model import MissedRule
from hemmon.rules.schedule import missed
from hemmon.rules.storage import (
    last_readings,
    load_series_since,
    store_findings,
    store_held,
    take_due_held,
)

from .core import Evaluation, Ingested, Message, Reply
from .roster import RosterSnapshot, read_snapshot, roster_revision

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
STOCKHOLM = ZoneInfo("Europe/Stockholm")

__all__ = ["Clock", "Evaluation", "Message", "Pipeline", "Reply", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Stored:
    """What a batch's ingest wrote: the readings that were new, the rejections kept."""

    new: set[Identity]
    rejections: list[Rejection]
    new_rejections: list[Rejection]


class Pipeline:
    """The core wired to one database connection and the series of the patients this
    process owns; not shared between threads."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        clock: Clock = utc_now,
        reload_interval: float = 2.0,
        zone: ZoneInfo = STOCKHOLM,
        escalate_after: timedelta = timedelta(minutes=30),
        state: core.SeriesState | None = None,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._zone = zone
        self._escalate_after = escalate_after
        self._reload_interval = reload_interval
        self._snapshot: RosterSnapshot | None = None
        self._checked = 0.0
        self.state = state if state is not None else core.SeriesState()
        self._trimmed = time.monotonic()

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
                self._snapshot = read_snapshot(self._conn, self._zone)
                log.info("roster revision %d loaded: %d devices",
                         self._snapshot.revision, len(self._snapshot.devices))
            self._conn.commit()
            self._checked = now
        return self._snapshot

    # -- the three steps -----------------------------------------------------------------

    def store(self, ingested: Ingested, kept: Sequence[Rejection] = ()) -> Stored:
        """Write a batch's readings, rejections and device states; in the caller's
        transaction."""
        new = store_readings(self._conn, ingested.readings)
        for status in ingested.statuses:
            record_status(self._conn, status.device_id, status.report.online,
                          status.report.battery, status.at)
        record_seen(self._conn, ingested.seen, ingested.batteries)
        rejections = ingested.rejections + list(kept)
        return Stored(new=new, rejections=rejections,
                      new_rejections=store_rejections(self._conn, rejections))

    def evaluate(self, snap: RosterSnapshot, readings: Sequence[Reading]) -> Evaluation:
        """The core's evaluation, after loading the series of patients seen for the first
        time (or of a reading older than what is held)."""
        missing = self.state.missing(snap, readings)
        if missing:
            self._load(self.state, missing)
            metrics.SERIES_LOADS.inc(len(missing))
        return core.evaluate(snap, self.state, readings, self._clock(), self._zone)

    def _load(self, state: core.SeriesState, since: Mapping[str, datetime]) -> None:
        """Fill `state` with each patient's stored readings measured since the given time."""
        loaded = load_series_since(self._conn, since)
        for patient, start in since.items():
            state.install(patient, start,
                          (p for points in loaded[patient].values() for p in points))

    def alert(self, snap: RosterSnapshot, evaluation: Evaluation,
              now: datetime) -> list[Change]:
        """Keep the findings not kept yet; open or update alerts from those that are
        recent, and mark ended excursions; in the caller's transaction."""
        new_findings = store_findings(self._conn, evaluation.findings, now)
        recent = core.alertable(new_findings, now)
        metrics.FINDINGS_HISTORICAL.inc(len(new_findings) - len(recent))
        patients = {f.patient_id for f in recent} | {p for p, _ in evaluation.clears}
        if not patients:
            return []
        open_alerts = load_open_alerts(self._conn, patients)
        plan = decide.decide_findings(recent, evaluation.clears, open_alerts, snap.teams, now)
        return write_plan(self._conn, plan)

    def process(self, messages: Sequence[Message]) -> list[Reply]:
        """Store and evaluate a batch; returns the feedback to publish. Raises on I/O errors.

        The embedded runner's one transaction over the steps the distributed runner runs
        apart: ingest and store (worker), evaluate (worker, by patient), alert (alerts)."""
        started = time.perf_counter()
        snap = self.snapshot()
        now = self._clock()
        ingested = core.ingest(snap, messages)
        with self._conn.transaction():
            evaluation = self.evaluate(snap, ingested.readings)
            kept = self.kept_for_bugs(ingested, evaluation)
            stored = self.store(ingested, kept)
            store_held(self._conn, evaluation.pending)
            changes = self.alert(snap, evaluation, now)
        self.state.add(ingested.readings)
        self.trim()
        committed = self._clock()
        count_ingested(snap, ingested, stored, committed)
        metrics.READINGS_EVALUATED.inc(len(ingested.readings))
        count_alerts(changes, evaluation.received, committed)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return core.replies(ingested, evaluation)

    @staticmethod
    def kept_for_bugs(ingested: Ingested, evaluation: Evaluation) -> list[Rejection]:
        for bug in evaluation.failed.values():
            log.error("evaluating a patient's readings failed: a bug in hemmon; the messages"
                      " are kept as internal_error rejections for replay", exc_info=bug)
            metrics.INTERNAL_ERRORS.labels("rules").inc()
        return core.exclude_failed(ingested, evaluation.failed)

    def trim(self, every: float = 60.0) -> None:
        """Keep the in-memory series bounded (at most every `every` seconds)."""
        if time.monotonic() - self._trimmed < every:
            return
        self._trimmed = time.monotonic()
        self.state.trim(self.snapshot(), self._clock())
        metrics.SERIES_POINTS.set(self.state.size)

    # -- the time-driven checks -----------------------------------------------------------

    def sweep(self) -> None:
        """The time-driven checks: silent devices and batteries, then missed measurements
        (not for patients whose device is silent: that is one device notice, not a storm
        of adherence notices), then escalations."""
        self.sweep_confirmations()
        silent = self.sweep_devices()
        self.sweep_adherence(silent)
        self.sweep_escalations()

    def sweep_confirmations(self) -> None:
        """Readings held for a re-measurement (a rule's `confirm`) whose wait is over, and
        that no normal value contradicted, now alert. They are kept in the database with
        the batch that held them, so a restart loses none, and judged against the
        patient's series as stored now (a pipeline process may have added to it)."""
        now = self._clock()
        snap = self.snapshot()
        with self._conn.transaction():
            due = take_due_held(self._conn, now)
            if not due:
                return
            fresh = core.SeriesState()
            self._load(fresh, {
                patient: min(p.measured_at for q, p in due if q == patient)
                - lookback(snap.rules[patient].rules)
                for patient, _ in due if patient in snap.rules})
            evaluation = core.evaluate_pending(snap, fresh, due, now, self._zone)
            changes = self.alert(snap, evaluation, now)
        count_alerts(changes, {}, now)

    def sweep_escalations(self) -> None:
        """Unacknowledged red alerts past their time move on; snoozes that ended say so."""
        now = self._clock()
        snap = self.snapshot()
        with self._conn.transaction():
            open_alerts = load_open_alerts(self._conn)
            expired = decide.expire_snoozes(open_alerts.values(), now)
            for change in write_plan(self._conn, expired):
                open_alerts[(change.alert.patient_id, change.alert.rule)] = change.alert
            moved = write_plan(self._conn, decide.decide_escalations(
                open_alerts.values(), snap.teams, now, self._escalate_after))
        for change in moved:
            metrics.ESCALATIONS.labels(change.alert.route.value).inc()
            log.info("alert %s escalated to %s", change.alert.id, change.alert.route.value)

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
            if not new:
                return
            open_alerts = load_open_alerts(self._conn, {f.patient_id for f in new})
            changes = write_plan(self._conn, decide.decide_findings(
                new, (), open_alerts, snap.teams, now))
        count_alerts(changes, {}, now)

    def sweep_devices(self) -> set[str]:
        """Open notices for silent devices and low batteries, resolve those that cleared.

        Time-driven, so a device that stops sending is noticed on time, not when it comes
        back. Returns the patients with a silent device.
        """
        now = self._clock()
        snap = self.snapshot()
        with self._conn.transaction():
            notices = load_open_alerts(self._conn, category="device")
            open_keys = {rule for _, rule in notices}
            findings = [
                f
                for device, patient, every, last_seen, battery, online
                in device_states(self._conn)
                if patient in snap.teams
                for f in device_findings(
                    DeviceState(device, patient, every, last_seen, battery, online), now,
                    battery_notice_open=battery_key(device) in open_keys, zone=self._zone)
            ]
            fresh = [f for f in findings if f.rule_key not in open_keys]
            plan = decide.decide_findings(fresh, (), {}, snap.teams, now)
            plan.changes.extend(decide.resolve_ended_notices(
                notices.values(), "device", {f.rule_key for f in findings}, now,
                "mätaren hörs av igen").changes)
            changes = write_plan(self._conn, plan)
        count_alerts([c for c in changes if c.opened], {}, now)
        silent = [f for f in findings if f.rule_key.startswith("device:silent:")]
        metrics.SILENT_DEVICES.set(len(silent))
        return {f.patient_id for f in silent}

    # -- one message at a time ------------------------------------------------------------

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
                self.keep_unprocessable(message, exc)
        return replies

    def keep_unprocessable(self, message: Message, exc: Exception) -> Rejection:
        """A message that could not be stored, kept with its bytes for replay: refused by
        the database (a constraint, a trigger), or met by a bug in hemmon."""
        refused = isinstance(exc, psycopg.Error)
        if refused:
            log.warning("the database refused a message (%s); kept as a rejection",
                        type(exc).__name__)
        else:
            log.exception("a message could not be processed: a bug in hemmon; kept for replay")
            metrics.INTERNAL_ERRORS.labels("pipeline").inc()
        rejection = Rejection(
            reason=RejectReason.DATABASE_REFUSED if refused else RejectReason.INTERNAL_ERROR,
            detail=f"could not be processed ({type(exc).__name__}); kept for replay",
            topic=message.topic, raw=message.payload, received_at=message.received_at,
        )
        with self._conn.transaction():
            if store_rejections(self._conn, [rejection]):
                metrics.REJECTIONS.labels(rejection.reason.value).inc()
        return rejection


def count_ingested(snap: RosterSnapshot, ingested: Ingested, stored: Stored,
                   committed: datetime) -> None:
    # counted per label once a batch: with pipeline processes each increment is a write
    # to a shared file, and per message that was a tenth of a pipeline's time (py-spy)
    received: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for message, normalised in ingested.results:
        label = core.format_label(ingested.topics.get(message.topic), snap)
        received[label] += 1
        skipped[label] += normalised.skipped
    for label, n in received.items():
        metrics.MESSAGES_RECEIVED.labels(label).inc(n)
        if skipped[label]:
            metrics.RECORDS_SKIPPED.labels(label).inc(skipped[label])
    readings = ingested.readings
    accepted: Counter[str] = Counter()
    for r in readings:
        if identity(r) in stored.new:
            accepted[r.type.value] += 1
            metrics.READING_STORED_SECONDS.observe(
                max(0.0, (committed - r.received_at).total_seconds()))
    for kind, n in accepted.items():
        metrics.READINGS_ACCEPTED.labels(kind).inc(n)
    metrics.READINGS_DUPLICATE.inc(len(readings) - len(stored.new))
    for j in stored.new_rejections:
        metrics.REJECTIONS.labels(j.reason.value).inc()
        log.warning("message rejected: %s", j.reason.value)
        # the detail can quote a measured value, the topic names the device
        log.debug("rejected message on %s (%s): %r", j.topic, j.detail, j.raw[:200])


def count_alerts(changes: Sequence[Change], received: dict[str, datetime],
                 committed: datetime) -> None:
    for change in changes:
        alert = change.alert
        if change.opened:
            metrics.ALERTS_OPENED.labels(alert.level.value, alert.route.value,
                                         alert.category).inc()
            arrived = received.get(change.finding.reading_key) if change.finding else None
            if arrived is not None:
                metrics.ALERT_OPENED_SECONDS.observe(
                    max(0.0, (committed - arrived).total_seconds()))
        elif change.finding is not None:
            metrics.ALERT_UPDATES.labels(change.finding.level.value).inc()


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
