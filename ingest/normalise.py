"""Turn one device message into readings and rejections. Pure: no I/O, never raises.

`normalise()` is the single entry point both runners call. It checks the topic and the
device, picks the format adapter (topic suffix, else the device's registered format), and
lets the adapter turn the payload into candidate measurements; the checks every format
shares (unit, plausibility, time) live here in `Candidate.build`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import TypeGuard

from .model import (
    Device,
    DeviceExtras,
    MeasurementType,
    Normalised,
    Reading,
    Rejection,
    RejectReason,
    SourceFormat,
)
from .topics import TopicError, parse_readings_topic
from .units import SPECS, ImplausibleValue, UnitError, to_canonical

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_MAGNITUDE = 1e12
"""Numbers beyond this are nobody's vital sign: rejected before any arithmetic overflows."""


def finite_number(value: object) -> TypeGuard[int | float]:
    """A JSON number hemmon can compute with: not a bool, finite, not absurdly large."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return abs(value) < MAX_MAGNITUDE
    return math.isfinite(value) and abs(value) < MAX_MAGNITUDE


def is_member(value: object, allowed: Container[object]) -> bool:
    """`value in allowed` for untrusted JSON: a list or an object is never a member."""
    return isinstance(value, str | int | float | bool) and value in allowed


def safe_text(value: str | None) -> str | None:
    """The text if PostgreSQL and JSON can carry it (no NUL, no lone surrogate), else None."""
    if value is None or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


@dataclass(frozen=True, slots=True)
class Context:
    """What an adapter knows about the message besides its bytes."""

    raw: bytes
    topic: str
    device: Device
    received_at: datetime

    def reject(
        self, reason: RejectReason, detail: str, key: str | None = None
    ) -> Rejection:
        return Rejection(
            reason=reason,
            detail=detail,
            topic=self.topic,
            raw=self.raw,
            received_at=self.received_at,
            device_id=self.device.id,
            patient_id=self.device.patient_id,
            key=safe_text(key),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A measurement as a payload states it, before the checks every format shares."""

    type: MeasurementType
    value: float
    unit: str
    measured_at: datetime
    manual: bool
    key: str
    where: str
    """Where in the payload it came from, for a rejection's detail (e.g. measurements[1])."""

    def build(self, ctx: Context, fmt: SourceFormat) -> Reading | Rejection:
        """The reading, or the rejection that says which shared check failed."""
        if self.measured_at.tzinfo is None or self.measured_at.utcoffset() is None:
            return ctx.reject(
                RejectReason.NAIVE_TIME, f"{self.where}: time has no UTC offset", self.key
            )
        if self.measured_at > ctx.received_at + FUTURE_TOLERANCE:
            ahead = self.measured_at - ctx.received_at
            return ctx.reject(
                RejectReason.FUTURE_TIME,
                f"{self.where}: measured {int(ahead.total_seconds())} s after it was "
                "received (device clock wrong?)",
                self.key,
            )
        try:
            value = to_canonical(self.type, self.value, self.unit)
        except UnitError as exc:
            return ctx.reject(RejectReason.UNKNOWN_UNIT, f"{self.where}: {exc}", self.key)
        except ImplausibleValue as exc:
            return ctx.reject(RejectReason.IMPLAUSIBLE_VALUE, f"{self.where}: {exc}", self.key)
        # every field was checked above or comes from the roster: no second validation
        return Reading.model_construct(
            patient_id=ctx.device.patient_id,
            device_id=ctx.device.id,
            type=self.type,
            value=value,
            unit=SPECS[self.type].canonical,
            measured_at=self.measured_at,
            received_at=ctx.received_at,
            source_format=fmt,
            manual=self.manual,
            key=self.key,
        )


