"""Memory of the per-patient series a pipeline process holds (`core.SeriesState`): bytes
per patient for two weeks of a heart-failure patient's readings (weight, pulse, blood
pressure and SpO2 twice a day: 8 readings a day, 16 days kept: the rules' 14-day look-back
and a day on each side), measured with tracemalloc.

    python -m bench.state_memory [--patients N]
"""

from __future__ import annotations

import argparse
import tracemalloc
from datetime import UTC, datetime, timedelta

from hemmon.core import SeriesState
from hemmon.ingest.model import MeasurementType
from hemmon.rules.engine import Point

KINDS = (MeasurementType.BODY_WEIGHT, MeasurementType.HEART_RATE,
         MeasurementType.BLOOD_PRESSURE_SYSTOLIC, MeasurementType.SPO2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    state = SeriesState()
    for n in range(args.patients):
        patient = f"p-{n:05d}"
        points = [Point(kind, 70.0 + i % 7, start + timedelta(hours=12 * i, minutes=k),
                        f"dev-{n:05d}/m-{i}/{kind.value}")
                  for i in range(32) for k, kind in enumerate(KINDS)]
        state.install(patient, start, points)
    after = tracemalloc.take_snapshot()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_patient = used / args.patients
    print(f"patients                  {args.patients:,}")
    print(f"readings held             {state.size:,} ({state.size // args.patients} each)")
    print(f"bytes per patient         {per_patient:,.0f}")
    print(f"bytes per reading         {used / state.size:,.0f}")
    print(f"for 4,000 patients        {4000 * per_patient / 2**20:,.1f} MiB")


if __name__ == "__main__":
    main()
