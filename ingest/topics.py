"""MQTT topics of the v1 contract, parsed and built by small pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "hemmon/v1/devices"
READINGS_SUBSCRIPTION = f"{PREFIX}/+/readings/#"
STATUS_SUBSCRIPTION = f"{PREFIX}/+/status"

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class TopicError(ValueError):
    """A topic that is not one of the contract's device topics."""


@dataclass(frozen=True, slots=True)
class ReadingsTopic:
    """`hemmon/v1/devices/{device_id}/readings[/{format}]`; format None means the default."""

    device_id: str
    format: str | None


def valid_device_id(device_id: str) -> bool:
    """Whether a device id is safe to use in a topic, a file and a log line."""
    return bool(_DEVICE_ID.match(device_id))


def parse_readings_topic(topic: str) -> ReadingsTopic:
    """The device and format named by a readings topic; raises TopicError."""
    parts = topic.split("/")
    if len(parts) not in (5, 6) or "/".join(parts[:3]) != PREFIX or parts[4] != "readings":
        raise TopicError(f"topic is not {PREFIX}/{{device_id}}/readings[/{{format}}]")
    if not valid_device_id(parts[3]):
        raise TopicError("topic names an invalid device id")
    fmt = parts[5] if len(parts) == 6 else None
    if fmt == "":
        raise TopicError("topic ends with an empty format")
    return ReadingsTopic(device_id=parts[3], format=fmt)


def readings_topic(device_id: str, fmt: str | None = None) -> str:
    """The topic a device publishes its readings on."""
    base = f"{PREFIX}/{device_id}/readings"
    return f"{base}/{fmt}" if fmt else base


def feedback_topic(device_id: str) -> str:
    """The topic hemmon answers a device on."""
    return f"{PREFIX}/{device_id}/feedback"


def status_topic(device_id: str) -> str:
    """The retained topic a device reports online/battery on."""
    return f"{PREFIX}/{device_id}/status"
