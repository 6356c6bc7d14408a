"""Hypothesis: normalise never raises and never loses a message; thresholds are monotone."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hemmon.ingest.model import Device, MeasurementType, RejectReason
from hemmon.ingest.normalise import normalise
from hemmon.ingest.units import POUND_KG, SPECS, to_canonical
from hemmon.rules.evaluate import threshold_level
from hemmon.rules.model import ThresholdRule

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DEVICES = {"dev-1": Device(id="dev-1", patient_id="p-1")}
TOPIC = "hemmon/v1/devices/dev-1/readings"
REASONS = set(RejectReason)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def accounted_for(raw: bytes) -> None:
    result = normalise(raw, topic=TOPIC, devices=DEVICES, received_at=NOW)
    has_extras = result.extras.battery is not None or result.extras.supplemental_oxygen is not None
    assert result.readings or result.rejections or has_extras, "a message vanished"
    for rejection in result.rejections:
        assert rejection.reason in REASONS
        assert rejection.raw == raw
    for reading in result.readings:
        spec = SPECS[reading.type]
        assert spec.low <= reading.value <= spec.high
        assert reading.measured_at.tzinfo is not None


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_normalise_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    accounted_for(raw)


@settings(max_examples=500)
@given(json_values)
def test_normalise_never_raises_on_arbitrary_json(value: Any) -> None:
    accounted_for(json.dumps(value).encode())


measurement = st.fixed_dictionaries({
    "type": st.sampled_from([t.value for t in MeasurementType] + ["battery", "mood"]),
    "value": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                       st.booleans(), st.text(max_size=5)),
    "unit": st.sampled_from(["%", "/min", "kg", "[lb_av]", "mm[Hg]", "kPa", "Cel", "[degF]",
                             "mg/dL", "mmol/L", "parsec"]),
})


@settings(max_examples=500)
@given(
    measurements=st.lists(measurement, max_size=6),
    offset=st.integers(min_value=-23 * 60, max_value=23 * 60),
    shift=st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(hours=1)),
)
def test_normalise_never_raises_on_native_shaped_messages(
    measurements: list[dict[str, Any]], offset: int, shift: timedelta
) -> None:
    from datetime import timezone

    at = (NOW + shift).astimezone(timezone(timedelta(minutes=offset)))
    raw = json.dumps({"schema": "hemmon.reading/1", "message_id": "m",
                      "measured_at": at.isoformat(), "measurements": measurements}).encode()
    accounted_for(raw)


@given(st.floats(min_value=20 / POUND_KG, max_value=350 / POUND_KG))
def test_pounds_round_trip(pounds: float) -> None:
    kilograms = to_canonical(MeasurementType.BODY_WEIGHT, pounds, "[lb_av]")
    assert math.isclose(kilograms / POUND_KG, pounds, rel_tol=1e-12)


limits = st.floats(min_value=50, max_value=100, allow_nan=False)


@given(yellow=limits, gap=st.floats(min_value=0, max_value=20), low=limits, high=limits)
def test_a_lower_value_is_never_less_urgent_under_below_limits(
    yellow: float, gap: float, low: float, high: float
) -> None:
    rule = ThresholdRule(measurement=MeasurementType.SPO2, yellow_below=yellow,
                         red_below=yellow - gap)
    low, high = min(low, high), max(low, high)

    def rank(value: float) -> int:
        crossed = threshold_level(rule, value)
        return crossed[0].rank if crossed else 0

    assert rank(low) >= rank(high)
