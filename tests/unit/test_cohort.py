"""The simulated cohort: deterministic, physiologically where the truth says, valid input."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hemmon.cohort.generate import Cohort, cohort
from hemmon.cohort.run import write_cohort
from hemmon.ingest.model import Device, RejectReason
from hemmon.ingest.normalise import normalise
from hemmon.roster import RosterFile


def no_alerts(roster: dict[str, Any], messages: Iterable[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """A stand-in backtest: the files must not depend on what the backtest says."""
    return [{"kind": "summary", "patients": len(roster["patients"]), "count": len(list(messages))}]


@pytest.fixture(scope="module")
def small() -> Cohort:
    """40 patients for 21 days: every event kind, quick to make."""
    return cohort(40, 21, 7)


def readings(c: Cohort, patient: str, kind: str) -> list[tuple[datetime, float]]:
    device = "dev-" + patient.split("-", 1)[1]
    out = []
    for m in c.messages:
        if m["topic"] == f"hemmon/v1/devices/{device}/readings":
            for item in m["payload"]["measurements"]:
                if item["type"] == kind:
                    out.append((datetime.fromisoformat(m["received_at"]), float(item["value"])))
    return out


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_cohort(first, patients=12, days=8, seed=3, backtest=no_alerts)
    write_cohort(second, patients=12, days=8, seed=3, backtest=no_alerts)
    names = ("roster.yaml", "messages.jsonl", "truth.json", "evidence.json", "report.html")
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    write_cohort(third := tmp_path / "c", patients=12, days=8, seed=4, backtest=no_alerts)
    assert (third / "messages.jsonl").read_bytes() != (first / "messages.jsonl").read_bytes()


def test_the_roster_is_a_valid_contract_roster(small: Cohort) -> None:
    roster = RosterFile.model_validate(small.roster)
    groups = {g for p in roster.patients for g in p.groups}
    assert groups == {"heart_failure", "copd", "hypertension", "diabetes"}
    assert all(p.unit in {u.id for u in roster.units} for p in roster.patients)


def test_every_message_normalises_except_a_wrong_clock(small: Cohort) -> None:
    devices = {d["id"]: Device(id=d["id"], patient_id=p["id"])
               for p in small.roster["patients"] for d in p["devices"]}
    reasons = set()
    for m in small.messages:
        if m["topic"].endswith("/status"):
            continue
        result = normalise(json.dumps(m["payload"]).encode(), topic=m["topic"],
                           devices=devices,
                           received_at=datetime.fromisoformat(m["received_at"]))
        reasons |= {j.reason for j in result.rejections}
    assert reasons <= {RejectReason.FUTURE_TIME}
    times = [m["received_at"] for m in small.messages]
    assert times == sorted(times)


def test_every_event_kind_is_injected_with_a_span(small: Cohort) -> None:
    kinds = {e["kind"] for e in small.truth["events"]}
    assert kinds == {"hf_decompensation", "copd_exacerbation", "hypertensive_crisis",
                     "hypoglycaemia", "sepsis"}
    assert all(e["start"] < e["end"] for e in small.truth["events"])
    assert {h["kind"] for h in small.truth["happenings"]} >= {"stairs", "cold_fingers"}


def test_deteriorations_are_where_the_truth_says(small: Cohort) -> None:
    for event in small.truth["events"]:
        start, end = (datetime.fromisoformat(event["start"]),
                      datetime.fromisoformat(event["end"]))
        patient, kind = event["patient_id"], event["kind"]
        if kind == "hf_decompensation":
            series = readings(small, patient, "body_weight")
            before = [v for t, v in series if start - timedelta(days=3) <= t < start]
            peak = [v for t, v in series
                    if start + timedelta(days=event["gain_days"] - 1) <= t <= end]
            assert max(peak) - min(before) > 1.0, event
        elif kind == "hypoglycaemia":
            inside = [v for t, v in readings(small, patient, "blood_glucose")
                      if start <= t <= end]
            assert min(inside) < 3.9, event
        elif kind == "hypertensive_crisis":
            inside = [v for t, v in readings(small, patient, "blood_pressure_systolic")
                      if start <= t <= end]
            assert max(inside) > 180, event
        elif kind == "copd_exacerbation":
            series = readings(small, patient, "spo2")
            before = sorted(v for t, v in series if t < start)
            inside = [v for t, v in series if start <= t <= end]
            assert min(inside) <= before[len(before) // 2] - 3, event
        else:
            inside = [v for t, v in readings(small, patient, "body_temperature")
                      if start <= t <= end]
            assert max(inside) > 38.0, event


def test_outside_every_event_glucose_and_pressure_stay_safe(small: Cohort) -> None:
    """Hypoglycaemia and crises exist only where injected: an alert elsewhere is noise."""
    windows = {(e["patient_id"], e["kind"]): (datetime.fromisoformat(e["start"]),
                                              datetime.fromisoformat(e["end"]))
               for e in small.truth["events"]}
    for patient in small.roster["patients"]:
        pid = patient["id"]
        hypo = windows.get((pid, "hypoglycaemia"))
        for t, v in readings(small, pid, "blood_glucose"):
            if v < 3.9:
                assert hypo is not None
                assert hypo[0] <= t <= hypo[1]
        crisis = windows.get((pid, "hypertensive_crisis"))
        for t, v in readings(small, pid, "blood_pressure_systolic"):
            if v > 180:
                assert crisis is not None
                assert crisis[0] <= t <= crisis[1]


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 10), st.integers(6, 12), st.integers(0, 2**32))
def test_any_small_cohort_keeps_its_events_inside_its_span(patients: int, days: int,
                                                           seed: int) -> None:
    made = cohort(patients, days, seed)
    start, end = made.truth["start"], made.truth["end"]
    for event in made.truth["events"]:
        assert start <= event["start"] < event["end"] <= end
    assert len(made.roster["patients"]) == patients
    assert all(start <= m["received_at"] <= end for m in made.messages
               if not m["topic"].endswith("/status"))
