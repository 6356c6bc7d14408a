"""The batch core: what a batch of device messages means, decided without I/O.

Three callers use it alike: the embedded runner (`hemmon run`, hemmon/pipeline.py), the
distributed runner's stages (hemmon/distributed.py) and the backtest (hemmon/backtest.py).
Each loads what the core needs, calls it, and writes what it returns:

    messages ──ingest──> readings, rejections, device states      (roster snapshot)
    readings ──evaluate──> findings, ended excursions             (the patients' series)
    findings ──alerts.decide──> alert changes, pages              (the open alerts)
    all of it ──replies──> feedback to each device

A patient's series live in a `SeriesState` held by the process that owns the patient: it
is loaded from the stored readings when the process first sees the patient (or a reading
older than what it holds) and grows with what the process writes, so a batch costs no
series query. The database stays the truth after a restart or a rebalance.

An exception inside the core is a bug in hemmon, never the message's fault: the messages
it touched are kept as `internal_error` rejections for replay after a fix.
"""

from __future__ import annotations

from bisect import insort
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hemmon.alerts.feedback import Feedback, feedback_for
from hemmon.ingest.model import (
    MeasurementType,
    Normalised,
    Reading,
    Rejection,
    RejectReason,
    SourceFormat,
)
from hemmon.ingest.normalise import normalise
from hemmon.ingest.status import StatusError, StatusReport, parse_status, status_device
from hemmon.ingest.topics import ReadingsTopic, TopicError, parse_readings_topic
from hemmon.rules.engine import Clear, Pending, Point, evaluate_due, evaluate_points, lookback
from hemmon.rules.evaluate import Finding
from hemmon.rules.model import ChangeRule, ThresholdRule

from .roster import RosterSnapshot

STOCKHOLM = ZoneInfo("Europe/Stockholm")
STALE_AFTER = timedelta(hours=24)
"""A finding about a reading measured this long before "now" is history: kept, not
alerted (a device that syncs a week late does not page anyone for last week)."""

CONFIRM_MARGIN = timedelta(minutes=5)
KEEP_EXTRA = timedelta(days=1)
"""How much older than the rules' look-back a patient's series is kept in memory."""


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
class StatusUpdate:
    device_id: str
    report: StatusReport
    at: datetime


@dataclass(slots=True)
class Ingested:
    """A batch normalised: each message's result, and what to write."""

    results: list[tuple[Message, Normalised]]
    topics: dict[str, ReadingsTopic | None]
    statuses: list[StatusUpdate]
    seen: dict[str, datetime]
    """Devices heard from, and when last."""
    batteries: dict[str, float]

    @property
    def readings(self) -> list[Reading]:
        return [r for _, n in self.results for r in n.readings]

    @property
    def rejections(self) -> list[Rejection]:
        return [j for _, n in self.results for j in n.rejections]


def reading_key(reading: Reading) -> str:
    return point_key(reading.device_id, reading.key, reading.type.value)


def point_key(device_id: str, message_key: str, kind: str) -> str:
    return f"{device_id}/{message_key}/{kind}"


def as_point(reading: Reading) -> Point:
    return Point(reading.type, reading.value, reading.measured_at, reading_key(reading),
                 reading.on_oxygen)


def internal_error(message: Message, exc: BaseException, stage: str) -> Rejection:
    """A message a bug in hemmon met: kept with its bytes, to replay after the fix."""
    return Rejection(
        reason=RejectReason.INTERNAL_ERROR, topic=message.topic, raw=message.payload,
        received_at=message.received_at,
        detail=f"a bug in hemmon ({stage}: {type(exc).__name__}); kept for replay")