@dataclass(slots=True)
class Parsed:
    """What an adapter found: candidates, its own rejections, extras and the message key."""

    candidates: list[Candidate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    extras: DeviceExtras = field(default_factory=DeviceExtras)
    key: str | None = None
    skipped: int = 0
    """Records that are well-formed but not readings here (a goal, a fat ratio): no error."""


Adapter = Callable[[Context], Parsed]


@cache
def _adapters() -> Mapping[SourceFormat, Adapter]:
    from .fhir import parse_fhir
    from .ihealth import parse_ihealth
    from .native import parse_native
    from .omh import parse_omh
    from .withings import parse_withings

    return {
        SourceFormat.NATIVE: parse_native,
        SourceFormat.FHIR: parse_fhir,
        SourceFormat.OMH: parse_omh,
        SourceFormat.WITHINGS: parse_withings,
        SourceFormat.IHEALTH: parse_ihealth,
    }


def normalise(
    raw: bytes,
    *,
    topic: str,
    devices: Mapping[str, Device],
    received_at: datetime,
) -> Normalised:
    """Readings and rejections from one message on a readings topic. Never raises."""
    try:
        return _normalise(raw, topic, devices, received_at)
    except Exception as exc:  # a bug must not lose the message: keep it as a rejection
        log.exception("normalise failed: a bug in hemmon; the message is kept for replay")
        return Normalised(
            rejections=(
                Rejection(
                    reason=RejectReason.INTERNAL_ERROR,
                    detail=f"internal error while reading the message: {type(exc).__name__}",
                    topic=topic,
                    raw=raw,
                    received_at=received_at,
                ),
            )
        )


def _normalise(
    raw: bytes, topic: str, devices: Mapping[str, Device], received_at: datetime
) -> Normalised:
    def reject_message(reason: RejectReason, detail: str, device: Device | None) -> Normalised:
        return Normalised(
            rejections=(
                Rejection(
                    reason=reason,
                    detail=detail,
                    topic=topic,
                    raw=raw,
                    received_at=received_at,
                    device_id=device.id if device else None,
                    patient_id=device.patient_id if device else None,
                ),
            )
        )

    try:
        parsed_topic = parse_readings_topic(topic)
    except TopicError as exc:
        return reject_message(RejectReason.BAD_TOPIC, str(exc), None)
    device = devices.get(parsed_topic.device_id)
    if device is None:
        return reject_message(
            RejectReason.UNKNOWN_DEVICE, "the device is not in the roster", None
        )
    if len(raw) > MAX_PAYLOAD_BYTES:
        return reject_message(
            RejectReason.PAYLOAD_TOO_LARGE,
            f"payload is {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES}",
            device,
        )
    fmt_name = parsed_topic.format or device.format.value
    try:
        fmt = SourceFormat(fmt_name)
    except ValueError:
        return reject_message(
            RejectReason.UNKNOWN_FORMAT, f"format {fmt_name[:40]!r} is not known", device
        )
    adapter = _adapters()[fmt]
    ctx = Context(raw=raw, topic=topic, device=device, received_at=received_at)
    parsed = adapter(ctx)
    readings: list[Reading] = []
    rejections = list(parsed.rejections)
    seen: set[tuple[str, MeasurementType, datetime]] = set()
    for candidate in parsed.candidates:
        identity = (candidate.key, candidate.type, candidate.measured_at)
        if identity in seen:
            rejections.append(
                ctx.reject(
                    RejectReason.DUPLICATE_MEASUREMENT,
                    f"{candidate.where}: a second {candidate.type} at the same time",
                    candidate.key,
                )
            )
            continue
        seen.add(identity)
        if safe_text(candidate.key) is None:
            rejections.append(ctx.reject(RejectReason.SCHEMA_INVALID,
                                         f"{candidate.where}: the record's key is not valid text"))
            continue
        result = candidate.build(ctx, fmt)
        if isinstance(result, Reading):
            oxygen = parsed.extras.supplemental_oxygen
            readings.append(result if oxygen is None
                            else result.model_copy(update={"on_oxygen": oxygen}))
        else:
            rejections.append(result)
    return Normalised(
        readings=tuple(readings),
        rejections=tuple(rejections),
        extras=parsed.extras,
        key=safe_text(parsed.key),
        skipped=parsed.skipped,
    )
