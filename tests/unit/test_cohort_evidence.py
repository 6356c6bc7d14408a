"""Scoring a backtest's records against the truth, on hand-made records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hemmon.cohort.evidence import evidence

T0 = datetime(2026, 10, 12, 6, tzinfo=UTC)
H = timedelta(hours=1)


def at(hours: float) -> str:
    return (T0 + hours * H).isoformat()


def alert(patient: str, hours: float, *, rule: str = "threshold:spo2", level: str = "red",
          category: str = "clinical") -> dict[str, Any]:
    return {"kind": "alert", "patient_id": patient, "rule": rule, "measurement": "spo2",
            "level": level, "category": category, "route": "fast_vardkontakt",
            "opened_at": at(hours), "occurrences": 1, "explanation": "",
            "cleared_at": None, "resolved_at": at(hours + 24)}


def truth(*events: dict[str, Any], patients: int = 7, days: int = 7) -> dict[str, Any]:
    return {"seed": 1, "patients": patients, "days": days, "start": at(0), "end": at(24 * days),
            "events": list(events), "happenings": [], "planned_sessions": 49,
            "taken_sessions": 45}


def event(kind: str, patient: str, start: float, end: float,
          first_sign: float | None = None) -> dict[str, Any]:
    return {"kind": kind, "patient_id": patient, "clinical": True, "start": at(start),
            "end": at(end), "first_sign": at(first_sign) if first_sign is not None else None}


def test_detection_delay_and_non_actionable_alerts() -> None:
    facts = truth(event("hf_decompensation", "p-1", 10, 100),
                  event("hypoglycaemia", "p-2", 50, 51, first_sign=50.1),
                  event("hf_decompensation", "p-3", 10, 100))
    records = [
        alert("p-1", 5),                        # before the event: non-actionable
        alert("p-1", 40, rule="rise:body_weight"), alert("p-1", 70),
        alert("p-2", 50.2, rule="threshold:blood_glucose"),
        alert("p-4", 20, level="yellow"),       # a patient without events
        alert("p-4", 30, category="adherence", level="yellow"),
        alert("p-3", 30, category="device", level="yellow"),  # a notice never detects
        {"kind": "rejection", "reason": "future_time", "detail": "", "topic": "t",
         "received_at": at(3)},
        {"kind": "summary"},
    ]
    figures = evidence(records, facts)
    hf = figures["events"]["hf_decompensation"]
    assert (hf["events"], hf["detected"], hf["sensitivity"]) == (2, 1, 0.5)
    assert hf["median_delay_hours"] == 30.0
    assert hf["missed"] == ["p-3"]
    hypo = figures["events"]["hypoglycaemia"]
    assert hypo["worst_delay_from_first_sign_minutes"] == 6.0
    assert figures["non_actionable"]["count"] == 2
    assert figures["non_actionable"]["per_patient_week"] == 0.286
    assert figures["non_actionable"]["share"] == 0.4
    assert figures["alerts"]["per_patient_week"]["clinical"] == {"red": 0.571, "yellow": 0.143}
    assert figures["notices"]["adherence"]["count"] == 1
    assert figures["notices"]["device"]["count"] == 1
    assert figures["rejections"] == {"future_time": 1}
    assert figures["adherence"]["share"] == 0.918
    assert figures["goals"] == {
        "every_deterioration_alerts": False, "median_delay_within_a_day": False,
        "acute_values_at_first_reading": True, "non_actionable_within_goal": False,
    }


def test_an_acute_value_answered_after_15_minutes_misses_its_goal() -> None:
    facts = truth(event("hypertensive_crisis", "p-1", 10, 58, first_sign=10))
    late = evidence([alert("p-1", 10.5)], facts)
    assert late["events"]["hypertensive_crisis"]["worst_delay_from_first_sign_minutes"] == 30.0
    assert late["goals"]["acute_values_at_first_reading"] is False
    on_time = evidence([alert("p-1", 10.25)], facts)
    assert on_time["goals"]["acute_values_at_first_reading"] is True


alerts = st.lists(st.tuples(st.sampled_from(["p-1", "p-2", "p-3"]),
                            st.floats(min_value=0, max_value=24 * 7)), max_size=30)


@settings(max_examples=80)
@given(alerts)
def test_every_clinical_alert_is_inside_a_window_or_non_actionable(
        opened: list[tuple[str, float]]) -> None:
    facts = truth(event("copd_exacerbation", "p-1", 20, 80),
                  event("sepsis", "p-2", 100, 150))
    figures = evidence([alert(p, h) for p, h in opened], facts)
    inside = sum(1 for p, h in opened
                 if (p == "p-1" and 20 <= h <= 80) or (p == "p-2" and 100 <= h <= 150))
    assert figures["non_actionable"]["count"] == len(opened) - inside
    for kind, patient, (start, end) in (("copd_exacerbation", "p-1", (20, 80)),
                                        ("sepsis", "p-2", (100, 150))):
        hits = [h for p, h in opened if p == patient and start <= h <= end]
        figures_kind = figures["events"][kind]
        assert figures_kind["detected"] == (1 if hits else 0)
        if hits:
            assert abs(figures_kind["median_delay_hours"] - (min(hits) - start)) <= 0.01
