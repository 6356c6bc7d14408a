"""Virtual patients measuring themselves at home, for the demo, tests and load.

Generation is pure (a seeded random source in, native v1 payloads out); `Publisher` sends
them over MQTT with QoS 1, waiting for the broker's acknowledgements with a cap on
messages in flight (paho reports success for messages a broker later drops otherwise).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hemmon.ingest.topics import readings_topic

from .settings import MqttAddress

GROUPS = ("heart_failure", "copd", "hypertension", "diabetes")


@dataclass(frozen=True, slots=True)
class VirtualPatient:
    patient_id: str
    device_id: str
    group: str
    deteriorating: bool = False
    weight: float = 78.0


def virtual_patients(count: int, *, prefix: str = "sim", deteriorating: int = 0,
                     seed: int = 1) -> list[VirtualPatient]:
    rng = random.Random(seed)
    return [
        VirtualPatient(
            patient_id=f"{prefix}-p-{i:05d}",
            device_id=f"{prefix}-d-{i:05d}",
            group=GROUPS[i % len(GROUPS)],
            deteriorating=i < deteriorating,
            weight=round(rng.uniform(55, 110), 1),
        )
        for i in range(count)
    ]


def measurements(
    patient: VirtualPatient, progress: float, rng: random.Random
) -> list[dict[str, Any]]:
    """One home measurement session; `progress` 0..1 is how far a deterioration has come."""
    worse = progress if patient.deteriorating else 0.0
    systolic = rng.gauss(132 - 25 * worse, 6)
    diastolic = rng.gauss(80 - 8 * worse, 4)
    pulse = rng.gauss(72 + 50 * worse, 4)
    found: list[dict[str, Any]] = [
        {"type": "blood_pressure_systolic", "value": round(systolic), "unit": "mm[Hg]"},
        {"type": "blood_pressure_diastolic", "value": round(min(diastolic, systolic - 20)),
         "unit": "mm[Hg]"},
        {"type": "heart_rate", "value": round(pulse), "unit": "/min"},
    ]
    if patient.group in ("heart_failure", "copd"):
        spo2 = min(100.0, rng.gauss(95.5 - 11 * worse, 0.8))
        found.append({"type": "spo2", "value": round(spo2), "unit": "%"})
    if patient.group == "heart_failure":
        weight = patient.weight + 3.2 * worse + rng.gauss(0, 0.2)
        found.append({"type": "body_weight", "value": round(weight, 1), "unit": "kg"})
    if patient.group == "diabetes":
        found.append({"type": "blood_glucose", "value": round(rng.gauss(7.5, 1.2), 1),
                      "unit": "mmol/L"})
    return found


def payload(patient: VirtualPatient, message_id: str, measured_at: datetime,
            progress: float, rng: random.Random) -> bytes:
    """A native v1 message for one measurement session."""
    return json.dumps({
        "schema": "hemmon.reading/1",
        "message_id": message_id,
        "measured_at": measured_at.isoformat(),
        "manual": False,
        "measurements": measurements(patient, progress, rng),
    }).encode()


def roster_for(patients: list[VirtualPatient], *, unit: str = "hc-sim") -> dict[str, Any]:
    """A roster (contract.md) that makes the virtual patients known to hemmon."""
    return {
        "units": [{"id": unit, "name": "Simulerad hälsocentral",
                   "office_hours": "mon-fri 08:00-17:00"}],
        "teams": [{"id": "mint-sim", "name": "Simulerat mobilt team"}],
        "clinicians": [{"id": f"{unit}-nurse", "name": "Simulerad sjuksköterska", "unit": unit}],
        "patients": [
            {"id": p.patient_id, "unit": unit, "fast_vardkontakt": f"{unit}-nurse",
             "mobile_team": "mint-sim", "groups": [p.group],
             "devices": [{"id": p.device_id, "format": "native"}]}
            for p in patients
        ],
    }


def schedule(patients: list[VirtualPatient], *, sessions: int, start: datetime,
             spacing: timedelta, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """(topic, payload) for `sessions` rounds over all patients, deteriorating as it goes."""
    rng = random.Random(seed)
    for round_ in range(sessions):
        progress = round_ / max(1, sessions - 1)
        at = start + spacing * round_
        for p in patients:
            yield (readings_topic(p.device_id),
                   payload(p, f"{p.device_id}-{round_}", at, progress, rng))


class Publisher:
    """QoS 1 publishing that waits for PUBACKs, at most `in_flight` unacknowledged."""

    def __init__(self, address: MqttAddress, *, client_id: str = "hemmon-simulator",
                 in_flight: int = 100,
                 protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311) -> None:
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=client_id, protocol=protocol)
        self._client.max_inflight_messages_set(in_flight)
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set()
        self._client.connect(address.host, address.port, keepalive=30)
        self._client.loop_start()
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self._in_flight = in_flight

    def publish(self, topic: str, body: bytes) -> None:
        self._pending.append(self._client.publish(topic, body, qos=1))
        if len(self._pending) >= self._in_flight:
            self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        for info in self._pending:
            info.wait_for_publish(timeout)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()


def run_simulation(address: MqttAddress, patients: list[VirtualPatient], *, sessions: int,
                   start: datetime, spacing: timedelta, rate: float | None = None,
                   seed: int = 1, progress: bool = True) -> int:
    """Publish every session of every patient; returns the number of messages sent."""
    publisher = Publisher(address)
    total = sessions * len(patients)
    sent = 0
    started = last_report = time.monotonic()
    try:
        for topic, body in schedule(patients, sessions=sessions, start=start,
                                    spacing=spacing, seed=seed):
            publisher.publish(topic, body)
            sent += 1
            now = time.monotonic()
            if rate:
                ahead = sent / rate - (now - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress and now - last_report >= 1.0:
                last_report = now
                pace = sent / max(now - started, 1e-9)
                print(f"\rskickat {sent}/{total} meddelanden ({pace:.0f}/s)", end="",
                      file=sys.stderr, flush=True)
        publisher.flush()
    finally:
        publisher.close()
    if progress:
        print(f"\rskickat {sent}/{total} meddelanden          ", file=sys.stderr)
    return sent
