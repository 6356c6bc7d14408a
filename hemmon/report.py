"""`hemmon report`: the follow-up figures of SKR's learning follow-up, as HTML and CSV.

For a period (and optionally one unit): adherence per patient and overall (planned
measurements taken), alerts per patient-week by level, time to acknowledge by route, the
share handled by the fast vårdkontakt and by the mobile team, escalations, silent
devices, and readings per patient and day. The page draws its plots as inline SVG.
"""

from __future__ import annotations

import csv
import html
import io
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from hemmon.rules.model import MissedRule
from hemmon.rules.schedule import adherence
from hemmon.rules.templates import parse_rules

Connection = psycopg.Connection[Any]
ROUTES = {"fast_vardkontakt": "Fast vårdkontakt", "mobile_team": "Mobilt team",
          "unit_fallback": "Jourkontakt"}
LEVELS = {"red": "Röd", "yellow": "Gul"}


@dataclass
class Report:
    start: datetime
    end: datetime
    unit: str | None
    patients: int = 0
    adherence: dict[str, tuple[int, int]] = field(default_factory=dict)
    alerts_by_level: dict[str, int] = field(default_factory=dict)
    alerts_by_route: dict[str, int] = field(default_factory=dict)
    acknowledge_minutes: dict[str, list[float]] = field(default_factory=dict)
    escalations: int = 0
    silent_device_notices: int = 0
    adherence_notices: int = 0
    readings: int = 0
    readings_per_day: dict[str, int] = field(default_factory=dict)

    @property
    def weeks(self) -> float:
        return (self.end - self.start) / timedelta(weeks=1)

    @property
    def overall_adherence(self) -> float | None:
        planned = sum(p for p, _ in self.adherence.values())
        return sum(t for _, t in self.adherence.values()) / planned if planned else None

    def per_patient_week(self, count: int) -> float:
        return count / (self.patients * self.weeks) if self.patients and self.weeks else 0.0


def build(conn: Connection, start: datetime, end: datetime, unit: str | None, zone: ZoneInfo,
          progress: bool = False) -> Report:
    """The figures, read from the database."""
    report = Report(start=start, end=end, unit=unit)
    patients = conn.execute(
        "SELECT DISTINCT ON (p.id) p.id, v.rules FROM patients p"
        " LEFT JOIN rule_versions v ON v.patient_id = p.id"
        " WHERE (%s::text IS NULL OR p.unit_id = %s) ORDER BY p.id, v.version DESC",
        (unit, unit)).fetchall()
    report.patients = len(patients)
    for index, (patient, rules) in enumerate(patients, 1):
        plans = [r for r in parse_rules(rules or []) if isinstance(r, MissedRule)]
        for plan in plans:
            taken = [row[0] for row in conn.execute(
                "SELECT measured_at FROM readings WHERE patient_id = %s AND type = %s"
                " AND measured_at >= %s AND measured_at < %s",
                (patient, plan.measurement.value, start - plan.every, end))]
            planned, done = adherence(plan, taken, start, end, zone)
            old = report.adherence.get(patient, (0, 0))
            report.adherence[patient] = (old[0] + planned, old[1] + done)
        if progress and (index % 50 == 0 or index == len(patients)):
            bar = "#" * int(30 * index / len(patients))
            print(f"\rföljsamhet [{bar:<30}] {index}/{len(patients)} patienter", end="",
                  file=sys.stderr, flush=True)
    if progress and patients:
        print(file=sys.stderr)
    scope = ("FROM alerts a JOIN patients p ON p.id = a.patient_id"
             " WHERE a.opened_at >= %s AND a.opened_at < %s"
             " AND (%s::text IS NULL OR p.unit_id = %s)")
    args = (start, end, unit, unit)
    for category, rule_kind, level, route, acknowledged, opened, escalated in conn.execute(
        "SELECT a.category, split_part(a.rule, ':', 1) || ':' || split_part(a.rule, ':', 2),"
        " a.level, a.route, a.acknowledged_at, a.opened_at, a.escalated_at " + scope, args
    ):
        if category == "device":
            report.silent_device_notices += rule_kind == "device:silent"
            continue
        if category == "adherence":
            report.adherence_notices += 1
            continue
        report.alerts_by_level[level] = report.alerts_by_level.get(level, 0) + 1
        report.alerts_by_route[route] = report.alerts_by_route.get(route, 0) + 1
        report.escalations += escalated is not None
        if acknowledged is not None:
            report.acknowledge_minutes.setdefault(route, []).append(
                (acknowledged - opened).total_seconds() / 60)
    days: dict[str, int] = defaultdict(int)
    for day, count in conn.execute(
        "SELECT (r.measured_at AT TIME ZONE %s)::date, count(*) FROM readings r"
        " JOIN patients p ON p.id = r.patient_id WHERE r.measured_at >= %s"
        " AND r.measured_at < %s AND (%s::text IS NULL OR p.unit_id = %s) GROUP BY 1 ORDER BY 1",
        (str(zone), start, end, unit, unit),
    ):
        days[str(day)] = int(count)
    report.readings_per_day = dict(days)
    report.readings = sum(days.values())
    return report


