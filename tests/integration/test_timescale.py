"""The TimescaleDB path on a real timescaledb engine, and the plain path on Debian's
PostgreSQL: the same schema and the same queries on both."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hemmon.db import migrate
from hemmon.ingest.storage import trend

from ..services import free_port, require, wait_for_port

ENGINE = Path(__file__).resolve().parents[2] / "deploy" / "timescale-test"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def engine_connect(url: str) -> psycopg.Connection[Any]:
    """The engine serves one session at a time and needs a moment between sessions."""
    for _ in range(50):
        try:
            return psycopg.connect(url, prepare_threshold=None, autocommit=True)
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise RuntimeError("the timescaledb engine does not accept a session")


@pytest.fixture(scope="module")
def timescale() -> Iterator[str]:
    node = require("node", "Node.js runs the timescaledb test engine")
    if not (ENGINE / "node_modules").is_dir():
        pytest.fail("the timescaledb engine is not installed: ./scripts/setup installs it "
                    "with npm into deploy/timescale-test", pytrace=False)
    port = free_port()
    process = subprocess.Popen([node, "server.mjs", str(port)], cwd=ENGINE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60)
        time.sleep(0.5)
        yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        process.terminate()
        process.wait(15)


def insert_readings(conn: psycopg.Connection[Any], days: int) -> None:
    """Plain INSERTs (the engine cannot COPY FROM STDIN): SpO2 four times a day."""
    rows = [("p-1", "d-1", "spo2", 90.0 + (i % 8), T0 + timedelta(hours=6 * i),
             T0 + timedelta(hours=6 * i), "native", False, f"m-{i}")
            for i in range(days * 4)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (patient_id, device_id, type, value, measured_at,"
            " received_at, source_format, manual, message_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)


def test_the_timescale_schema_on_a_real_timescaledb_engine(timescale: str) -> None:
    applied = migrate(timescale)
    assert applied[0] == "001_initial.sql"
    time.sleep(0.3)
    with engine_connect(timescale) as conn:
        [(name, compressed)] = conn.execute(
            "SELECT hypertable_name, compression_enabled"
            " FROM timescaledb_information.hypertables").fetchall()
        assert (name, compressed) == ("readings", True)
        aggregates = {r[0]: r[1] for r in conn.execute(
            "SELECT view_name, materialized_only"
            " FROM timescaledb_information.continuous_aggregates")}
        assert aggregates == {"readings_hourly": False, "readings_daily": False}
        jobs = {(r[0], r[1]) for r in conn.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs")}
        assert {("policy_compression", "readings"), ("policy_retention", "readings"),
                ("policy_refresh_continuous_aggregate", "readings_daily"),
                ("policy_refresh_continuous_aggregate", "readings_hourly")} <= jobs

        insert_readings(conn, days=21)
        insert_readings(conn, days=21)  # a redelivery: the unique index still holds
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (84,)
        conn.execute("CALL refresh_continuous_aggregate('readings_daily', NULL, NULL)")
        daily = trend(conn, "p-1", "spo2", "day", T0, T0 + timedelta(days=21))
        assert len(daily) == 21
        assert daily[0]["readings"] == 4
        assert daily[0]["low"] == 90.0
        assert daily[0]["high"] == 93.0
        materialized = conn.execute(
            "SELECT count(*) FROM _timescaledb_catalog.continuous_agg").fetchone()
        assert materialized == (2,)

        [(segments, order)] = conn.execute(
            "SELECT string_agg(attname, ',') FILTER (WHERE segmentby_column_index"
            " IS NOT NULL), string_agg(attname, ',' ORDER BY orderby_column_index)"
            " FILTER (WHERE orderby_column_index IS NOT NULL)"
            " FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'readings'").fetchall()
        assert (segments, order) == ("patient_id", "type,measured_at")
        chunks = [r[0] for r in conn.execute("SELECT show_chunks('readings')")]
        assert chunks
        for chunk in chunks:
            conn.execute("SELECT compress_chunk(%s::regclass)", (chunk,))
        stats = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'readings' AND is_compressed").fetchone()
        assert stats is not None
        assert stats[0] == len(chunks)
        # the trend still answers, and a late duplicate into a compressed chunk is no row
        assert len(trend(conn, "p-1", "spo2", "day", T0, T0 + timedelta(days=21))) == 21
        insert_readings(conn, days=2)
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (84,)
    time.sleep(0.3)
    assert migrate(timescale) == []  # idempotent, timescale steps included


def test_the_plain_postgresql_path_answers_the_same_queries(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
                            ).fetchone() == (0,)
        insert_readings(conn, days=21)
        daily = trend(conn, "p-1", "spo2", "day", T0, T0 + timedelta(days=21))
        hourly = trend(conn, "p-1", "spo2", "hour", T0, T0 + timedelta(days=1))
    assert len(daily) == 21
    assert (daily[0]["readings"], daily[0]["low"], daily[0]["high"]) == (4, 90.0, 93.0)
    assert len(hourly) == 4
