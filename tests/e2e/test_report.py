"""`hemmon report` on the demo's data: a page (seen in Chromium) and a CSV matching the
database."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import psycopg

from hemmon.demo import DemoSimulator, ReplayClock
from hemmon.roster import load_roster, read_roster
from hemmon.settings import MqttAddress

from ..integration.harness import running_service, wait_until
from .test_demo import ARTIFACTS, render


def test_the_report_on_the_demos_data(database_url: str, mqtt: MqttAddress,
                                      tmp_path: Path) -> None:
    roster = read_roster(Path(str(resources.files("hemmon.demo") / "roster.yaml")))
    with psycopg.connect(database_url) as conn:
        load_roster(conn, roster, actor="test", reason="demo roster", now=datetime.now(UTC))
    # the demo's two weeks, replayed in 15 s on the pipeline's clock
    replay = ReplayClock(seconds=15)
    with running_service(database_url, mqtt, clock=replay, sweep_seconds=0.5) as running:
        simulator = DemoSimulator(mqtt, replay)
        simulator.start()
        wait_until(lambda: any(a["category"] == "clinical" for a in
                               running.get("/api/v1/alerts").json()["alerts"]), timeout=60,
                   what="the deteriorating patient's alert")
        simulator.stopped.set()
        simulator.join(15)
        time.sleep(1)
        first = next(a for a in running.get("/api/v1/alerts").json()["alerts"]
                     if a["category"] == "clinical")
        running.post(f"/api/v1/alerts/{first['id']}/acknowledge")

    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=15), today + timedelta(days=1)  # the fortnight
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")}
    env["HEMMON_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "hemmon.cli", "report", "--from", str(start), "--to", str(end),
         "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "följsamhet" in result.stderr  # the progress bar

    rows = list(csv.DictReader((tmp_path / "report.csv").open(encoding="utf-8")))
    figures = {(r["section"], r["key"]): r["value"] for r in rows}
    with psycopg.connect(database_url) as conn:
        readings = conn.execute("SELECT count(*) FROM readings").fetchone()
        by_level = dict(conn.execute("SELECT level, count(*) FROM alerts WHERE category ="
                                     " 'clinical' GROUP BY level").fetchall())
        patients = conn.execute("SELECT count(*) FROM patients").fetchone()
    assert readings is not None
    assert patients is not None
    assert int(figures[("readings", "count")]) == readings[0]
    assert sum(int(v) for (s, _), v in figures.items() if s == "readings_per_day") == readings[0]
    assert {k: int(v) for (s, k), v in figures.items() if s == "alerts"} == by_level
    assert int(figures[("patients", "count")]) == patients[0]
    planned = {k: int(v) for (s, k), v in figures.items() if s == "adherence_planned"}
    taken = {k: int(v) for (s, k), v in figures.items() if s == "adherence_taken"}
    assert set(planned) == {"p-0001", "p-0004"}  # the heart-failure patients weigh daily
    assert all(0 <= taken[p] <= planned[p] for p in planned)
    assert ("acknowledge_minutes_median", first["route"]) in figures

    ARTIFACTS.mkdir(exist_ok=True)
    page = tmp_path / "report.html"
    dom = render(page.as_uri(), ARTIFACTS / "report.png")
    assert "Lärande uppföljning" in dom
    assert "Larm per patientvecka" in dom
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