def ingest(snap: RosterSnapshot, messages: Sequence[Message]) -> Ingested:
    """Normalise a batch: readings and rejections of each message, status reports, which
    devices were heard from. Never raises for bad input (it becomes a rejection)."""
    out = Ingested(results=[], topics={}, statuses=[], seen={}, batteries={})
    for message in messages:
        if (device_id := status_device(message.topic)) is not None:
            out.results.append((message, _status(snap, message, device_id, out.statuses)))
            continue
        if message.topic not in out.topics:
            out.topics[message.topic] = _topic(message.topic)
        normalised = normalise(message.payload, topic=message.topic, devices=snap.devices,
                               received_at=message.received_at)
        out.results.append((message, normalised))
        parsed = out.topics[message.topic]
        device = parsed.device_id if parsed else None
        if device is not None and device in snap.devices:
            out.seen[device] = max(out.seen.get(device, message.received_at),
                                   message.received_at)
            if normalised.extras.battery is not None:
                out.batteries[device] = normalised.extras.battery
    return out


def _status(snap: RosterSnapshot, message: Message, device_id: str,
            statuses: list[StatusUpdate]) -> Normalised:
    device = snap.devices.get(device_id)
    try:
        if device is None:
            raise StatusError("the device is not in the roster")
        statuses.append(StatusUpdate(device_id, parse_status(device_id, message.payload),
                                     message.received_at))
        return Normalised()
    except StatusError as exc:
        return Normalised(rejections=(Rejection(
            reason=RejectReason.UNKNOWN_DEVICE if device is None else RejectReason.SCHEMA_INVALID,
            detail=str(exc), topic=message.topic, raw=message.payload,
            received_at=message.received_at, device_id=device_id,
            patient_id=device.patient_id if device else None),))


def _topic(topic: str) -> ReadingsTopic | None:
    try:
        return parse_readings_topic(topic)
    except TopicError:
        return None


# -- the patients' series --------------------------------------------------------------

Series = dict[MeasurementType, list[Point]]


@dataclass(slots=True)
class PatientSeries:
    """A patient's readings from `since` on (all of them in that span), by measurement."""

    since: datetime
    series: Series = field(default_factory=lambda: defaultdict(list))
    keys: set[tuple[str, datetime]] = field(default_factory=set)

    def add(self, point: Point) -> bool:
        """Add a reading not held yet; whether it was new."""
        identity = (point.key, point.measured_at)
        if identity in self.keys or point.measured_at < self.since:
            return False
        self.keys.add(identity)
        insort(self.series[point.type], point, key=lambda p: p.measured_at)
        return True

    def trim(self, before: datetime) -> None:
        """Forget readings measured before `before` (they can be loaded again)."""
        if before <= self.since:
            return
        for kind, points in self.series.items():
            kept = [p for p in points if p.measured_at >= before]
            for p in points[:len(points) - len(kept)]:
                self.keys.discard((p.key, p.measured_at))
            self.series[kind] = kept
        self.since = before

    @property
    def size(self) -> int:
        return len(self.keys)


class SeriesState:
    """The series of the patients a process owns, in memory."""

    def __init__(self) -> None:
        self.patients: dict[str, PatientSeries] = {}

    def missing(self, snap: RosterSnapshot, readings: Iterable[Reading]) -> dict[str, datetime]:
        """Patients whose series must be loaded (again) before these readings can be
        evaluated, and from when: first sight, or a reading older than what is held."""
        need: dict[str, datetime] = {}
        for r in readings:
            rules = snap.rules.get(r.patient_id)
            if rules is None:
                continue
            start = r.measured_at - lookback(rules.rules)
            held = self.patients.get(r.patient_id)
            if held is None or start < held.since:
                # a day more than needed: the next slightly older reading needs no load
                need[r.patient_id] = min(need.get(r.patient_id, start), start - KEEP_EXTRA)
        return need

    def install(self, patient: str, since: datetime, points: Iterable[Point]) -> None:
        """A patient's series as loaded from the stored readings measured since `since`."""
        held = PatientSeries(since=since)
        for point in points:
            held.add(point)
        self.patients[patient] = held

    def add(self, readings: Iterable[Reading]) -> None:
        """Readings that are stored now (after the commit)."""
        for r in readings:
            if (held := self.patients.get(r.patient_id)) is not None:
                held.add(as_point(r))

    def trim(self, snap: RosterSnapshot, now: datetime) -> None:
        """Keep each patient's series bounded: the rules' look-back before `now`, and a day."""
        for patient, held in self.patients.items():
            rules = snap.rules.get(patient)
            if rules is not None:
                held.trim(now - lookback(rules.rules) - KEEP_EXTRA)

    def forget(self, patients: Iterable[str] | None = None) -> None:
        """Drop patients (all, by default): a rebalance took them elsewhere."""
        if patients is None:
            self.patients.clear()
        for patient in patients or ():
            self.patients.pop(patient, None)

    @property
    def size(self) -> int:
        return sum(held.size for held in self.patients.values())


