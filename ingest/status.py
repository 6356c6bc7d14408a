"""Device status messages: `hemmon/v1/devices/{id}/status`, retained, with a last will.

`{"online": true, "battery": 80}`; the last will a device registers is
`{"online": false}`. Both fields are optional, anything else is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .normalise import finite_number
from .topics import PREFIX, valid_device_id


@dataclass(frozen=True, slots=True)
class StatusReport:
    device_id: str
    online: bool | None
    battery: float | None


class StatusError(ValueError):
    """A status message that is not one (the detail says which part)."""


def status_device(topic: str) -> str | None:
    """The device a status topic names, or None when it is not a status topic."""
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:3]) == PREFIX and parts[4] == "status":
        return parts[3] if valid_device_id(parts[3]) else None
    return None


def parse_status(device_id: str, raw: bytes) -> StatusReport:
    """The report in a status message; raises StatusError."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise StatusError("status is not JSON") from exc
    if not isinstance(data, dict):
        raise StatusError("status is not a JSON object")
    online = data.get("online")
    if online is not None and not isinstance(online, bool):
        raise StatusError("status.online: not true or false")
    battery = data.get("battery")
    if battery is not None and not (finite_number(battery) and 0 <= battery <= 100):
        raise StatusError("status.battery: not a percentage")
    return StatusReport(device_id, online, None if battery is None else float(battery))
