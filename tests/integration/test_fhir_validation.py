"""Every resource kind the FHIR export emits validates against R4 core (HAPI FHIR)."""

from __future__ import annotations

from ..fhir_samples import every_kind
from ..fhir_validator import validate


def test_every_emitted_kind_has_no_error_against_r4_core() -> None:
    resources = every_kind()
    kinds = {r["resourceType"] for r in resources.values()}
    assert kinds == {"Observation", "Flag", "Communication", "Bundle"}
    panels = [r for r in resources.values() if r.get("code", {}).get("coding", [{}])[0].get(
        "code") == "85354-9"]
    assert any(len(p["component"]) == 2 for p in panels)
    result = validate(resources)
    # without a terminology server LOINC and UCUM can only be warned about: errors count
    assert result.errors == [], "\n".join(result.errors)
    assert result.output.splitlines()[-1] == "0 errors"
