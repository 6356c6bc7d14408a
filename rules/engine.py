"""Evaluate a patient's readings against the patient's rules. Pure and deterministic.

Input: the rules, the stored readings around the ones to evaluate (each measurement's
series, by the time it was measured), and the readings to evaluate (`targets`). Output: the
findings, each tied to one rule and one reading, and the points where a threshold excursion
ended. Windows use the measured time, so a late reading is judged where it belongs; the
caller also re-evaluates the later readings whose windows a late reading falls into, which
makes the findings of threshold and rise/fall rules independent of arrival order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hemmon.ingest.model import MeasurementType

from .evaluate import Finding, threshold_level
from .explain import NAMES, number, quantity, threshold_explanation
from .model import ChangeRule, Level, MeanRule, News2Rule, Rule, ThresholdRule
from .news2 import PARAMETERS, news2

THRESHOLD_LOOKBACK = timedelta(days=7)
STOCKHOLM = ZoneInfo("Europe/Stockholm")
DAY = timedelta(days=1)
URGENT_TOTAL = 5
# How far past the limit a value must come back before an excursion ends, by measurement.
CLEAR_MARGINS: dict[MeasurementType, float] = {
    MeasurementType.HEART_RATE: 5, MeasurementType.SPO2: 1,
    MeasurementType.BLOOD_PRESSURE_SYSTOLIC: 5, MeasurementType.BLOOD_PRESSURE_DIASTOLIC: 5,
    MeasurementType.BODY_WEIGHT: 0.5, MeasurementType.BODY_TEMPERATURE: 0.2,
    MeasurementType.RESPIRATORY_RATE: 2, MeasurementType.BLOOD_GLUCOSE: 0.3,
}


@dataclass(frozen=True, slots=True)
class Point:
    """A stored reading as the engine sees it."""

    type: MeasurementType
    value: float
    measured_at: datetime
    key: str
    """device/message: with the type and time, what identifies the reading."""
    on_oxygen: bool | None = None


@dataclass(frozen=True, slots=True)
class Clear:
    """A threshold excursion ended at this reading (back past the limit with margin)."""

    rule_key: str
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class Pending:
    """A finding held back for a re-measurement: evaluate the reading again at `due_at`
    (with `now` at or after it); a normal re-measurement by then cancels it."""

    rule_key: str
    reading_key: str
    measured_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    findings: list[Finding]
    clears: list[Clear]
    pending: list[Pending] = field(default_factory=list)


def measurements_needed(rules: Iterable[Rule], kinds: Iterable[MeasurementType]
                        ) -> set[MeasurementType]:
    """The series a batch of these measurement types needs loaded for these rules."""
    needed = set(kinds)
    if any(isinstance(rule, News2Rule) for rule in rules) and needed & set(PARAMETERS):
        needed |= set(PARAMETERS)
    return needed


def lookback(rules: Iterable[Rule]) -> timedelta:
    """How far before a reading the engine looks, for these rules (a window of whole days
    starts at a local midnight, up to a day before `within` hours)."""
    spans = [THRESHOLD_LOOKBACK]
    for rule in rules:
        if isinstance(rule, ChangeRule | MeanRule | News2Rule):
            spans.append(rule.within + (DAY if _whole_days(rule.within) else timedelta()))
        if isinstance(rule, ThresholdRule | ChangeRule) and rule.confirm is not None:
            spans.append(THRESHOLD_LOOKBACK + rule.confirm)
    return max(spans)


def _whole_days(span: timedelta) -> bool:
    return span >= DAY and span % DAY == timedelta()


def window_start(within: timedelta, at: datetime, zone: ZoneInfo = STOCKHOLM) -> datetime:
    """Where a window of `within` before `at` begins: whole days are calendar days in the
    zone ("3 dygn" before Thursday 07:20 begins Monday 00:00 local), anything else is
    exact. Built on the local date, so a day of summer-time change is still one day."""
    if not _whole_days(within):
        return at - within
    day = at.astimezone(zone).date() - timedelta(days=within.days)
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _window(series: Sequence[Point], start: datetime, end: datetime) -> Sequence[Point]:
    times = [p.measured_at for p in series]
    return series[bisect_left(times, start):bisect_right(times, end)]


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    if days >= 1 and days == int(days):
        return f"{int(days)} dygn"
    return f"{number(span.total_seconds() / 3600)} timmar"


class _Evaluator:
    def __init__(self, patient_id: str, version: int,
                 series: Mapping[MeasurementType, Sequence[Point]], zone: ZoneInfo,
                 now: datetime | None) -> None:
        self.patient_id, self.version, self.series = patient_id, version, series
        self.zone, self.now = zone, now
        self.thresholds: dict[MeasurementType, ThresholdRule] = {}

    def confirmed(self, rule: ThresholdRule | ChangeRule, target: Point, out: Outcome,
                  breaks: Callable[[Point], bool], normal: Callable[[Point], bool]) -> bool:
        """Whether a breaking reading may alert now, under the rule's `confirm` wait.

        Yes when a reading just before it broke too (it confirms), when a re-measurement
        within the wait is neither normal nor breaking (a value at the limit confirms), or
        when the wait is over without one. No when every re-measurement is clearly normal
        (cold fingers, stairs), when a re-measurement breaks (it alerts itself, confirmed by
        this one), or while the wait is still running (then it is pending)."""
        if rule.confirm is None:
            return True
        own = self.series.get(target.type, ())
        before = _window(own, target.measured_at - rule.confirm, target.measured_at)
        if any(p.measured_at < target.measured_at and breaks(p) for p in before):
            return True
        after = [p for p in _window(own, target.measured_at,
                                    target.measured_at + rule.confirm)
                 if p.measured_at > target.measured_at]
        if after:
            return not any(normal(p) or breaks(p) for p in after)
        due = target.measured_at + rule.confirm
        if self.now is not None and self.now < due:
            out.pending.append(Pending(rule.key, target.key, target.measured_at, due))
            return False
        return True

    def finding(self, rule: Rule, target: Point, level: Level, value: float, limit: float,
                direction: str, explanation: str,
                measurement: MeasurementType | None = None) -> Finding:
        return Finding(
            patient_id=self.patient_id, rule_key=rule.key, rule_version=self.version,
            measurement=measurement if measurement is not None else target.type, level=level,
            value=value, limit=limit, direction="above" if direction == "above" else "below",
            measured_at=target.measured_at, reading_key=target.key, explanation=explanation,
        )

    def threshold(self, rule: ThresholdRule, target: Point, out: Outcome) -> None:
        """A breaking reading is a finding; a return past limit +- margin ends the excursion."""
        crossed = threshold_level(rule, target.value)
        if crossed is not None:
            level, limit, direction = crossed
            # A re-measurement is normal when it is back inside every limit on the side
            # crossed by half the clearing margin: a COPD patient's 88 against a floor of
            # 88 is at the limit and confirms; a pulse of 97 after a 123 against 100 is the
            # patient at rest.
            bound = _inner(rule, direction) + (
                -_margin(rule) / 2 if direction == "above" else _margin(rule) / 2)
            if not self.confirmed(rule, target, out,
                                  lambda p: threshold_level(rule, p.value) is not None,
                                  lambda p: (p.value <= bound if direction == "above"
                                             else p.value >= bound)):
                return
            out.findings.append(self.finding(
                rule, target, level, target.value, limit, direction,
                threshold_explanation(target.type, target.value, level, limit, direction)))
            return
        history = _window(self.series[target.type], target.measured_at - THRESHOLD_LOOKBACK,
                          target.measured_at)
        for point, cleared in excursion_ends(rule, history):
            if cleared and point.measured_at == target.measured_at:
                out.clears.append(Clear(rule.key, target.measured_at))

    def _change(self, rule: ChangeRule, target: Point) -> tuple[Point, float] | None:
        """The window's low (high) and the change from it to the target."""
        window = _window(self.series[target.type],
                         window_start(rule.within, target.measured_at, self.zone),
                         target.measured_at)
        if not window:
            return None
        rise = rule.kind == "rise"
        if rule.baseline == "median":
            values = sorted(p.value for p in window)
            middle = len(values) // 2
            value = (values[middle] if len(values) % 2
                     else (values[middle - 1] + values[middle]) / 2)
            base = Point(target.type, value, window[0].measured_at, "median")
        else:
            base = (min(window, key=lambda p: p.value) if rise
                    else max(window, key=lambda p: p.value))
        # rounded: 81.2 - 80.0 is 1.2000000000000028 in floating point, not more than 1.2
        change = target.value - base.value if rise else base.value - target.value
        return base, round(change, 6)

    def _change_level(self, rule: ChangeRule, target: Point) -> tuple[Level, float] | None:
        found = self._change(rule, target)
        if found is None:
            return None
        change = found[1]
        if change > rule.above:
            return rule.level, rule.above
        if rule.yellow_above is not None and change > rule.yellow_above:
            return Level.YELLOW, rule.yellow_above
        return None

    def change(self, rule: ChangeRule, target: Point, out: Outcome) -> None:
        stepped = self._change_level(rule, target)
        found = self._change(rule, target)
        if stepped is None or found is None:
            return
        if not self.confirmed(rule, target, out,
                              lambda p: self._change_level(rule, p) is not None,
                              lambda p: self._change_level(rule, p) is None):
            return
        level, limit_value = stepped
        base, change = found
        rise = rule.kind == "rise"
        sign = "+" if rise else "−"
        unit = quantity(target.type, 0).split(" ", 1)[1]
        limit = f"{limit_value:.1f}".replace(".", ",")
        span = (f"från medianen för {_days(rule.within)}" if rule.baseline == "median"
                else f"på {_days(rule.within)}")
        out.findings.append(self.finding(
            rule, target, level, change, limit_value, "above" if rise else "below",
            f"{NAMES[target.type]} {sign}{number(change)} {unit} {span}"
            f" ({number(base.value)} -> {quantity(target.type, target.value)}), gräns"
            f" {limit} {unit}"))

    def mean(self, rule: MeanRule, target: Point, out: Outcome) -> None:
        window = _window(self.series[target.type],
                         window_start(rule.within, target.measured_at, self.zone),
                         target.measured_at)
        # A reading outside the single-reading limits has its own alert: left out, a
        # two-day crisis does not become a week of notices about the mean (ESH 2023: the
        # home mean follows the treatment's course, acute values are judged one by one).
        limit_rule = self.thresholds.get(target.type)
        if limit_rule is not None:
            window = [p for p in window if threshold_level(limit_rule, p.value) is None]
        if len(window) < rule.min_count:
            return
        mean = sum(p.value for p in window) / len(window)
        for limit, direction, side in ((rule.above, "above", "över"),
                                       (rule.below, "below", "under")):
            if limit is not None and ((mean > limit) if direction == "above" else (mean < limit)):
                out.findings.append(self.finding(
                    rule, target, rule.level, mean, limit, direction,
                    f"Medelvärde {NAMES[target.type].lower()} {_days(rule.within)}:"
                    f" {quantity(target.type, mean)} ({len(window)} mätningar), {side} gränsen"
                    f" {quantity(target.type, limit)}"))
                return

    def news2(self, rule: News2Rule, target: Point, out: Outcome) -> None:
        vitals: dict[MeasurementType, float] = {}
        on_oxygen = None
        for kind in PARAMETERS:
            window = _window(self.series.get(kind, ()), target.measured_at - rule.within,
                             target.measured_at)
            if window:
                vitals[kind] = window[-1].value
                if kind is MeasurementType.SPO2:
                    on_oxygen = window[-1].on_oxygen
        score = news2(vitals, scale=rule.scale, on_oxygen=on_oxygen)
        # A single parameter scoring 3 is already a red threshold alert of its own; NEWS2
        # adds what single limits miss: several vitals a little off at once.
        if score.total < URGENT_TOTAL:
            return
        parts = ", ".join(f"{name} {points}" for name, points in score.scores.items() if points)
        partial = f"; delpoäng saknas för {', '.join(score.missing)}" if score.partial else ""
        word = "akut" if score.response == "emergency" else "brådskande"
        out.findings.append(Finding(
            patient_id=self.patient_id, rule_key=rule.key, rule_version=self.version,
            measurement=None, level=Level.RED, value=score.total, limit=5, direction="above",
            measured_at=target.measured_at, reading_key=target.key,
            explanation=f"NEWS2 {score.total} ({word}, skala {rule.scale}): {parts}{partial}",
        ))