# -- evaluation --------------------------------------------------------------------------

@dataclass(slots=True)
class Evaluation:
    """What the rules found in a batch: findings, ended excursions (patient, clear), when
    each reading arrived (for the receipt -> alert latency), and the patients whose
    evaluation a bug in hemmon stopped (with the exception)."""

    findings: list[Finding] = field(default_factory=list)
    clears: list[tuple[str, Clear]] = field(default_factory=list)
    received: dict[str, datetime] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)
    pending: list[tuple[str, Pending]] = field(default_factory=list)
    """(patient, held-back reading): evaluate again with `evaluate_pending` at its due time."""

    def held(self) -> frozenset[tuple[str, datetime]]:
        """The readings (key, measured time) that wait for a re-measurement."""
        return frozenset((p.reading_key, p.measured_at) for _, p in self.pending)

    def by_reading(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            out[finding.reading_key].append(finding)
        return out


def evaluate(snap: RosterSnapshot, state: SeriesState, readings: Sequence[Reading],
             now: datetime | None = None, zone: ZoneInfo = STOCKHOLM) -> Evaluation:
    """The findings of the readings, and of the later readings whose windows they fall
    into, from the held series and the batch (the state is not changed: the caller adds
    the readings once they are stored). `state.missing` must be empty for them."""
    by_patient: dict[str, list[Reading]] = defaultdict(list)
    for reading in readings:
        if reading.patient_id in snap.rules:
            by_patient[reading.patient_id].append(reading)
    found = Evaluation(received={reading_key(r): r.received_at for r in readings})
    for patient, batch in by_patient.items():
        try:
            _evaluate_patient(snap, state.patients[patient], patient, batch, found, now, zone)
        except Exception as exc:  # a bug: the caller keeps this patient's messages
            found.failed[patient] = exc
    return found


def _evaluate_patient(snap: RosterSnapshot, held: PatientSeries, patient: str,
                      batch: Sequence[Reading], found: Evaluation,
                      now: datetime | None = None, zone: ZoneInfo = STOCKHOLM) -> None:
    rules = snap.rules[patient]
    span = lookback(rules.rules)
    series: dict[MeasurementType, list[Point]] = defaultdict(list)
    for kind, points in held.series.items():
        series[kind] = list(points)
    for r in batch:
        point = as_point(r)
        if (point.key, point.measured_at) not in held.keys:
            insort(series[r.type], point, key=lambda p: p.measured_at)
    # a reading sent twice in one batch is one point
    for kind, points in series.items():
        series[kind] = list({(p.key, p.measured_at): p for p in points}.values())
    targets = {
        (point.key, point.measured_at): point
        for r in batch
        for point in series.get(r.type, [])
        if r.measured_at <= point.measured_at <= r.measured_at + span
    }
    ordered = sorted(targets.values(), key=lambda point: point.measured_at)
    outcome = evaluate_points(patient, rules.rules, rules.version, series, ordered,
                              now=now, zone=zone)
    found.findings.extend(outcome.findings)
    found.clears.extend((patient, clear) for clear in outcome.clears)
    found.pending.extend((patient, p) for p in outcome.pending)


def evaluate_pending(snap: RosterSnapshot, state: SeriesState,
                     pending: Sequence[tuple[str, Pending]], now: datetime,
                     zone: ZoneInfo = STOCKHOLM) -> Evaluation:
    """The held-back findings whose confirm wait is over by `now` (the sweep's half of
    `confirm`); the others come back in `pending`."""
    found = Evaluation()
    by_patient: dict[str, list[Pending]] = defaultdict(list)
    for patient, p in pending:
        by_patient[patient].append(p)
    for patient, held in by_patient.items():
        rules = snap.rules.get(patient)
        if rules is None:
            continue
        series = state.patients[patient].series
        outcome = evaluate_due(patient, rules.rules, rules.version, series, held, now=now,
                               zone=zone)
        found.findings.extend(outcome.findings)
        found.pending.extend((patient, p) for p in outcome.pending)
    return found


def alertable(findings: Sequence[Finding], now: datetime) -> list[Finding]:
    """The findings recent enough to open or update an alert."""
    return [f for f in findings if now - f.measured_at <= STALE_AFTER]


def exclude_failed(ingested: Ingested, failed: Mapping[str, BaseException]) -> list[Rejection]:
    """Take the messages of patients whose evaluation failed out of the batch (nothing of
    them is written) and return them as internal_error rejections."""
    if not failed:
        return []
    kept: list[Rejection] = []
    results = []
    for message, normalised in ingested.results:
        patients = {r.patient_id for r in normalised.readings}
        bug = next((failed[p] for p in sorted(patients) if p in failed), None)
        if bug is None:
            results.append((message, normalised))
        else:
            kept.append(internal_error(message, bug, "rules"))
            results.append((message, Normalised(key=normalised.key)))
    ingested.results = results
    return kept


def replies(ingested: Ingested, evaluation: Evaluation) -> list[Reply]:
    """Feedback for every message that was about readings: green, yellow, red or rejected."""
    by_reading = evaluation.by_reading()
    out = []
    for message, normalised in ingested.results:
        parsed = ingested.topics.get(message.topic)
        if parsed is None:
            continue
        if (feedback := message_feedback(normalised, by_reading, evaluation.held())
                ) is not None:
            out.append(Reply(parsed.device_id, feedback))
    return out


def message_feedback(normalised: Normalised, by_reading: Mapping[str, list[Finding]],
                     held: frozenset[tuple[str, datetime]] = frozenset()) -> Feedback | None:
    """One message's feedback, from the findings of its own readings (and whether one of
    them waits for a re-measurement)."""
    own = [f for r in normalised.readings for f in by_reading.get(reading_key(r), [])
           if f.measured_at == r.measured_at]
    waiting = any((reading_key(r), r.measured_at) in held for r in normalised.readings)
    return feedback_for(normalised, own, held=waiting)


def confirm_window(snap: RosterSnapshot) -> timedelta:
    """How long a reading may be held for a re-measurement: the longest `confirm` of any
    rule, and a margin (the backtest runs this long past its last message)."""
    waits = [rule.confirm for rules in snap.rules.values() for rule in rules.rules
             if isinstance(rule, ThresholdRule | ChangeRule) and rule.confirm is not None]
    return max(waits) + CONFIRM_MARGIN if waits else timedelta(0)


_FORMATS = frozenset(f.value for f in SourceFormat)


def format_label(parsed: ReadingsTopic | None, snap: RosterSnapshot) -> str:
    """A message's format as a metric label (a fixed list)."""
    if parsed is None:
        return "unknown"
    if parsed.format is not None:
        return parsed.format if parsed.format in _FORMATS else "unknown"
    device = snap.devices.get(parsed.device_id)
    return device.format.value if device else "unknown"
