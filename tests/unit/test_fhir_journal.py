"""The journal's Bundles and the feeder's cursor, from values."""

from __future__ import annotations

from datetime import timedelta

from hemmon.alerts import fhir_export as fhir
from hemmon.alerts import fhir_journal as journal
from hemmon.ingest.model import MeasurementType as M

from ..fhir_samples import ALERT, EVENTS, READINGS, SYSTEMS


def test_the_journal_bundle_updates_the_flag_and_creates_the_event_once() -> None:
    bundle = journal.journal_bundle(ALERT, EVENTS[1], SYSTEMS)
    assert bundle == journal.journal_bundle(ALERT, EVENTS[1], SYSTEMS)
    flag, told = bundle["entry"]
    assert flag["request"] == {"method": "PUT", "url": "Flag?identifier=urn:hemmon:alert|7"}
    assert told["request"] == {"method": "POST", "url": "Communication",
                               "ifNoneExist": "identifier=urn:hemmon:alert-event|12"}
    assert told["resource"]["about"] == [{"reference": flag["fullUrl"]}]
    assert flag["resource"]["status"] == "active"


def test_the_opening_carries_the_reading_that_opened_the_alert() -> None:
    assert [r.type for r in journal.evidence_for(ALERT, READINGS)] == [M.SPO2]
    pressure = fhir.ExportAlert(**{**{k: getattr(ALERT, k) for k in ALERT.__slots__},
                                   "measurement": "blood_pressure_systolic"})
    assert {r.type for r in journal.evidence_for(pressure, READINGS)} == {
        M.BLOOD_PRESSURE_SYSTOLIC, M.BLOOD_PRESSURE_DIASTOLIC}
    opened = journal.journal_bundle(ALERT, EVENTS[0], SYSTEMS, None,
                                 journal.evidence_for(ALERT, READINGS))
    _, observation, told = opened["entry"]
    assert observation["request"]["ifNoneExist"].startswith(
        "identifier=urn:hemmon:observation|dev-0001/ox/2708-6/")
    assert told["resource"]["payload"][1] == {
        "contentReference": {"reference": observation["fullUrl"]}}
    later = journal.journal_bundle(ALERT, EVENTS[1], SYSTEMS, None,
                                journal.evidence_for(ALERT, READINGS))
    assert len(later["entry"]) == 2


def test_the_cursor_stops_before_events_that_may_still_be_committing() -> None:
    pairs = [(ALERT, event) for event in EVENTS]
    now = EVENTS[2].at + timedelta(seconds=10)
    entries, cursor = journal.journal_round(pairs, 10, now, timedelta(seconds=30), SYSTEMS, {})
    assert [e.key for e in entries] == [f"hemmon-journal-{e.id}" for e in EVENTS]
    assert cursor == EVENTS[1].id
    assert journal.journal_round([], 10, now, timedelta(0), SYSTEMS, {}) == ([], 10)