def excursion_ends(rule: ThresholdRule,
                   series: Iterable[Point]) -> Iterable[tuple[Point, bool]]:
    """(point, whether an excursion ended there) along a series, with hysteresis: it ends
    when a value is back inside every limit by the margin, or after `clear_after` readings
    in a row inside the limits. A value hovering at a limit does not end it."""
    margin = _margin(rule)
    active = False
    good = 0
    for point in series:
        ended = False
        if threshold_level(rule, point.value) is not None:
            active, good = True, 0
        elif active:
            good += 1
            if good >= rule.clear_after or _back_inside(rule, point.value, margin):
                active, ended = False, True
        yield point, ended


def _inner(rule: ThresholdRule, direction: str) -> float:
    """The limit nearest to normal on one side (the yellow one where there is one)."""
    if direction == "above":
        return min(v for v in (rule.yellow_above, rule.red_above) if v is not None)
    return max(v for v in (rule.yellow_below, rule.red_below) if v is not None)


def _margin(rule: ThresholdRule) -> float:
    return rule.clear_margin if rule.clear_margin is not None else (
        CLEAR_MARGINS[rule.measurement])


def _back_inside(rule: ThresholdRule, value: float, margin: float) -> bool:
    """Whether a value is back inside every limit by at least the margin."""
    above = [v for v in (rule.yellow_above, rule.red_above) if v is not None]
    below = [v for v in (rule.yellow_below, rule.red_below) if v is not None]
    return all(value <= a - margin for a in above) and all(value >= b + margin for b in below)


