"""What the rules engine reads and writes in PostgreSQL: series of readings and findings.

The engine keeps no state in memory: each batch reads the stored readings around the new
ones, so a restart (or a second worker) evaluates exactly as the first did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from hemmon.ingest.model import MeasurementType

from .engine import Point
from .evaluate import Finding

Connection = psycopg.Connection[Any]
Series = dict[str, dict[MeasurementType, list[Point]]]
"""patient -> measurement -> points sorted by measured time."""


def point_key(device_id: str, message_key: str, kind: str) -> str:
    return f"{device_id}/{message_key}/{kind}"


def load_series(conn: Connection,
                windows: Iterable[tuple[str, datetime, datetime]]) -> Series:
    """The stored readings of each (patient, from, to) window, by patient and measurement."""
    patients, starts, ends = [], [], []
    for patient, start, end in windows:
        patients.append(patient)
        starts.append(start)
        ends.append(end)
    found: Series = defaultdict(lambda: defaultdict(list))
    if not patients:
        return found
    rows = conn.execute(
        "SELECT DISTINCT r.patient_id, r.type, r.value, r.measured_at, r.device_id,"
        " r.message_key, r.on_oxygen"
        " FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS w(patient, lo, hi)"
        " JOIN readings r ON r.patient_id = w.patient AND r.measured_at BETWEEN w.lo AND w.hi"
        " ORDER BY r.patient_id, r.type, r.measured_at, r.device_id, r.message_key",
        (patients, starts, ends),
    ).fetchall()
    for patient, kind, value, measured_at, device, message, on_oxygen in rows:
        found[patient][MeasurementType(kind)].append(
            Point(MeasurementType(kind), value, measured_at, point_key(device, message, kind),
                  on_oxygen))
    return found


def store_findings(conn: Connection, findings: Sequence[Finding],
                   found_at: datetime) -> list[Finding]:
    """Keep the findings not kept yet; returns those that were new."""
    new = []
    with conn.cursor() as cur:
        for f in findings:
            cur.execute(
                "INSERT INTO findings (patient_id, rule, reading_key, measured_at, rule_version,"
                " category, level, value, explanation, found_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                " RETURNING 1",
                (f.patient_id, f.rule_key, f.reading_key, f.measured_at, f.rule_version,
                 f.category, f.level.value, f.value, f.explanation, found_at),
            )
            if cur.fetchone() is not None:
                new.append(f)
    return new


def link_findings(conn: Connection, links: Iterable[tuple[Finding, int]]) -> None:
    """Record which alert each finding opened or updated."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE findings SET alert_id = %s WHERE patient_id = %s AND rule = %s"
            " AND reading_key = %s AND measured_at = %s",
            [(alert_id, f.patient_id, f.rule_key, f.reading_key, f.measured_at)
             for f, alert_id in links],
        )
