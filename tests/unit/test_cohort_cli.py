"""`hemmon cohort` end to end on a small cohort, with the real backtest (runs in CI)."""

from __future__ import annotations

import json
from pathlib import Path

from hemmon.cli import main


def test_hemmon_cohort_writes_the_evidence_the_same_each_time(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    assert main(["cohort", "--patients", "20", "--days", "14", "--seed", "1",
                 "--out", str(out)]) == 0
    evidence = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    assert evidence["patients"] == 20
    assert evidence["events"]
    assert set(evidence["goals"]) == {"every_deterioration_alerts", "median_delay_within_a_day",
                                      "acute_values_at_first_reading",
                                      "non_actionable_within_goal"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<html lang="sv">' in html
    assert "<svg" in html
    assert "<script" not in html
    records = (out / "backtest.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(records[-1])["kind"] == "summary"
    again = tmp_path / "again"
    assert main(["cohort", "--patients", "20", "--days", "14", "--seed", "1",
                 "--out", str(again)]) == 0
    for name in ("messages.jsonl", "backtest.jsonl", "evidence.json", "report.html"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
