"""The history at a glance loses nothing: every state change stays, in order, and every new
reading is counted in exactly one summary line (or is a level raised)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hemmon.alerts.worklist import summarise_history

START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
actions = st.sampled_from(["occurred"] * 4 + ["acknowledge", "note", "assigned", "snooze",
                                              "escalated", "cleared", "resolve"])
levels = st.sampled_from(["yellow", "red"])


@given(st.lists(st.tuples(actions, levels, st.floats(70, 100)), max_size=60), levels)
def test_nothing_is_lost(steps: list[tuple[str, str, float]], first: str) -> None:
    events: list[dict[str, Any]] = [{"at": START, "actor": "hemmon", "action": "opened",
                                     "level": first, "value": 90.0, "measured_at": START,
                                     "note": None}]
    for i, (action, level, value) in enumerate(steps, start=1):
        at = START + timedelta(minutes=i)
        events.append({"at": at, "actor": "hemmon", "action": action,
                       "level": level if action == "occurred" else None,
                       "value": value if action == "occurred" else None,
                       "measured_at": at, "note": None})
    lines = summarise_history(events, "spo2")
    changes = [e["action"] for e in events if e["action"] != "occurred"]
    assert [line["action"] for line in lines
            if line["action"] not in ("readings", "level_raised")] == changes
    counted = sum(line["count"] for line in lines if line["action"] == "readings")
    raised = sum(1 for line in lines if line["action"] == "level_raised")
    assert counted + raised == sum(1 for e in events if e["action"] == "occurred")
    assert raised <= 1  # yellow to red happens once; red never goes back to yellow here
    assert all(a["action"] != "readings" or b["action"] != "readings"
               for a, b in itertools.pairwise(lines))
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)
