"""Score a backtest's alerts against a cohort's ground truth. Pure.

An injected deterioration is detected by the first clinical alert for the patient opened
inside its window (start to end, recovery included). A clinical alert opened outside every
window of its patient is non-actionable: nothing the nurse could have done for it. Notices
(adherence, device) are counted apart: they go to the health centre, never as clinical.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from statistics import median
from typing import Any

# The goals of issue 12: every deterioration alerts, the median within a day of its
# start; an acute value at its first reading (a confirm wait of 15 minutes at most); at
# most 0.1 non-actionable alerts per patient-week.
MEDIAN_DELAY_GOAL = timedelta(days=1)
FIRST_READING_GOAL = timedelta(minutes=15)
NON_ACTIONABLE_GOAL = 0.1
AT_FIRST_READING = ("hypoglycaemia", "hypertensive_crisis", "copd_exacerbation")
"""Kinds whose first abnormal reading must alert at once (COPD: the hypoxia)."""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def _median_hours(delays: list[timedelta]) -> float | None:
    if not delays:
        return None
    return round(median(d.total_seconds() for d in delays) / 3600, 2)


def _detections(events: list[Mapping[str, Any]], alerts: list[Mapping[str, Any]]
                ) -> list[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    by_patient: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for alert in alerts:
        by_patient[alert["patient_id"]].append(alert)
    out = []
    for event in events:
        start, end = _time(event["start"]), _time(event["end"])
        inside = [a for a in by_patient[event["patient_id"]]
                  if start <= _time(a["opened_at"]) <= end]
        out.append((event, min(inside, key=lambda a: _time(a["opened_at"]), default=None)))
    return out


def _inside_any(alert: Mapping[str, Any], windows: Mapping[str, list[tuple[datetime, datetime]]]
                ) -> bool:
    opened = _time(alert["opened_at"])
    return any(s <= opened <= e for s, e in windows.get(alert["patient_id"], ()))


def _event_figures(pairs: list[tuple[Mapping[str, Any], Mapping[str, Any] | None]]
                   ) -> dict[str, Any]:
    kinds: dict[str, list[tuple[Mapping[str, Any], Mapping[str, Any] | None]]] = defaultdict(list)
    for pair in pairs:
        kinds[pair[0]["kind"]].append(pair)
    figures: dict[str, Any] = {}
    for kind, found in sorted(kinds.items()):
        delays = sorted(_time(a["opened_at"]) - _time(e["start"]) for e, a in found if a)
        from_sign = [_time(a["opened_at"]) - _time(e["first_sign"]) for e, a in found
                     if a and e.get("first_sign")]
        detected = sum(1 for _, a in found if a)
        figures[kind] = {
            "events": len(found), "detected": detected,
            "sensitivity": round(detected / len(found), 3),
            "median_delay_hours": _median_hours(delays),
            "worst_delay_hours": _hours(max(delays)) if delays else None,
            "worst_delay_from_first_sign_minutes": (
                round(max(from_sign).total_seconds() / 60, 1) if from_sign else None),
            "missed": [e["patient_id"] for e, a in found if a is None],
        }
    return figures


def _goals(events: Mapping[str, Any], non_actionable_rate: float) -> dict[str, bool]:
    def first_reading(kind: str, figures: Mapping[str, Any]) -> bool:
        worst = figures["worst_delay_from_first_sign_minutes"]
        return kind not in AT_FIRST_READING or worst is None or (
            worst <= FIRST_READING_GOAL.total_seconds() / 60)

    return {
        "every_deterioration_alerts": all(f["sensitivity"] == 1.0 for f in events.values()),
        "median_delay_within_a_day": all(
            f["median_delay_hours"] is not None
            and f["median_delay_hours"] <= _hours(MEDIAN_DELAY_GOAL) for f in events.values()),
        "acute_values_at_first_reading": all(first_reading(k, f) for k, f in events.items()),
        "non_actionable_within_goal": non_actionable_rate <= NON_ACTIONABLE_GOAL,
    }


def evidence(records: Iterable[Mapping[str, Any]], truth: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence figures (evidence.json) of a backtest's records against the truth."""
    records = list(records)
    alerts = [r for r in records if r.get("kind") == "alert"]
    clinical = [a for a in alerts if a.get("category", "clinical") == "clinical"]
    weeks = truth["patients"] * truth["days"] / 7
    events = list(truth["events"])
    windows: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for e in events:
        windows[e["patient_id"]].append((_time(e["start"]), _time(e["end"])))
    non_actionable = [a for a in clinical if not _inside_any(a, windows)]
    by_event = _event_figures(_detections(events, clinical))
    rate = round(len(non_actionable) / weeks, 3) if weeks else 0.0
    per_week: dict[str, dict[str, float]] = defaultdict(dict)
    for (category, level), n in sorted(Counter(
            (a.get("category", "clinical"), a["level"]) for a in alerts).items()):
        per_week[category][level] = round(n / weeks, 3)
    rejections = Counter(r["reason"] for r in records if r.get("kind") == "rejection")
    planned, taken = truth.get("planned_sessions", 0), truth.get("taken_sessions", 0)
    return {
        "seed": truth.get("seed"), "patients": truth["patients"], "days": truth["days"],
        "patient_weeks": round(weeks, 2),
        "events": by_event,
        "alerts": {"total": len(alerts), "clinical": len(clinical),
                   "per_patient_week": dict(per_week)},
        "non_actionable": {
            "count": len(non_actionable), "per_patient_week": rate,
            "share": round(len(non_actionable) / len(clinical), 3) if clinical else 0.0,
            "by_rule": dict(sorted(Counter(a["rule"] for a in non_actionable).items())),
        },
        "notices": {
            category: {"count": sum(1 for a in alerts if a.get("category") == category),
                       "per_patient_week": round(sum(
                           1 for a in alerts if a.get("category") == category) / weeks, 3)}
            for category in ("adherence", "device")
        },
        "adherence": {"planned_mornings": planned, "taken_mornings": taken,
                      "share": round(taken / planned, 3) if planned else None},
        "rejections": dict(sorted(rejections.items())),
        "backtest_summary": next((r for r in reversed(records)
                                  if r.get("kind") == "summary"), None),
        "goals": _goals(by_event, rate),
    }
