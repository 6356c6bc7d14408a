"""PostgreSQL connections and the schema migrations (`hemmon migrate`).

Migrations are the numbered SQL files in hemmon/migrations, applied in order, each in its
own transaction, under an advisory lock so that two services starting at once do not race.
Where the timescaledb extension is available, readings become a hypertable; otherwise the
same schema runs on plain PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from . import errors
from .settings import SettingsError, redact

log = logging.getLogger(__name__)

_LOCK_ID = 0x68656D6D6F6E  # "hemmon"


class DatabaseUnavailable(errors.DatabaseUnavailable):
    """The database named by HEMMON_DATABASE_URL cannot be reached or used."""


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """One connection; an unreachable database raises DatabaseUnavailable naming the setting."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to the database at HEMMON_DATABASE_URL ({redact(url)}): {reason}"
        ) from exc


def connect_with_schema(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection for a pipeline: fails at start, naming the setting, when the database
    is unreachable or has no hemmon schema."""
    conn = connect(url)
    try:
        conn.execute("SELECT 1 FROM roster_revision")
        conn.commit()
    except psycopg.errors.UndefinedTable as exc:
        conn.close()
        raise SettingsError(
            "the database at HEMMON_DATABASE_URL has no hemmon schema: run `hemmon migrate`"
        ) from exc
    return conn


def open_pool(url: str, *, max_size: int = 8) -> ConnectionPool:
    """A pool, opened and checked: fails at start, naming the setting, when unreachable."""
    connect(url).close()
    pool = ConnectionPool(url, min_size=1, max_size=max_size, open=False,
                          kwargs={"connect_timeout": 10})
    pool.open(wait=True, timeout=15)
    return pool


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("hemmon") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def timescale_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class TimescalePolicy:
    """How readings age where timescaledb exists."""

    compress_after: timedelta = timedelta(days=30)
    retain: timedelta = timedelta(days=3660)
    """Patient records are kept at least ten years (patientdatalagen 3 kap. 17 §)."""


def migrate(url: str, policy: TimescalePolicy | None = None) -> list[str]:
    """Apply the migrations not applied yet; returns their names. Idempotent."""
    applied: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
                log.info("applied migration %s", name)
            if timescale_available(conn):
                _timescale(conn, policy or TimescalePolicy())
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


_AGGREGATES = {"readings_hourly": "1 hour", "readings_daily": "1 day"}


def _timescale(conn: psycopg.Connection[tuple[object, ...]], policy: TimescalePolicy) -> None:
    """Readings as a compressed hypertable with retention, and the summaries as continuous
    aggregates. Each step is skipped when it is already in place."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    # Home monitoring is sparse: a patient gives a few readings a day. Compression packs
    # the rows of one segment within one chunk, so the segments must be long: 90-day
    # chunks, one segment per patient (all measurement types), ordered by type and time.
    # Measured with bench/storage.py: 10.8 bytes per reading (7-day chunks segmented by
    # patient and type: 136).
    conn.execute(
        "SELECT create_hypertable('readings', by_range('measured_at', INTERVAL '90 days'),"
        " if_not_exists => true, migrate_data => true)"
    )
    conn.execute("SELECT set_chunk_time_interval('readings', INTERVAL '90 days')")
    try:
        conn.execute(
            "ALTER TABLE readings SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'patient_id',"
            " timescaledb.compress_orderby = 'type, measured_at DESC')"
        )
    except psycopg.errors.FeatureNotSupported as exc:  # compressed chunks of an older layout
        log.warning("timescaledb: compression settings kept as they are (%s); decompress"
                    " the chunks to take the new layout", exc)
    conn.execute("SELECT add_compression_policy('readings', %s::interval, if_not_exists => true)",
                 (policy.compress_after,))
    conn.execute("SELECT add_retention_policy('readings', %s::interval, if_not_exists => true)",
                 (policy.retain,))
    existing = {row[0] for row in conn.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates")}
    for name, width in _AGGREGATES.items():
        if name in existing:
            continue
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL(
            # real time: the newest, not yet materialised readings are included too
            "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous,"
            " timescaledb.materialized_only = false) AS"
            " SELECT patient_id, type, time_bucket({}::interval, measured_at) AS bucket,"
            " avg(value) AS mean, min(value) AS low, max(value) AS high, count(*) AS readings"
            " FROM readings GROUP BY patient_id, type, time_bucket({}::interval, measured_at)"
            " WITH NO DATA").format(sql.Identifier(name), sql.Literal(width), sql.Literal(width)))
        conn.execute(
            "SELECT add_continuous_aggregate_policy(%s, start_offset => NULL,"
            " end_offset => %s::interval, schedule_interval => %s::interval,"
            " if_not_exists => true)",
            (name, width, width))
    log.info("timescaledb: hypertable, compression after %s, retention %s, aggregates",
             policy.compress_after, policy.retain)
