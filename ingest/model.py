"""What a device message becomes: readings, rejections and device extras.

A message from a device yields zero or more `Reading`s (one per measurement, in the
canonical UCUM unit) and zero or more `Rejection`s (something that could not become a
reading, with a reason from the fixed list `RejectReason`). Nothing is dropped: a
rejection keeps the raw bytes so that it can be listed and replayed after a fix.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict


class MeasurementType(StrEnum):
    """A kind of home measurement (codes and units in shared/domain.md)."""

    HEART_RATE = "heart_rate"
    SPO2 = "spo2"
    BLOOD_PRESSURE_SYSTOLIC = "blood_pressure_systolic"
    BLOOD_PRESSURE_DIASTOLIC = "blood_pressure_diastolic"
    BODY_WEIGHT = "body_weight"
    BODY_TEMPERATURE = "body_temperature"
    RESPIRATORY_RATE = "respiratory_rate"
    BLOOD_GLUCOSE = "blood_glucose"


class SourceFormat(StrEnum):
    """The payload format a device speaks (shared/formats.md)."""

    NATIVE = "native"
    FHIR = "fhir"
    OMH = "omh"
    WITHINGS = "withings"
    IHEALTH = "ihealth"


class RejectReason(StrEnum):
    """Why something could not become a reading: the fixed list, also a metric label."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_JSON = "not_json"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_FORMAT = "unknown_format"
    UNKNOWN_DEVICE = "unknown_device"
    SCHEMA_INVALID = "schema_invalid"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_UNIT = "unknown_unit"
    IMPLAUSIBLE_VALUE = "implausible_value"
    NAIVE_TIME = "naive_time"
    FUTURE_TIME = "future_time"
    DUPLICATE_MEASUREMENT = "duplicate_measurement"
    NOT_A_READING = "not_a_reading"
    INTERNAL_ERROR = "internal_error"
    """Not the message's fault: a bug in hemmon met it. Kept for replay after a fix."""
    DATABASE_REFUSED = "database_refused"
    """The database refused to store it (a constraint or trigger). Kept for replay."""


class Reading(BaseModel):
    """One measurement of one patient, in the canonical unit, at the instant it was taken."""

    model_config = ConfigDict(frozen=True)

    patient_id: str
    device_id: str
    type: MeasurementType
    value: float
    unit: str
    measured_at: AwareDatetime
    received_at: AwareDatetime
    source_format: SourceFormat
    manual: bool
    key: str
    """The message's idempotency key (native: message_id). Unique with device and type."""
    on_oxygen: bool | None = None
    """Whether the patient was on supplemental oxygen, when the message says."""


class Rejection(BaseModel):
    """Something from a device that is not a reading, kept with its reason and raw bytes."""

    model_config = ConfigDict(frozen=True)

    reason: RejectReason
    detail: str
    topic: str
    raw: bytes
    received_at: AwareDatetime
    device_id: str | None = None
    patient_id: str | None = None
    key: str | None = None


class DeviceExtras(BaseModel):
    """What a message says besides readings: device health and oxygen therapy."""

    model_config = ConfigDict(frozen=True)

    battery: float | None = None
    supplemental_oxygen: bool | None = None


class Normalised(BaseModel):
    """Everything one message gave: readings, rejections, extras, and its key if known."""

    model_config = ConfigDict(frozen=True)

    readings: tuple[Reading, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    extras: DeviceExtras = DeviceExtras()
    key: str | None = None
    skipped: int = 0
    """Records that were well-formed but are not readings here (goals, fat ratio, ...)."""


class Device(BaseModel):
    """A registered device and the patient it belongs to (from the roster)."""

    model_config = ConfigDict(frozen=True)

    id: str
    patient_id: str
    format: SourceFormat = SourceFormat.NATIVE

