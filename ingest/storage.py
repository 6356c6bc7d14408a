"""Readings and rejections in PostgreSQL (psycopg 3). Idempotent: a redelivery adds nothing.

Readings go in batches: binary COPY into a session-local staging table, then one
INSERT ... ON CONFLICT DO NOTHING RETURNING, which tells which readings are new. Only new
readings are evaluated for alerts, so a message delivered twice never counts twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from .model import Reading, Rejection

Connection = psycopg.Connection[Any]
Identity = tuple[str, str, str, datetime]
"""device_id, message key, type, measured_at: what makes a reading unique."""

_COLUMNS = sql.SQL(
    "patient_id, device_id, type, value, measured_at, received_at, source_format, manual,"
    " message_key, on_oxygen"
)
_TYPES = [
    "text", "text", "text", "float8", "timestamptz", "timestamptz", "text", "bool", "text",
    "bool",
]


def identity(reading: Reading) -> Identity:
    return (reading.device_id, reading.key, reading.type.value, reading.measured_at)


def store_readings(conn: Connection, readings: Sequence[Reading]) -> set[Identity]:
    """Insert the readings not stored yet; returns the identities that were new."""
    if not readings:
        return set()
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS readings_staging"
        " (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        copy_sql = sql.SQL("COPY readings_staging ({}) FROM STDIN (FORMAT BINARY)")
        with cur.copy(copy_sql.format(_COLUMNS)) as copy:
            copy.set_types(_TYPES)
            for r in readings:
                copy.write_row(
                    (r.patient_id, r.device_id, r.type.value, r.value, r.measured_at,
                     r.received_at, r.source_format.value, r.manual, r.key, r.on_oxygen)
                )
        cur.execute(
            sql.SQL(
                "INSERT INTO readings ({0}) SELECT {0} FROM readings_staging"
                " ON CONFLICT DO NOTHING RETURNING device_id, message_key, type, measured_at"
            ).format(_COLUMNS)
        )
        new = {(row[0], row[1], row[2], row[3]) for row in cur.fetchall()}
        cur.execute("TRUNCATE readings_staging")
    return new


def fingerprint(rejection: Rejection) -> bytes:
    """What makes a rejection the same one when its message is delivered again."""
    digest = hashlib.sha256()
    for part in (rejection.topic.encode(), rejection.raw, rejection.reason.encode(),
                 rejection.detail.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def inserted(conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Run an INSERT ... ON CONFLICT DO NOTHING RETURNING for every row, in one pipeline:
    which rows were new (the others were there already: a redelivery, a re-evaluation)."""
    if not rows:
        return []
    flags = []
    with conn.cursor() as cur:
        cur.executemany(query, rows, returning=True)
        while True:
            flags.append(cur.fetchone() is not None)
            if not cur.nextset():
                break
    return flags


def store_rejections(conn: Connection, rejections: Sequence[Rejection]) -> list[Rejection]:
    """Keep the rejections not kept yet; returns those that were new."""
    flags = inserted(
        conn,
        "INSERT INTO rejections (received_at, topic, device_id, patient_id, reason, detail,"
        " raw, message_key, fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
        [(r.received_at, r.topic, r.device_id, r.patient_id, r.reason.value, r.detail, r.raw,
          r.key, fingerprint(r)) for r in rejections],
    )
    return [r for r, new in zip(rejections, flags, strict=True) if new]


def list_readings(
    conn: Connection,
    patient_id: str,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int = 5000,
) -> list[dict[str, Any]]:
    """A patient's stored readings, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT type, value, measured_at, received_at, device_id, source_format, manual,"
            " message_key AS key FROM readings"
            " WHERE patient_id = %s AND (%s::text IS NULL OR type = %s)"
            " AND (%s::timestamptz IS NULL OR measured_at >= %s)"
            " AND (%s::timestamptz IS NULL OR measured_at < %s)"
            " ORDER BY measured_at DESC LIMIT %s",
            (patient_id, kind, kind, since, since, until, until, limit),
        )
        rows = cur.fetchall()
    rows.reverse()
    return rows


def list_rejections(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The newest kept rejections, without their raw bytes."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, received_at, topic, device_id, reason, detail, message_key AS key,"
            " length(raw) AS size, replayed_at, replay_result"
            " FROM rejections ORDER BY received_at DESC, id DESC LIMIT %s",
            (limit,),
        )
        return cur.fetchall()


def get_rejection(conn: Connection, rejection_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, topic, raw, replayed_at FROM rejections WHERE id = %s FOR UPDATE",
            (rejection_id,),
        )
        return cur.fetchone()


def mark_replayed(conn: Connection, rejection_id: int, at: datetime, result: str) -> None:
    conn.execute(
        "UPDATE rejections SET replayed_at = %s, replay_result = %s WHERE id = %s",
        (at, result, rejection_id),
    )


def record_seen(conn: Connection, seen: dict[str, datetime],
                batteries: dict[str, float]) -> None:
    """Devices heard from in a batch (and any battery level they reported)."""
    if not seen:
        return
    devices = sorted(seen)
    conn.execute(
        "INSERT INTO device_status (device_id, battery, last_seen_at)"
        " SELECT * FROM unnest(%s::text[], %s::float8[], %s::timestamptz[])"
        " ON CONFLICT (device_id) DO UPDATE SET"
        " last_seen_at = greatest(device_status.last_seen_at, EXCLUDED.last_seen_at),"
        " battery = coalesce(EXCLUDED.battery, device_status.battery)",
        (devices, [batteries.get(d) for d in devices], [seen[d] for d in devices]),
    )


def record_status(conn: Connection, device_id: str, online: bool | None,
                  battery: float | None, at: datetime) -> None:
    """A device's own status report (retained message or last will)."""
    conn.execute(
        "INSERT INTO device_status (device_id, online, battery, status_at, last_seen_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
        " online = coalesce(EXCLUDED.online, device_status.online),"
        " battery = coalesce(EXCLUDED.battery, device_status.battery),"
        " status_at = EXCLUDED.status_at,"
        # a last will says the device is gone: that is not hearing from it
        " last_seen_at = CASE WHEN EXCLUDED.online IS FALSE THEN device_status.last_seen_at"
        " ELSE greatest(device_status.last_seen_at, EXCLUDED.last_seen_at) END",
        (device_id, online, battery, at, at),
    )


def device_states(conn: Connection) -> list[tuple[str, str, timedelta, datetime, float | None,
                                                  bool | None]]:
    """(device, patient, expected interval, last seen, battery, online) for every device."""
    rows = conn.execute(
        "SELECT d.id, d.patient_id, d.expect_every, s.last_seen_at, s.battery, s.online"
        " FROM devices d JOIN device_status s ON s.device_id = d.id ORDER BY d.id"
    ).fetchall()
    return [(str(r[0]), str(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


_BUCKETS = {"hour": "readings_hourly", "day": "readings_daily"}


def trend(conn: Connection, patient_id: str, kind: str, bucket: str, since: datetime,
          until: datetime) -> list[dict[str, Any]]:
    """Mean, low, high and count per hour or day: a continuous aggregate where timescaledb
    exists, a view over readings otherwise (same names, same columns)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT bucket, mean, low, high, readings FROM {} WHERE patient_id = %s"
                    " AND type = %s AND bucket >= %s AND bucket < %s ORDER BY bucket"
                    ).format(sql.Identifier(_BUCKETS[bucket])),
            (patient_id, kind, since, until),
        )
        return cur.fetchall()
