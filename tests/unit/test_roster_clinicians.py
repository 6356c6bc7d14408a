"""Clinicians in the roster file: the HSA-id they sign in with, their role and team."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hemmon.roster import RosterError, read_roster

BASE: dict[str, Any] = {
    "units": [{"id": "hc-stugun", "name": "Stugun hälsocentral"}],
    "teams": [{"id": "mint", "name": "MiNT Östersund"}],
}


def roster(tmp_path: Path, *clinicians: dict[str, Any]) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(yaml.safe_dump({**BASE, "clinicians": list(clinicians)}), encoding="utf-8")
    return path


def anna(**extra: Any) -> dict[str, Any]:
    return {"id": "nurse-anna", "name": "Anna Berg", "unit": "hc-stugun", **extra}


def test_a_clinician_with_hsa_id_role_and_team(tmp_path: Path) -> None:
    read = read_roster(roster(tmp_path, anna(hsa_id="SE2321000024-1234", role="mobile_team",
                                             team="mint")))
    [clinician] = read.clinicians
    assert (clinician.hsa_id, clinician.role, clinician.team) == (
        "SE2321000024-1234", "mobile_team", "mint")
    assert read_roster(roster(tmp_path, anna())).clinicians[0].role == "nurse"


@pytest.mark.parametrize(
    ("clinicians", "message"),
    [
        ([anna(hsa_id="19121212-1212")], "hsa_id"),
        ([anna(role="mobile_team")], "role mobile_team needs a team"),
        ([anna(team="nowhere")], "team 'nowhere' is not in teams"),
        ([anna(role="doctor")], "role"),
        ([anna(hsa_id="SE2321000024-1234"),
          {"id": "nurse-eva", "name": "Eva", "unit": "hc-stugun",
           "hsa_id": "SE2321000024-1234"}], "listed twice"),
    ],
    ids=["not-an-hsa-id", "team-role-without-team", "unknown-team", "unknown-role", "twice"],
)
def test_a_wrong_clinician_is_refused_naming_her(
    tmp_path: Path, clinicians: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(RosterError, match=message):
        read_roster(roster(tmp_path, *clinicians))