def evaluate_points(
    patient_id: str,
    rules: Sequence[Rule],
    version: int,
    series: Mapping[MeasurementType, Sequence[Point]],
    targets: Iterable[Point],
    *,
    now: datetime | None = None,
    zone: ZoneInfo = STOCKHOLM,
) -> Outcome:
    """Findings of every rule for each target, from the series (sorted by measured time).

    `now`, when given, is the clock: a finding whose rule waits for a re-measurement
    (`confirm`) and whose wait is still running is returned as pending, not as a finding.
    Without it the series is taken as complete (history, tests): the wait is over.
    `zone` makes whole-day windows calendar days (HEMMON_TIMEZONE)."""
    evaluator = _Evaluator(patient_id, version, series, zone, now)
    evaluator.thresholds = {r.measurement: r for r in rules if isinstance(r, ThresholdRule)}
    out = Outcome(findings=[], clears=[])
    vital = set(PARAMETERS)
    for target in targets:
        for rule in rules:
            if isinstance(rule, ThresholdRule) and rule.measurement == target.type:
                evaluator.threshold(rule, target, out)
            elif isinstance(rule, ChangeRule) and rule.measurement == target.type:
                evaluator.change(rule, target, out)
            elif isinstance(rule, MeanRule) and rule.measurement == target.type:
                evaluator.mean(rule, target, out)
            elif isinstance(rule, News2Rule) and target.type in vital:
                evaluator.news2(rule, target, out)
    return out


def evaluate_due(
    patient_id: str,
    rules: Sequence[Rule],
    version: int,
    series: Mapping[MeasurementType, Sequence[Point]],
    pending: Iterable[Pending],
    *,
    now: datetime,
    zone: ZoneInfo = STOCKHOLM,
) -> Outcome:
    """The findings of held-back readings whose wait has ended by `now` (the time-driven
    half of `confirm`): only the pending rule's finding, so nothing is found twice; a
    reading whose re-measurement came in the meantime is decided by it. Those still
    waiting come back as pending."""
    due = {(p.rule_key, p.reading_key, p.measured_at) for p in pending if p.due_at <= now}
    later = [p for p in pending if p.due_at > now]
    wanted = {(key, at) for _, key, at in due}
    targets = sorted((p for points in series.values() for p in points
                      if (p.key, p.measured_at) in wanted), key=lambda p: p.measured_at)
    outcome = evaluate_points(patient_id, rules, version, series, targets, now=now, zone=zone)
    return Outcome(
        findings=[f for f in outcome.findings
                  if (f.rule_key, f.reading_key, f.measured_at) in due],
        clears=[], pending=later)
