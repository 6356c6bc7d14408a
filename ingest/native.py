"""The native v1 payload (`schema: hemmon.reading/1`, shared/formats.md).

The envelope is validated as a whole; each measurement on its own, so that one bad
measurement becomes a rejection while its good siblings still become readings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .model import DeviceExtras, MeasurementType, RejectReason
from .normalise import Candidate, Context, Parsed, finite_number

SCHEMA = "hemmon.reading/1"
MAX_MEASUREMENTS = 32


class _Envelope(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    schema_: Literal["hemmon.reading/1"] = Field(alias="schema")
    message_id: Annotated[str, Field(min_length=1, max_length=128)]
    measured_at: datetime
    manual: bool = False
    measurements: Annotated[list[Any], Field(min_length=1, max_length=MAX_MEASUREMENTS)]


class _Measurement(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    type: Annotated[str, Field(max_length=64)]
    value: Any
    unit: Annotated[str, Field(max_length=32)] | None = None


_MEASUREMENT = TypeAdapter(_Measurement)
_MEASUREMENT_TYPES = {t.value: t for t in MeasurementType}



def _battery(value: Any) -> float | None:
    return float(value) if finite_number(value) and 0 <= value <= 100 else None


def _oxygen(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


_EXTRAS = {"battery": _battery, "supplemental_oxygen": _oxygen}


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """A short, payload-free description naming the first failing fields."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in error["loc"])
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "payload")
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def is_json_error(exc: ValidationError) -> bool:
    return any(e["type"] == "json_invalid" for e in exc.errors(include_url=False))


def parse_native(ctx: Context) -> Parsed:
    """Candidates and rejections from a native v1 message."""
    try:
        envelope = _Envelope.model_validate_json(ctx.raw)
    except ValidationError as exc:
        if is_json_error(exc):
            return Parsed(rejections=[ctx.reject(RejectReason.NOT_JSON, "payload is not JSON")])
        return Parsed(rejections=[ctx.reject(RejectReason.SCHEMA_INVALID, describe_errors(exc))])

    parsed = Parsed(key=envelope.message_id)
    battery: float | None = None
    oxygen: bool | None = None
    for index, item in enumerate(envelope.measurements):
        where = f"measurements[{index}]"
        try:
            measurement = _MEASUREMENT.validate_python(item)
        except ValidationError as exc:
            parsed.rejections.append(
                ctx.reject(
                    RejectReason.SCHEMA_INVALID, describe_errors(exc, where), envelope.message_id
                )
            )
            continue
        if measurement.type in _EXTRAS:
            value = _EXTRAS[measurement.type](measurement.value)
            if value is None:
                parsed.rejections.append(
                    ctx.reject(
                        RejectReason.SCHEMA_INVALID,
                        f"{where}: {measurement.type} has an invalid value",
                        envelope.message_id,
                    )
                )
            elif measurement.type == "battery":
                battery = float(value)
            else:
                oxygen = bool(value)
            continue
        kind = _MEASUREMENT_TYPES.get(measurement.type)
        if kind is None:
            parsed.rejections.append(
                ctx.reject(
                    RejectReason.UNKNOWN_TYPE,
                    f"{where}: type {measurement.type[:40]!r} is not known",
                    envelope.message_id,
                )
            )
            continue
        if not finite_number(measurement.value) or measurement.unit is None:
            reason, detail = (
                (RejectReason.SCHEMA_INVALID, "value must be a number")
                if not finite_number(measurement.value)
                else (RejectReason.UNKNOWN_UNIT, f"{kind} has no unit")
            )
            parsed.rejections.append(
                ctx.reject(reason, f"{where}: {detail}", envelope.message_id)
            )
            continue
        parsed.candidates.append(
            Candidate(
                type=kind,
                value=float(measurement.value),
                unit=measurement.unit,
                measured_at=envelope.measured_at,
                manual=envelope.manual,
                key=envelope.message_id,
                where=where,
            )
        )
    parsed.extras = DeviceExtras(battery=battery, supplemental_oxygen=oxygen)
    return parsed

