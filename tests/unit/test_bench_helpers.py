"""The benchmark's pure helpers: /proc accounting, percentiles, the backlog it queues."""

from __future__ import annotations

import json

import pytest

from bench.drain import hemmon_env, make_backlog, passed_settings
from bench.embedded import percentile_ms, publisher_rate
from bench.procs import Stat, parse_peak_rss_kib, parse_stat, tree_ticks
from bench.profile import inclusive_shares
from hemmon.simulator import virtual_patients

# a real line's shape: the name holds a space and a ")"
STAT = ("4242 (hemmon run) x) S 4200 4242 4200 0 -1 4194560 100 0 0 0 "
        "150 25 7 3 20 0 3 0 900 1000000 2000 18446744073709551615")


def test_stat_reads_parent_and_ticks_past_an_awkward_name() -> None:
    assert parse_stat(STAT) == Stat(ppid=4200, ticks=175, children_ticks=10)


def test_tree_counts_descendants_and_reaped_children_not_others() -> None:
    stats = {
        1: Stat(0, 1000, 0),
        10: Stat(1, 5, 2),    # the root: own 5, reaped children 2
        11: Stat(10, 7, 0),   # a pipeline process
        12: Stat(11, 3, 1),   # its child
        13: Stat(10, 100, 0),  # excluded (the benchmark's own session)
        20: Stat(1, 50, 0),   # not in the tree
    }
    assert tree_ticks(stats, 10) == 5 + 2 + 7 + 3 + 1 + 100
    assert tree_ticks(stats, 10, exclude={13}) == 5 + 2 + 7 + 3 + 1
    assert tree_ticks(stats, 99) == 0


def test_peak_rss_from_status() -> None:
    assert parse_peak_rss_kib("Name:\themmon\nVmPeak:\t 9000 kB\nVmHWM:\t  108544 kB\n") == 108544
    assert parse_peak_rss_kib("Name:\tzombie\nState:\tZ\n") == 0


def test_percentiles_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert round(percentile_ms(values, 50), 1) == 50.5
    assert 99 <= percentile_ms(values, 99) <= 100
    assert percentile_ms([0.5], 99) == 0.0


def test_backlog_counts_readings_and_rows_alike() -> None:
    patients = virtual_patients(4, prefix="t")
    load = make_backlog(patients, 300, red_every=10)
    bodies = [json.loads(b) for payloads in load.by_topic.values() for b in payloads]
    assert load.messages == len(bodies) == 300
    assert load.readings == len(load.rows) == sum(len(b["measurements"]) for b in bodies) == 600
    assert len(load.by_topic) == 4
    red = [m for b in bodies for m in b["measurements"] if m["type"] == "spo2" and m["value"] < 90]
    assert len(red) == 10  # every 10th of the 100 oximeter messages


def test_tuning_settings_reach_hemmon_and_the_run_s_addresses_win(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMMON_PIPELINES", "3")
    monkeypatch.setenv("HEMMON_BATCH_MAX", "500")
    monkeypatch.setenv("HEMMON_DATABASE_URL", "postgresql://elsewhere/db")
    env = hemmon_env("postgresql://bench/db", 1883, 8081)
    assert env["HEMMON_PIPELINES"] == "3"
    assert env["HEMMON_BATCH_MAX"] == "500"  # ours, over the benchmark's default
    assert env["HEMMON_DATABASE_URL"] == "postgresql://bench/db"
    assert env["HEMMON_MQTT_URL"] == "mqtt://127.0.0.1:1883"
    recorded = passed_settings()
    assert recorded["HEMMON_PIPELINES"] == "3"
    assert "HEMMON_DATABASE_URL" not in recorded


def test_a_publisher_behind_its_target_is_flagged() -> None:
    on_time = {"publisher_readings_per_s": 998.0, "rate_readings_per_s": 1000.0,
               "publisher_max_behind_ms": 4.0}
    assert "TOO SLOW" not in publisher_rate(on_time)
    assert "TOO SLOW" in publisher_rate({**on_time, "publisher_readings_per_s": 800.0})


def test_profile_shares_count_a_function_once_per_sample() -> None:
    folded = "\n".join([
        'process 7:"python -m hemmon.cli run";<module> (runpy.py:198);run (hemmon/pipeline.py:'
        '80);load_series (/x/hemmon/rules/storage.py:42);load_series (/x/hemmon/rules/storage.py'
        ':50) 3',
        'process 7:"python -m hemmon.cli run";run (hemmon/pipeline.py:81);normalise'
        ' (ingest/normalise.py:9) 1',
        "not a sample line",
    ])
    shares = dict(inclusive_shares(folded))
    assert shares == {"run (hemmon/pipeline.py)": 1.0,
                      "load_series (rules/storage.py)": 0.75,
                      "normalise (ingest/normalise.py)": 0.25}
