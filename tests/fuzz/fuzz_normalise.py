"""libFuzzer (atheris) over normalise() for one format: never raises, every outcome kept.

Run: python tests/fuzz/fuzz_normalise.py FORMAT SEED_DIR -runs=100000
Seeds are well-formed payloads of that format (written by the test that runs this), so the
mutations explore the neighbourhood of real messages as well as arbitrary bytes.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports():
    from hemmon.ingest import fhir, ihealth, native, omh, units, withings  # noqa: F401
    from hemmon.ingest.model import Device, RejectReason, SourceFormat
    from hemmon.ingest.normalise import normalise

FORMAT = SourceFormat(sys.argv.pop(1))
DEVICES = {"dev-1": Device(id="dev-1", patient_id="p-1", format=FORMAT)}
TOPIC = f"hemmon/v1/devices/dev-1/readings/{FORMAT.value}"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
REASONS = frozenset(RejectReason)


def one(data: bytes) -> None:
    result = normalise(data, topic=TOPIC, devices=DEVICES, received_at=NOW)
    for rejection in result.rejections:
        if rejection.reason not in REASONS or rejection.raw != data:
            raise AssertionError(f"bad rejection {rejection.reason!r}")
        if rejection.detail.startswith("internal error"):
            raise AssertionError(f"normalise failed inside: {rejection.detail}")
    for reading in result.readings:
        if reading.measured_at.tzinfo is None:
            raise AssertionError("naive reading time")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
