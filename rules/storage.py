"""What the rules engine reads and writes in PostgreSQL: series of readings and findings.

A pipeline holds its patients' series in memory (hemmon/core.py) and reads them from here
when it first sees a patient, so a restart (or a second worker) evaluates exactly as the
first did.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from hemmon.ingest.model import MeasurementType
from hemmon.ingest.storage import inserted

from .engine import Pending, Point
from .evaluate import Finding
from .model import Rule
from .templates import effective_rules

Connection = psycopg.Connection[Any]
_KINDS = {kind.value: kind for kind in MeasurementType}
Series = dict[str, dict[MeasurementType, list[Point]]]
"""patient -> measurement -> points sorted by measured time."""


def load_series_since(conn: Connection, since: Mapping[str, datetime]) -> Series:
    """Every stored reading of each patient measured since the given time, by patient and
    measurement, sorted by measured time (to fill a pipeline's in-memory series)."""
    found: Series = defaultdict(lambda: defaultdict(list))
    if not since:
        return found
    patients = sorted(since)
    rows = conn.execute(
        "SELECT r.patient_id, r.type, r.value, r.measured_at, r.device_id,"
        " r.message_key, r.on_oxygen"
        " FROM unnest(%s::text[], %s::timestamptz[]) AS w(patient, lo)"
        " JOIN readings r ON r.patient_id = w.patient AND r.measured_at >= w.lo"
        " ORDER BY r.patient_id, r.type, r.measured_at, r.device_id, r.message_key",
        (patients, [since[p] for p in patients]),
    ).fetchall()
    for patient, kind, value, measured_at, device, message, on_oxygen in rows:
        measurement = _KINDS[kind]
        found[patient][measurement].append(
            Point(measurement, value, measured_at, f"{device}/{message}/{kind}", on_oxygen))
    return found


def store_held(conn: Connection, held: Sequence[tuple[str, Pending]]) -> None:
    """Keep the readings a rule holds back for a re-measurement (once each)."""
    if not held:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO held_readings (patient_id, rule, reading_key, measured_at, due_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(patient, p.rule_key, p.reading_key, p.measured_at, p.due_at)
             for patient, p in held])


def take_due_held(conn: Connection, now: datetime) -> list[tuple[str, Pending]]:
    """The held readings whose wait is over, removed in the caller's transaction (locked
    rows another sweep holds are left to it)."""
    rows = conn.execute(
        "DELETE FROM held_readings WHERE ctid IN (SELECT ctid FROM held_readings"
        " WHERE due_at <= %s FOR UPDATE SKIP LOCKED)"
        " RETURNING patient_id, rule, reading_key, measured_at, due_at", (now,)).fetchall()
    return sorted(((str(r[0]), Pending(str(r[1]), str(r[2]), r[3], r[4])) for r in rows),
                  key=lambda held: (held[0], held[1].measured_at, held[1].rule_key))


def store_findings(conn: Connection, findings: Sequence[Finding],
                   found_at: datetime) -> list[Finding]:
    """Keep the findings not kept yet; returns those that were new."""
    flags = inserted(
        conn,
        "INSERT INTO findings (patient_id, rule, reading_key, measured_at, rule_version,"
        " category, level, value, explanation, found_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        [(f.patient_id, f.rule_key, f.reading_key, f.measured_at, f.rule_version, f.category,
          f.level.value, f.value, f.explanation, found_at) for f in findings],
    )
    return [f for f, new in zip(findings, flags, strict=True) if new]


def link_findings(conn: Connection, links: Iterable[tuple[Finding, int]]) -> None:
    """Record which alert each finding opened or updated."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE findings SET alert_id = %s WHERE patient_id = %s AND rule = %s"
            " AND reading_key = %s AND measured_at = %s",
            [(alert_id, f.patient_id, f.rule_key, f.reading_key, f.measured_at)
             for f, alert_id in links],
        )


def _rules_json(rules: Sequence[Rule]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in rules], sort_keys=True)


def save_rules(conn: Connection, patient_id: str, groups: Sequence[str],
               personal: Sequence[Rule], *, actor: str, reason: str,
               now: datetime) -> int | None:
    """A new rule version when the rules differ from the latest; its number, or None.

    Effective rules are the group templates with the personal rules on top; every version
    records who changed it, when, why, and from when it applies.
    """
    effective = _rules_json(effective_rules(groups, personal))
    mine = _rules_json(personal)
    row = conn.execute(
        "SELECT version, rules::text, personal::text FROM rule_versions WHERE patient_id = %s"
        " ORDER BY version DESC LIMIT 1 FOR UPDATE",
        (patient_id,),
    ).fetchone()
    if row is not None and json.loads(row[1]) == json.loads(effective) and (
        json.loads(row[2]) == json.loads(mine)
    ):
        return None
    version = 1 if row is None else int(row[0]) + 1
    conn.execute(
        "INSERT INTO rule_versions (patient_id, version, rules, personal, changed_by,"
        " changed_at, reason, effective_from) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (patient_id, version, effective, mine, actor, now, reason, now),
    )
    return version


def rule_history(conn: Connection, patient_id: str) -> list[dict[str, Any]]:
    """Every version of a patient's rules, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT version, rules, personal, changed_by, changed_at, reason, effective_from"
            " FROM rule_versions WHERE patient_id = %s ORDER BY version DESC",
            (patient_id,),
        )
        return cur.fetchall()


def last_readings(conn: Connection,
                  pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], datetime | None]:
    """The latest measured time of each (patient, measurement)."""
    patients, kinds = [], []
    for patient, kind in pairs:
        patients.append(patient)
        kinds.append(kind)
    rows = conn.execute(
        "SELECT w.patient, w.kind, (SELECT max(r.measured_at) FROM readings r"
        " WHERE r.patient_id = w.patient AND r.type = w.kind)"
        " FROM unnest(%s::text[], %s::text[]) AS w(patient, kind)",
        (patients, kinds),
    ).fetchall()
    return {(str(r[0]), str(r[1])): r[2] for r in rows}


def patient_groups(conn: Connection, patient_id: str) -> list[str] | None:
    row = conn.execute("SELECT groups FROM patients WHERE id = %s", (patient_id,)).fetchone()
    return None if row is None else list(row[0])


def announce_rules_changed(conn: Connection, now: datetime) -> None:
    """Tell running pipelines to read the rules again (they watch the roster revision)."""
    conn.execute("UPDATE roster_revision SET revision = revision + 1, loaded_at = %s", (now,))
