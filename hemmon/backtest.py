"""`hemmon backtest`: the real rules and alert lifecycle over recorded messages, on a
simulated clock, with no database or broker.

It is the batch core of the live runners (hemmon/core.py, hemmon/alerts/decide.py) with
memory for stores: the clock moves through the messages in received order and runs the
time-driven checks (silent devices, low batteries, missed measurements, escalation) on the
same one-minute grid a live runner sweeps on, at the ticks where one can be due. Nobody
works the inbox here: an alert counts as resolved `resolve_after` after it opened, so a
problem that persists raises again, as it would in real life. Same input, same bytes out.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hemmon.alerts.decide import (
    OpenAlerts,
    Plan,
    decide_escalations,
    decide_findings,
    resolve_ended_notices,
    resolve_quietly,
)
from hemmon.alerts.lifecycle import Alert, Status
from hemmon.alerts.routing import STOCKHOLM, CareTeam, OfficeHours, Route
from hemmon.ingest.model import Device, Rejection
from hemmon.ingest.normalise import normalise
from hemmon.ingest.storage import fingerprint
from hemmon.rules.devices import DeviceState, battery_key, device_findings
from hemmon.rules.engine import Pending
from hemmon.rules.evaluate import Finding
from hemmon.rules.model import Level, MissedRule
from hemmon.rules.schedule import missed
from hemmon.rules.templates import effective_rules

from . import core
from .core import Message
from .roster import PatientRules, RosterFile, RosterSnapshot, check_references

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
RESOLVER = "backtest"


class BacktestError(ValueError):
    """An input line that cannot be read (the message says which line and why)."""


@dataclass(slots=True)
class _Record:
    alert: Alert
    id: int
    resolved_at: datetime | None = None


@dataclass(slots=True)
class _DeviceStatus:
    every: timedelta
    patient_id: str
    last_seen: datetime
    battery: float | None = None
    online: bool | None = None


@dataclass(slots=True)
class Backtest:
    """The simulated world: the roster, the patients' series, findings kept, alerts."""

    snap: RosterSnapshot
    devices: dict[str, _DeviceStatus]
    origin: datetime
    zone: ZoneInfo = STOCKHOLM
    resolve_after: timedelta = timedelta(hours=24)
    escalate_after: timedelta = timedelta(minutes=30)
    sweep_every: timedelta = timedelta(seconds=60)
    now: datetime = EARLIEST
    state: core.SeriesState = field(default_factory=core.SeriesState)
    findings: set[tuple[str, str, str, datetime]] = field(default_factory=set)
    open_alerts: OpenAlerts = field(default_factory=dict)
    records: list[_Record] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    _fingerprints: set[bytes] = field(default_factory=set)
    _last: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _poked: datetime | None = None
    pending: list[tuple[str, Pending]] = field(default_factory=list)

    # -- messages ----------------------------------------------------------------------

    def message(self, message: Message) -> None:
        self.advance(message.received_at)
        self.now = max(self.now, message.received_at)
        ingested = core.ingest(self.snap, [message])
        evaluation = core.evaluate(self.snap, self.state, ingested.readings, self.now,
                                   self.zone)
        self.pending.extend(evaluation.pending)
        kept = core.exclude_failed(ingested, evaluation.failed)
        for status in ingested.statuses:
            device = self.devices[status.device_id]
            if status.report.online is not False:
                device.last_seen = max(device.last_seen, status.at)
            device.online = status.report.online if status.report.online is not None \
                else device.online
            device.battery = status.report.battery if status.report.battery is not None \
                else device.battery
            self._poke()
        for device_id, seen in ingested.seen.items():
            device = self.devices[device_id]
            device.last_seen = max(device.last_seen, seen)
            device.battery = ingested.batteries.get(device_id, device.battery)
            self._poke()
        for rejection in ingested.rejections + kept:
            if (mark := fingerprint(rejection)) not in self._fingerprints:
                self._fingerprints.add(mark)
                self.rejections.append(rejection)
        self.alert(self.keep(evaluation.findings), evaluation.clears)
        self.state.add(ingested.readings)
        for r in ingested.readings:
            key = (r.patient_id, r.type.value)
            self._last[key] = max(self._last.get(key, r.measured_at), r.measured_at)

    def _poke(self) -> None:
        """A device notice may end (or a low battery begin) at the next sweep."""
        if self._poked is None:
            self._poked = self.now

    def keep(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings not kept before (the findings table's unique key)."""
        new = []
        for f in findings:
            key = (f.patient_id, f.rule_key, f.reading_key, f.measured_at)
            if key not in self.findings:
                self.findings.add(key)
                new.append(f)
        return new

    def alert(self, new: list[Finding], clears: Iterable[tuple[str, Any]] = ()) -> None:
        recent = core.alertable(new, self.now)
        self.apply(decide_findings(recent, clears, self.open_alerts, self.snap.teams,
                                   self.now))

    def apply(self, plan: Plan) -> None:
        ids = {key: alert.id for key, alert in self.open_alerts.items()
               if alert.id is not None}
        for change in plan.changes:
            alert = change.alert
            key = (alert.patient_id, alert.rule)
            alert_id = alert.id if alert.id is not None else ids.get(key)
            if alert_id is None:
                alert_id = len(self.records) + 1
                self.records.append(_Record(alert, alert_id))
            ids[key] = alert_id
            alert = alert.model_copy(update={"id": alert_id})
            record = self.records[alert_id - 1]
            record.alert = alert
            if alert.status is Status.RESOLVED:
                record.resolved_at = record.resolved_at or alert.updated_at
                self.open_alerts.pop(key, None)
            else:
                self.open_alerts[key] = alert

    # -- the clock ----------------------------------------------------------------------

    def advance(self, until: datetime) -> None:
        """Run what is due before `until`: automatic resolutions at their exact time, and
        sweeps at the grid's ticks where a check can be due."""
        while True:
            resolve_at = min((a.opened_at + self.resolve_after
                              for a in self.open_alerts.values()), default=None)
            tick = self._next_tick()
            if resolve_at is not None and resolve_at <= until and (
                    tick is None or resolve_at <= tick):
                self.now = max(self.now, resolve_at)
                due = [a for a in self.open_alerts.values()
                       if a.opened_at + self.resolve_after <= resolve_at]
                self.apply(Plan([resolve_quietly(a, resolve_at, RESOLVER,
                                                 "löst av backtesten (ingen hanterar korgen)")
                                 for a in due]))
                continue
            if tick is None or tick > until:
                return
            self.now = tick
            self._poked = None
            self.sweep()
            if any(p.due_at <= tick for _, p in self.pending):
                held = core.evaluate_pending(self.snap, self.state, self.pending, tick,
                                             self.zone)
                self.pending = held.pending
                self.alert(self.keep(held.findings))

    def _grid(self, instant: datetime) -> datetime:
        """The first sweep tick strictly after `instant`."""
        step = self.sweep_every.total_seconds()
        k = math.floor((instant - self.origin).total_seconds() / step) + 1
        return self.origin + timedelta(seconds=k * step)

    def _next_tick(self) -> datetime | None:
        due: list[datetime] = []
        if self._poked is not None:
            due.append(self._poked)
        open_keys = {rule for _, rule in self.open_alerts}
        for device_id, device in self.devices.items():
            if device.patient_id in self.snap.teams and \
                    f"device:silent:{device_id}" not in open_keys:
                due.append(device.last_seen + device.every)
        for patient, rules in self.snap.rules.items():
            for rule in rules.rules:
                if isinstance(rule, MissedRule) and (
                        deadline := self._deadline(patient, rule)) is not None:
                    due.append(deadline)
        due.extend(p.due_at for _, p in self.pending)
        for alert in self.open_alerts.values():
            if (alert.level is Level.RED and alert.category == "clinical"
                    and alert.status is Status.OPEN
                    and alert.route is Route.FAST_VARDKONTAKT):
                due.append(alert.level_since + self.escalate_after - timedelta(microseconds=1))
        # what is overdue is looked at on the next tick
        return self._grid(max(min(due), self.now)) if due else None

    def _deadline(self, patient: str, rule: MissedRule) -> datetime | None:
        """The next instant at which this plan can be missed (None: judged already)."""
        if rule.before is None:
            last = self._last.get((patient, rule.measurement.value), self.origin)
            deadline = max(last, self.origin) + rule.every
            judged = (patient, rule.key, f"missed:{deadline.isoformat()}", deadline)
            return None if judged in self.findings else deadline
        local = self.now.astimezone(self.zone)
        for days in range(3):
            day = local.date() + timedelta(days=days)
            deadline = datetime.combine(day, rule.before, tzinfo=self.zone).astimezone(UTC)
            if deadline > self.now:
                return deadline - timedelta(microseconds=1)
        raise AssertionError("a deadline within three days")

    def sweep(self) -> None:
        """The live runner's sweep: devices, then missed measurements (not for patients
        with a silent device), then escalations."""
        notices = {k: a for k, a in self.open_alerts.items() if a.category == "device"}
        open_keys = {rule for _, rule in notices}
        found = [
            f for device_id, d in sorted(self.devices.items())
            if d.patient_id in self.snap.teams
            for f in device_findings(
                DeviceState(device_id, d.patient_id, d.every, d.last_seen, d.battery, d.online),
                self.now, battery_notice_open=battery_key(device_id) in open_keys,
                zone=self.zone)
        ]
        plan = decide_findings([f for f in found if f.rule_key not in open_keys], (), {},
                               self.snap.teams, self.now)
        plan.changes.extend(resolve_ended_notices(
            notices.values(), "device", {f.rule_key for f in found}, self.now,
            "mätaren hörs av igen").changes)
        self.apply(plan)
        silent = {f.patient_id for f in found if f.rule_key.startswith("device:silent:")}
        plans = [
            finding for patient, rules in sorted(self.snap.rules.items())
            if patient not in silent and patient in self.snap.teams
            for rule in rules.rules if isinstance(rule, MissedRule)
            if (finding := missed(rule, patient_id=patient, version=rules.version,
                                  effective_from=rules.effective_from, now=self.now,
                                  zone=self.zone,
                                  last=self._last.get((patient, rule.measurement.value))))
        ]
        self.apply(decide_findings(self.keep(plans), (), self.open_alerts, self.snap.teams,
                                   self.now))
        self.apply(decide_escalations(list(self.open_alerts.values()), self.snap.teams,
                                      self.now, self.escalate_after))

    # -- output -------------------------------------------------------------------------

    def output(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        for record in self.records:
            a = record.alert
            yield {"kind": "alert", "patient_id": a.patient_id, "rule": a.rule,
                   "measurement": a.measurement.value if a.measurement else None,
                   "level": a.level.value, "category": a.category, "route": a.route.value,
                   "opened_at": _iso(a.opened_at), "occurrences": a.occurrences,
                   "explanation": a.explanation, "cleared_at": _iso(a.cleared_at),
                   "resolved_at": _iso(record.resolved_at)}
        for j in self.rejections:
            yield {"kind": "rejection", "reason": j.reason.value, "detail": j.detail,
                   "topic": j.topic, "received_at": _iso(j.received_at)}
        yield self.summary(start, end)

    def summary(self, start: datetime, end: datetime) -> dict[str, Any]:
        patients = len(self.snap.teams)
        weeks = patients * max((end - start).total_seconds(), 0) / (7 * 86400)
        levels: Counter[str] = Counter()
        routes: Counter[str] = Counter()
        rules: Counter[str] = Counter()
        for record in self.records:
            a = record.alert
            levels["notice" if a.category != "clinical" else a.level.value] += 1
            routes[a.route.value] += 1
            # a device notice's rule names its device: count by kind
            rules[a.rule.rsplit(":", 1)[0] if a.category == "device" else a.rule] += 1
        per_week = {k: round(levels[k] / weeks, 3) if weeks else 0.0
                    for k in ("red", "yellow", "notice")}
        return {"kind": "summary", "patients": patients, "patient_weeks": round(weeks, 3),
                "alerts_per_patient_week": per_week, "by_route": dict(sorted(routes.items())),
                "by_rule": dict(sorted(rules.items())),
                "rejections": len(self.rejections)}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def snapshot_of(roster: RosterFile, effective_from: datetime,
                zone: ZoneInfo = STOCKHOLM) -> RosterSnapshot:
    """The roster as a live pipeline would read it after `hemmon roster load`."""
    units = {u.id: u for u in roster.units}
    return RosterSnapshot(
        revision=1,
        devices={d.id: Device(id=d.id, patient_id=p.id, format=d.format)
                 for p in roster.patients for d in p.devices},
        rules={p.id: PatientRules(version=1, rules=effective_rules(p.groups, p.rules),
                                  effective_from=effective_from) for p in roster.patients},
        teams={p.id: CareTeam(office_hours=OfficeHours.parse(units[p.unit].office_hours, zone),
                              has_mobile_team=p.mobile_team is not None,
                              red_to_mobile_team=p.red_to_mobile_team)
               for p in roster.patients},
    )


def read_messages(lines: Iterable[str]) -> list[Message]:
    """Messages from JSON lines, in received order (stable for equal times)."""
    out: list[tuple[datetime, int, Message]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            topic = item["topic"]
            payload = item["payload"]
            raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            at = item.get("received_at")
            received = datetime.fromisoformat(at) if at else _measured(topic, raw)
            if received.tzinfo is None:
                raise ValueError("received_at needs a time zone offset")
        except (ValueError, KeyError, TypeError) as exc:
            raise BacktestError(f"line {number}: {exc}") from exc
        out.append((received, number, Message(str(topic), raw, received.astimezone(UTC))))
    return [m for _, _, m in sorted(out, key=lambda t: (t[0], t[1]))]


def _measured(topic: str, raw: bytes) -> datetime:
    """A message without received_at arrived when its latest reading was measured."""
    far = datetime(9999, 1, 1, tzinfo=UTC)
    devices = _AnyDevice()
    found = normalise(raw, topic=topic, devices=devices, received_at=far)
    times = [r.measured_at for r in found.readings]
    if not times:
        raise ValueError("no received_at, and no reading whose measured time could stand in")
    return max(times)


class _AnyDevice(Mapping[str, Device]):
    """Every device id known (only to read a measured time before the roster applies)."""

    def __getitem__(self, key: str) -> Device:
        return Device(id=key, patient_id="?")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


def run_backtest(roster: RosterFile | Mapping[str, Any],
                 messages: Iterable[Message | Mapping[str, Any]], *,
                 start: datetime | None = None, end: datetime | None = None,
                 resolve_after: timedelta = timedelta(hours=24),
                 escalate_after: timedelta = timedelta(minutes=30),
                 zone: ZoneInfo = STOCKHOLM) -> list[dict[str, Any]]:
    """The alerts, rejections and a summary that these messages give under this roster."""
    if not isinstance(roster, RosterFile):
        roster = RosterFile.model_validate(roster)
        check_references(roster)
    given = list(messages)
    items = (sorted((m for m in given if isinstance(m, Message)), key=lambda m: m.received_at)
             if all(isinstance(m, Message) for m in given)
             else read_messages(json.dumps(m) for m in given if not isinstance(m, Message)))
    ordered = [m for m in items if (start is None or m.received_at >= start)
               and (end is None or m.received_at < end)]
    first = start or (ordered[0].received_at if ordered else datetime.now(UTC))
    snap = snapshot_of(roster, first, zone)
    # without --to, the clock runs on past the last message until what it held for a
    # re-measurement (a rule's `confirm`) has been decided
    last = end or (ordered[-1].received_at + core.confirm_window(snap) if ordered else first)
    world = Backtest(
        snap=snap, origin=first, zone=zone, resolve_after=resolve_after,
        escalate_after=escalate_after, now=first,
        devices={d.id: _DeviceStatus(every=d.expect_every, patient_id=p.id, last_seen=first)
                 for p in roster.patients for d in p.devices})
    for patient in snap.rules:
        world.state.install(patient, EARLIEST, ())
    for message in ordered:
        world.message(message)
    world.advance(last)
    return list(world.output(first, last))
