"""report.html: the evidence for clinicians, in Swedish, plots as inline SVG (no script)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from .population import STOCKHOLM

KINDS = {
    "hf_decompensation": ("Hjärtsviktsförsämring", "body_weight", "Vikt (kg)"),
    "copd_exacerbation": ("KOL-exacerbation", "spo2", "Syremättnad (%)"),
    "hypertensive_crisis": ("Hypertensiv kris", "blood_pressure_systolic",
                            "Systoliskt blodtryck (mmHg)"),
    "hypoglycaemia": ("Hypoglykemi", "blood_glucose", "Blodsocker (mmol/L)"),
    "sepsis": ("Sepsisliknande NEWS2-stegring", "body_temperature", "Temperatur (°C)"),
}
CATEGORIES = {"clinical": "Kliniska larm", "adherence": "Uteblivna mätningar",
              "device": "Mätarnotiser"}
GOALS = {
    "every_deterioration_alerts": "Varje injicerad försämring larmar",
    "median_delay_within_a_day": "Mediandröjsmål högst 1 dygn från start",
    "acute_values_at_first_reading": ("Hypoglykemi, hypertensiv kris och hypoxi larmar vid "
                                      "första avvikande mätning (högst 15 min)"),
    "non_actionable_within_goal": "Högst 0,1 icke-åtgärdbara larm per patientvecka",
}
W, H, PAD = 640, 180, 40
MONTHS = ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec")


def _day(moment: datetime) -> str:
    local = moment.astimezone(STOCKHOLM)
    return f"{local.day} {MONTHS[local.month - 1]}"


def _num(value: float | None, decimals: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{decimals}f}".replace(".", ",")


def _series(messages: Sequence[Mapping[str, Any]], device: str, kind: str
            ) -> list[tuple[datetime, float]]:
    out = []
    for m in messages:
        payload = m["payload"]
        if not m["topic"].endswith(f"/{device}/readings") or not isinstance(payload, dict):
            continue
        for item in payload.get("measurements", []):
            if item.get("type") == kind:
                out.append((datetime.fromisoformat(payload["measured_at"]), float(item["value"])))
    return sorted(out)


def _chart(points: list[tuple[datetime, float]], start: datetime, end: datetime,
           window: tuple[datetime, datetime], alerts: list[datetime], label: str) -> str:
    if not points:
        return "<p>Inga mätningar.</p>"
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    low, high = low - 0.1 * span, high + 0.1 * span
    total = (end - start).total_seconds()

    def x(t: datetime) -> float:
        return PAD + (W - 2 * PAD) * max(0.0, min(1.0, (t - start).total_seconds() / total))

    def y(v: float) -> float:
        return H - PAD / 2 - (H - PAD) * (v - low) / (high - low)

    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    parts = [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(label)}">',
        f'<rect x="{x(window[0]):.1f}" y="{PAD / 2:.0f}" '
        f'width="{max(1.0, x(window[1]) - x(window[0])):.1f}" height="{H - PAD:.0f}" '
        'fill="#fde2c8"/>',
        f'<polyline points="{path}" fill="none" stroke="#1f4e79" stroke-width="1.5"/>',
    ]
    parts += [f'<line x1="{x(a):.1f}" x2="{x(a):.1f}" y1="{PAD / 2:.0f}" y2="{H - PAD / 2:.0f}"'
              ' stroke="#c0392b" stroke-width="2"/>' for a in alerts]
    parts += [
        f'<text x="{PAD - 4}" y="{y(high):.0f}" font-size="11" text-anchor="end" dy="10">'
        f'{_num(high)}</text>',
        f'<text x="{PAD - 4}" y="{y(low):.0f}" font-size="11" text-anchor="end">'
        f'{_num(low)}</text>',
        f'<text x="{PAD}" y="{H - 4}" font-size="11">{_day(start)}</text>',
        f'<text x="{W - PAD}" y="{H - 4}" font-size="11" text-anchor="end">{_day(end)}</text>',
        f'<text x="{W / 2}" y="12" font-size="12" text-anchor="middle">{escape(label)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def _bars(rows: list[tuple[str, float]]) -> str:
    top = max((v for _, v in rows), default=0.0) or 1.0
    height = 24 * len(rows) + 10
    parts = [f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
             'aria-label="Larm per patientvecka">']
    for i, (label, value) in enumerate(rows):
        width = (W - 260) * value / top
        parts.append(f'<text x="0" y="{24 * i + 17}" font-size="12">{escape(label)}</text>'
                     f'<rect x="200" y="{24 * i + 5}" width="{width:.1f}" height="16" '
                     f'fill="#1f4e79"/><text x="{205 + width:.1f}" y="{24 * i + 17}" '
                     f'font-size="12">{_num(value, 3)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _examples(evidence: Mapping[str, Any], truth: Mapping[str, Any],
              messages: Sequence[Mapping[str, Any]],
              alerts: Sequence[Mapping[str, Any]]) -> list[str]:
    start, end = (datetime.fromisoformat(truth["start"]), datetime.fromisoformat(truth["end"]))
    html = []
    for kind in evidence["events"]:
        event = next(e for e in truth["events"] if e["kind"] == kind)
        name, measurement, label = KINDS.get(kind, (kind, "heart_rate", "Puls"))
        device = "dev-" + event["patient_id"].split("-", 1)[1]
        opened = [datetime.fromisoformat(a["opened_at"]) for a in alerts
                  if a["patient_id"] == event["patient_id"]
                  and a.get("category", "clinical") == "clinical"]
        window = (datetime.fromisoformat(event["start"]), datetime.fromisoformat(event["end"]))
        html.append(f"<h3>{escape(name)}: {escape(event['patient_id'])}</h3>")
        html.append(_chart(_series(messages, device, measurement), start, end, window, opened,
                           label))
    return html


def render(evidence: Mapping[str, Any], truth: Mapping[str, Any],
           messages: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]) -> str:
    """The whole page."""
    alerts = [r for r in records if r.get("kind") == "alert"]
    goals = "".join(
        f"<tr><td>{escape(GOALS.get(k, k))}</td><td>{'ja' if ok else '<b>nej</b>'}</td></tr>"
        for k, ok in evidence["goals"].items())
    events = "".join(
        f"<tr><td>{escape(KINDS.get(k, (k,))[0])}</td><td>{f['events']}</td>"
        f"<td>{f['detected']}</td><td>{_num(f['sensitivity'], 2)}</td>"
        f"<td>{_num(f['median_delay_hours'])}</td><td>{_num(f['worst_delay_hours'])}</td>"
        f"<td>{_num(f['worst_delay_from_first_sign_minutes'])}</td></tr>"
        for k, f in evidence["events"].items())
    rows = [(f"{CATEGORIES.get(c, c)}, {'röda' if lvl == 'red' else 'gula'}", v)
            for c, levels in evidence["alerts"]["per_patient_week"].items()
            for lvl, v in levels.items()]
    na = evidence["non_actionable"]
    by_rule = "".join(f"<li>{escape(rule)}: {n}</li>" for rule, n in na["by_rule"].items())
    adherence = evidence["adherence"]
    return "\n".join([
        "<!doctype html>", '<html lang="sv"><head><meta charset="utf-8">',
        "<title>hemmon: evidens från simulerad kohort</title>",
        "<style>body{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:14px}"
        "td,th{border:1px solid #ccc;padding:4px 6px}"
        "th{background:#eef}</style></head><body>",
        "<h1>Evidens från en simulerad kohort</h1>",
        f"<p>{truth['patients']} simulerade patienter i {truth['days']} dygn (frö "
        f"{truth['seed']}), {_num(evidence['patient_weeks'])} patientveckor. Reglerna och "
        "larmflödet är hemmons egna, körda på historiken med en simulerad klocka; ingen "
        "sjuksköterska arbetar i inkorgen, så ett larm räknas som åtgärdat efter ett dygn.</p>",
        "<h2>Mål</h2><table>", goals, "</table>",
        "<h2>Upptäckta försämringar</h2><table><tr><th>Händelse</th><th>Antal</th>"
        "<th>Larmade</th><th>Sensitivitet</th><th>Mediandröjsmål (h)</th><th>Längsta (h)</th>"
        "<th>Från första avvikande mätning, längst (min)</th></tr>", events, "</table>",
        "<p>Dröjsmålet räknas från försämringens fysiologiska start, inte från den dag "
        "riktlinjens kriterium (t.ex. mer än 2 kg på 3 dygn) uppfylls.</p>",
        "<h2>Larmbörda per patientvecka</h2>", _bars(rows),
        f"<h2>Icke-åtgärdbara larm</h2><p>{na['count']} kliniska larm utanför varje "
        f"försämrings tidsfönster: {_num(na['per_patient_week'], 3)} per patientvecka, "
        f"{_num(100 * na['share'])} % av de kliniska larmen.</p><ul>{by_rule}</ul>",
        f"<h2>Följsamhet och mätare</h2><p>Morgonmätningar tagna: {adherence['taken_mornings']}"
        f" av {adherence['planned_mornings']}. Notiser om uteblivna mätningar: "
        f"{evidence['notices']['adherence']['count']}; mätarnotiser (tyst mätare, lågt "
        f"batteri): {evidence['notices']['device']['count']}.</p>",
        "<h2>Exempel</h2><p>Skuggat: försämringens tidsfönster. Röda streck: kliniska larm.</p>",
        *_examples(evidence, truth, messages, alerts),
        "<h2>Begränsningar</h2><p>Populationen är simulerad: fysiologin, artefakterna och "
        "patienternas beteende (t.ex. att de mäter om när ett värde ser fel ut) är antaganden, "
        "och reglerna har justerats mot samma slags data. Siffrorna visar att mekanismen "
        "fungerar, inte hur den fungerar för verkliga patienter.</p>",
        "</body></html>",
    ])
