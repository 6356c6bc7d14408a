"""Broker files from the roster: hashes Mosquitto reads, passwords kept across runs."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from hemmon.ingest.broker_auth import SERVICE_USER, acl, password_hash, write_broker_files


def test_the_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    line = password_hash("secret123", salt=b"0123456789ab", iterations=101)
    _, kind, iterations, salt, digest = line.split("$")
    assert (kind, iterations, base64.b64decode(salt)) == ("7", "101", b"0123456789ab")
    expected = hashlib.pbkdf2_hmac("sha512", b"secret123", b"0123456789ab", 101, 64)
    assert base64.b64decode(digest) == expected


def test_each_device_only_its_own_topics() -> None:
    text = acl()
    assert f"user {SERVICE_USER}" in text
    assert "pattern write hemmon/v1/devices/%u/readings/+" in text
    assert "pattern read hemmon/v1/devices/%u/feedback" in text
    assert "pattern write hemmon/v1/devices/%u/feedback" not in text
    assert "pattern read hemmon/v1/devices/+" not in text


def test_running_again_keeps_passwords_and_drops_removed_devices(tmp_path: Path) -> None:
    first = write_broker_files(tmp_path, ["dev-1", "dev-2"])
    second = write_broker_files(tmp_path, ["dev-1", "dev-3"])
    assert second["dev-1"] == first["dev-1"]
    assert second[SERVICE_USER] == first[SERVICE_USER]
    assert "dev-2" not in second
    assert second["dev-3"] not in first.values()
    lines = (tmp_path / "hemmon.passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == [SERVICE_USER, "dev-1", "dev-3"]
    assert stat.S_IMODE((tmp_path / "credentials.csv").stat().st_mode) == 0o600
    assert first["dev-1"] not in (tmp_path / "hemmon.passwd").read_text()


def test_a_device_id_that_cannot_be_a_user_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be an MQTT user name"):
        write_broker_files(tmp_path, ["dev/1"])
