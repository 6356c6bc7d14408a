"""HAPI FHIR's R4 validator (deploy/fhir-validator, installed by scripts/fhir-validator)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parents[1] / "deploy" / "fhir-validator"


@dataclass(frozen=True, slots=True)
class Validation:
    errors: list[str]
    output: str


def validate(resources: dict[str, dict[str, Any]]) -> Validation:
    """Validate each named resource against R4 core, offline; the error lines and all output.

    Fails the calling test when the validator is not installed (scripts/setup installs it).
    """
    classes = FOLDER / "classes" / "Validate.class"
    assert classes.exists(), "HAPI FHIR's validator is missing: run ./scripts/fhir-validator"
    with tempfile.TemporaryDirectory(prefix="hemmon-fhir-") as folder:
        files = []
        for name, resource in resources.items():
            path = Path(folder) / f"{name}.json"
            path.write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")
            files.append(str(path))
        done = subprocess.run(
            ["java", "-cp", f"{FOLDER / 'lib'}/*:{FOLDER / 'classes'}", "Validate", *files],
            capture_output=True, text=True, timeout=180, check=False)
    lines = done.stdout.splitlines()
    assert lines, done.stderr
    assert lines[-1].endswith(" errors"), done.stdout + done.stderr
    errors = [line for line in lines if "\tERROR\t" in line or "\tFATAL\t" in line]
    return Validation(errors, done.stdout)
