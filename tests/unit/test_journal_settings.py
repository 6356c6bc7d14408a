"""The journal's settings: URL and secret together, an identifier system that is a URI."""

from __future__ import annotations

import pytest

from hemmon.notifier import journal_for
from hemmon.settings import SettingsError, load_settings


def test_the_journal_needs_both_url_and_secret() -> None:
    assert journal_for(load_settings({})) is None
    with pytest.raises(SettingsError, match="HEMMON_JOURNAL_SECRET"):
        load_settings({"HEMMON_JOURNAL_URL": "https://fhir.regionjh.se/r4"}).journal()
    with pytest.raises(SettingsError, match="HEMMON_JOURNAL_URL"):
        load_settings({"HEMMON_JOURNAL_URL": "fhir.regionjh.se"})
    with pytest.raises(SettingsError, match=r"HEMMON_JOURNAL_SECRET has value '\*\*\*'"):
        load_settings({"HEMMON_JOURNAL_SECRET": "short"})
    both = load_settings({"HEMMON_JOURNAL_URL": "https://fhir.regionjh.se/r4",
                          "HEMMON_JOURNAL_SECRET": "s" * 32,
                          "HEMMON_FHIR_SYSTEM": "https://fhir.regionjh.se/sid/hemmon"})
    journal = journal_for(both)
    assert journal is not None
    assert journal.systems.of("patient") == "https://fhir.regionjh.se/sid/hemmon/patient"


@pytest.mark.parametrize("system", ["hemmon", "https://", "urn:hemmon:", "ftp://x/y"])
def test_a_bad_identifier_system_names_the_setting(system: str) -> None:
    with pytest.raises(SettingsError, match="HEMMON_FHIR_SYSTEM"):
        load_settings({"HEMMON_FHIR_SYSTEM": system})
