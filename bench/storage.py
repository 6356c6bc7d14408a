"""Stored bytes per reading after TimescaleDB compression, with hemmon's own schema.

The engine is the one CI has: timescaledb 2.23 on PostgreSQL 17 in WASM (pglite, from
npm, `deploy/timescale-test`). It cannot COPY, so the readings are generated inside the
database: 500 patients, 180 days, one morning session a day of systolic, diastolic, pulse,
SpO2 and weight with realistic spread, each with its own message key as devices send
them. Then every chunk is compressed and measured (table, indexes and TOAST).

    python -m bench.storage        (or bench/run storage)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.embedded import machine, print_table, write_results
from hemmon.db import migrate
from hemmon.service import free_port, wait_for_port

ENGINE = Path(__file__).resolve().parents[1] / "deploy" / "timescale-test"
PATIENTS, DAYS = 500, 180

GENERATE = """
INSERT INTO readings (patient_id, device_id, type, value, measured_at, received_at,
                      source_format, manual, message_key)
SELECT 'p-' || lpad(p::text, 5, '0'), 'd-' || lpad(p::text, 5, '0'), k.type,
       round((k.base + k.spread * (random() - 0.5))::numeric, k.digits)::float8,
       timestamptz '2026-01-01 06:00+00' + d * interval '1 day' + (p %% 90) * interval '1 minute',
       timestamptz '2026-01-01 06:00+00' + d * interval '1 day' + (p %% 90) * interval '1 minute'
         + interval '2 seconds',
       'native', false, 'd-' || lpad(p::text, 5, '0') || '-' || d
FROM generate_series(1, %(patients)s) p, generate_series(0, %(days)s - 1) d,
     (VALUES ('blood_pressure_systolic', 135.0, 20.0, 0),
             ('blood_pressure_diastolic', 82.0, 12.0, 0),
             ('heart_rate', 72.0, 16.0, 0), ('spo2', 95.0, 4.0, 0),
             ('body_weight', 80.0, 1.0, 1)) AS k(type, base, spread, digits)
"""


def measure(url: str, patients: int) -> dict[str, Any]:
    migrate(url)
    time.sleep(0.3)  # the engine serves one session at a time
    with psycopg.connect(url, prepare_threshold=None, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(GENERATE, {"patients": patients, "days": DAYS})
        generated = time.perf_counter() - started
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        rows = int(row[0]) if row else 0
        before = conn.execute("SELECT total_bytes FROM hypertable_detailed_size('readings')"
                              ).fetchone()
        started = time.perf_counter()
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('readings') c")
        compressed = time.perf_counter() - started
        after = conn.execute("SELECT table_bytes, index_bytes, toast_bytes, total_bytes"
                             " FROM hypertable_detailed_size('readings')").fetchone()
        chunks = conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
    assert before is not None
    assert after is not None
    assert chunks is not None
    return {"readings": rows, "chunks": int(chunks[0]), "generate_seconds": generated,
            "compress_seconds": compressed, "bytes_before": int(before[0]),
            "bytes_after": int(after[3]), "table_bytes": int(after[0]),
            "index_bytes": int(after[1]), "toast_bytes": int(after[2]),
            "bytes_per_reading_before": int(before[0]) / rows,
            "bytes_per_reading": int(after[3]) / rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 patients, a smoke run")
    args = parser.parse_args(argv)
    port = free_port()
    process = subprocess.Popen(["node", "server.mjs", str(port)], cwd=ENGINE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60)
        time.sleep(0.5)
        result = measure(f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres"
                         "?sslmode=disable", 100 if args.quick else PATIENTS)
    finally:
        process.terminate()
        process.wait(15)
    result.update({"date": datetime.now(UTC).isoformat(), "machine": machine(),
                   "engine": "timescaledb 2.23 on PostgreSQL 17 (pglite, WASM)"})
    rows = [
        ("engine", result["engine"]),
        ("readings (patients x days x 5 measurements)",
         f"{result['readings']:,} in {result['chunks']} chunks"),
        ("stored before compression (ceiling: the plain rows)",
         f"{result['bytes_per_reading_before']:.1f} bytes/reading"),
        ("stored after compression", f"{result['bytes_per_reading']:.1f} bytes/reading"
         f" (table {result['table_bytes']:,}, indexes {result['index_bytes']:,},"
         f" TOAST {result['toast_bytes']:,} bytes)"),
        ("  ratio to uncompressed", f"{result['bytes_after'] / result['bytes_before']:.3f}"),
    ]
    print_table(rows)
    write_results("storage", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
