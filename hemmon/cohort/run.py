"""`hemmon cohort`: generate a cohort, run the backtest over it, write the evidence.

Files in the output folder: roster.yaml, messages.jsonl (the backtest's input),
truth.json, backtest.jsonl (the backtest's records), evidence.json and report.html. The
same arguments give the same bytes in every file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from .evidence import evidence
from .generate import cohort
from .report import render

Backtest = Callable[[dict[str, Any], Iterable[dict[str, Any]]], list[dict[str, Any]]]


def _real_backtest(roster: dict[str, Any], messages: Iterable[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    from hemmon.backtest import run_backtest  # the batch core; imported when it is needed

    return run_backtest(roster, messages, resolve_after=timedelta(hours=24))


def _json_lines(items: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for item in items)


def write_cohort(out: Path, *, patients: int, days: int, seed: int,
                 backtest: Backtest = _real_backtest) -> dict[str, Any]:
    """Write every file of a cohort to `out` (created if missing); returns the evidence."""
    generated = cohort(patients, days, seed)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Simulated cohort: {patients} patients, {days} days, seed {seed} "
              "(hemmon cohort). Pseudonyms only.\n")
    (out / "roster.yaml").write_text(
        header + yaml.safe_dump(generated.roster, allow_unicode=True, sort_keys=False),
        encoding="utf-8")
    (out / "messages.jsonl").write_text(_json_lines(generated.messages), encoding="utf-8")
    (out / "truth.json").write_text(
        json.dumps(generated.truth, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    records = backtest(generated.roster, generated.messages)
    (out / "backtest.jsonl").write_text(_json_lines(records), encoding="utf-8")
    figures = evidence(records, generated.truth)
    (out / "evidence.json").write_text(
        json.dumps(figures, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "report.html").write_text(
        render(figures, generated.truth, generated.messages, records), encoding="utf-8")
    return figures