def to_csv(report: Report) -> str:
    """One row per figure (and one per patient's adherence): section, key, value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    writer.writerow(["period", "from", report.start.isoformat()])
    writer.writerow(["period", "to", report.end.isoformat()])
    writer.writerow(["period", "unit", report.unit or "alla"])
    writer.writerow(["patients", "count", report.patients])
    for patient, (planned, taken) in sorted(report.adherence.items()):
        writer.writerow(["adherence_planned", patient, planned])
        writer.writerow(["adherence_taken", patient, taken])
    overall = report.overall_adherence
    writer.writerow(["adherence", "overall", "" if overall is None else f"{overall:.4f}"])
    for level, count in sorted(report.alerts_by_level.items()):
        writer.writerow(["alerts", level, count])
        writer.writerow(["alerts_per_patient_week", level,
                         f"{report.per_patient_week(count):.4f}"])
    for route, count in sorted(report.alerts_by_route.items()):
        writer.writerow(["alerts_by_route", route, count])
    for route, minutes in sorted(report.acknowledge_minutes.items()):
        writer.writerow(["acknowledge_minutes_median", route, f"{statistics.median(minutes):.1f}"])
    writer.writerow(["escalations", "count", report.escalations])
    writer.writerow(["adherence_notices", "count", report.adherence_notices])
    writer.writerow(["silent_device_notices", "count", report.silent_device_notices])
    writer.writerow(["readings", "count", report.readings])
    for day, count in sorted(report.readings_per_day.items()):
        writer.writerow(["readings_per_day", day, count])
    return out.getvalue()


def _bars(values: dict[str, float], unit: str = "") -> str:
    if not values:
        return "<p class='muted'>Inga data i perioden.</p>"
    top = max(values.values()) or 1
    width, row = 560, 26
    parts = [f"<svg class='bars' width='{width}' height='{row * len(values) + 4}'"
             f" viewBox='0 0 {width} {row * len(values) + 4}'>"]
    for i, (label, value) in enumerate(values.items()):
        bar = int((width - 230) * value / top)
        y = i * row + 2
        parts.append(f"<text x='0' y='{y + 16}'>{html.escape(label)}</text>"
                     f"<rect x='150' y='{y + 3}' width='{bar}' height='18' fill='#1d4f7a'/>"
                     f"<text x='{156 + bar}' y='{y + 16}'>{value:,.2f}{unit}</text>")
    parts.append("</svg>")
    return "".join(parts).replace(",", " ").replace(".", ",")


def to_html(report: Report) -> str:
    overall = report.overall_adherence
    adherence_text = "–" if overall is None else f"{overall * 100:.0f} %"
    per_week = {LEVELS.get(level, level): report.per_patient_week(count)
                for level, count in sorted(report.alerts_by_level.items())}
    routes = {ROUTES.get(route, route): count
              for route, count in sorted(report.alerts_by_route.items())}
    total = sum(routes.values()) or 1
    acknowledge = {ROUTES.get(route, route): statistics.median(minutes)
                   for route, minutes in sorted(report.acknowledge_minutes.items())}
    per_patient = {patient: taken / planned * 100 for patient, (planned, taken)
                   in sorted(report.adherence.items()) if planned}
    per_day = {day: count / max(report.patients, 1)
               for day, count in sorted(report.readings_per_day.items())}
    unit = html.escape(report.unit or "alla enheter")
    return f"""<!doctype html>
<html lang="sv"><head><meta charset="utf-8"><title>hemmon – uppföljning</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2430}}
h1{{font-size:1.4rem}} section{{margin-bottom:1.5rem}} .muted{{color:#5b6472}}
.figures{{display:flex;gap:2rem;flex-wrap:wrap}} .figure b{{display:block;font-size:1.6rem}}
svg text{{font-size:12px;fill:#1d2430}}</style></head><body>
<h1>Lärande uppföljning: hemmonitorering</h1>
<p class="muted">{report.start:%Y-%m-%d} – {report.end:%Y-%m-%d}, {unit}.
{report.patients} patienter, {report.weeks:.1f} veckor.</p>
<section class="figures">
<div class="figure"><b id="adherence">{adherence_text}</b>följsamhet
(planerade mätningar gjorda)</div>
<div class="figure"><b>{report.readings}</b>mätvärden</div>
<div class="figure"><b>{sum(report.alerts_by_level.values())}</b>kliniska larm</div>
<div class="figure"><b>{report.escalations}</b>eskaleringar</div>
<div class="figure"><b>{report.adherence_notices}</b>missade mätningar</div>
<div class="figure"><b>{report.silent_device_notices}</b>tysta mätare</div>
</section>
<section><h2>Larm per patientvecka, efter nivå</h2>{_bars(per_week)}</section>
<section><h2>Andel larm hos fast vårdkontakt och mobilt team</h2>
{_bars({k: v / total * 100 for k, v in routes.items()}, " %")}</section>
<section><h2>Tid till kvittens (median, minuter)</h2>{_bars(acknowledge, " min")}</section>
<section><h2>Följsamhet per patient (%)</h2>{_bars(per_patient, " %")}</section>
<section><h2>Mätvärden per patient och dygn</h2>{_bars(per_day)}</section>
</body></html>
"""
