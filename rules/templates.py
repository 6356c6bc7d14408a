"""Patient-group templates (rules/templates/*.yaml) and a patient's effective rules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter

from .model import Rule, ThresholdRule

GROUPS = ("heart_failure", "copd", "hypertension", "diabetes")
_RULES: TypeAdapter[list[Rule]] = TypeAdapter(list[Rule])


class Template(BaseModel):
    """A reviewable set of starting rules for one patient group, with its sources."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str
    name: str
    sources: tuple[str, ...]
    rules: tuple[Rule, ...]


@cache
def templates() -> dict[str, Template]:
    """Every group template shipped with hemmon, by group."""
    found = {}
    folder = resources.files("hemmon.rules") / "templates"
    for group in GROUPS:
        text = (folder / f"{group}.yaml").read_text(encoding="utf-8")
        found[group] = Template.model_validate(yaml.safe_load(text))
    return found


def parse_rules(data: object) -> list[Rule]:
    """Rules from roster data; raises pydantic.ValidationError naming the field."""
    return _RULES.validate_python(data)


def _strictest(a: ThresholdRule, b: ThresholdRule) -> ThresholdRule:
    """Two groups' thresholds for one measurement: warn when either would."""

    def low(x: float | None, y: float | None) -> float | None:
        return min(v for v in (x, y) if v is not None) if x is not None or y is not None else None

    def high(x: float | None, y: float | None) -> float | None:
        return max(v for v in (x, y) if v is not None) if x is not None or y is not None else None

    waits = [w for w in (a.confirm, b.confirm) if w is not None]
    return ThresholdRule(
        measurement=a.measurement,
        yellow_above=low(a.yellow_above, b.yellow_above),
        red_above=low(a.red_above, b.red_above),
        yellow_below=high(a.yellow_below, b.yellow_below),
        red_below=high(a.red_below, b.red_below),
        confirm=min(waits) if waits else None,
    )


def effective_rules(groups: Iterable[str], personal: Sequence[Rule]) -> tuple[Rule, ...]:
    """Template rules of the patient's groups, then the personal rules replacing by key.

    Where two groups set a threshold for the same measurement, the stricter limit of each
    kind wins; for other kinds the first group listed wins.
    """
    merged: dict[str, Rule] = {}
    known = templates()
    for group in groups:
        for rule in known[group].rules:
            current = merged.get(rule.key)
            if isinstance(current, ThresholdRule) and isinstance(rule, ThresholdRule):
                merged[rule.key] = _strictest(current, rule)
            elif current is None:
                merged[rule.key] = rule
    for rule in personal:
        merged[rule.key] = rule
    return tuple(merged.values())
