"""The `hemmon` command as an operator runs it, against a real PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from hemmon.alerts.access import read_token

from ..conftest import ROSTER
from ..services import Mosquitto, PostgresServer, free_port

SECRET = "cli-test-secret-0123456789-abcdefghijkl"


def hemmon(*args: str, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "hemmon.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HEMMON_DATABASE_URL": "postgresql://postgres@127.0.0.1:{closed}/hemmon",
          "HEMMON_SECRET_KEY": SECRET}, "HEMMON_DATABASE_URL"),
        ({"HEMMON_DATABASE_URL": "mysql://somewhere/db", "HEMMON_SECRET_KEY": SECRET},
         "HEMMON_DATABASE_URL"),
        ({"HEMMON_SECRET_KEY": SECRET}, "HEMMON_DATABASE_URL"),
        ({"HEMMON_DATABASE_URL": "postgresql://x@127.0.0.1/db", "HEMMON_HTTP_PORT": "eighty",
          "HEMMON_SECRET_KEY": SECRET}, "HEMMON_HTTP_PORT"),
        ({"HEMMON_DATABASE_URL": "postgresql://x@127.0.0.1/db", "HEMMON_SECRET_KEY": "short"},
         "HEMMON_SECRET_KEY"),
        ({"HEMMON_DATABASE_URL": "postgresql://x@127.0.0.1/db", "HEMMON_SECRET_KEY": SECRET,
          "HEMMON_TIMEZONE": "Mars/Olympus"}, "HEMMON_TIMEZONE"),
        ({"HEMMON_DATABASE_URL": "postgresql://x@127.0.0.1/db", "HEMMON_SECRET_KEY": SECRET,
          "HEMMON_MQTT_URL": "http://broker"}, "HEMMON_MQTT_URL"),
        ({"HEMMON_DATABASE_URL": "postgresql://x@127.0.0.1/db", "HEMMON_SECRET_KEY": SECRET,
          "HEMMON_PIPELINES": "many"}, "HEMMON_PIPELINES"),
    ],
)
def test_a_bad_setting_stops_run_at_start_naming_it(env: dict[str, str], named: str) -> None:
    env = {k: v.replace("{closed}", str(free_port())) for k, v in env.items()}
    result = hemmon("run", env=env, timeout=30)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    if named == "HEMMON_SECRET_KEY":
        assert "short" not in result.stderr


def test_an_unreachable_broker_stops_run_naming_it(database_url: str) -> None:
    result = hemmon("run", env={"HEMMON_DATABASE_URL": database_url, "HEMMON_SECRET_KEY": SECRET,
                                "HEMMON_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}"})
    assert result.returncode == 2
    assert "HEMMON_MQTT_URL" in result.stderr


def test_run_refuses_a_database_without_the_schema(pg: PostgresServer, broker: Mosquitto) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS empty_db")
        conn.execute("CREATE DATABASE empty_db")
    result = hemmon("run", env={"HEMMON_DATABASE_URL": pg.url("empty_db"),
                                "HEMMON_SECRET_KEY": SECRET,
                                "HEMMON_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}"})
    assert result.returncode == 2
    assert "hemmon migrate" in result.stderr


def test_migrate_and_roster_load_are_idempotent(pg: PostgresServer, tmp_path: Path) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cli_db")
        conn.execute("CREATE DATABASE cli_db")
    env = {"HEMMON_DATABASE_URL": pg.url("cli_db"), "HEMMON_SECRET_KEY": SECRET}
    first = hemmon("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "0 migration(s)" not in first.stdout
    second = hemmon("migrate", env=env)
    assert "0 migration(s) applied" in second.stdout

    roster = tmp_path / "roster.yaml"
    roster.write_text(yaml.safe_dump(ROSTER, allow_unicode=True), encoding="utf-8")
    loaded = hemmon("roster", "load", str(roster), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert "2 new rule versions" in loaded.stdout
    again = hemmon("roster", "load", str(roster), env=env)
    assert "0 rows changed, 0 new rule versions" in again.stdout
    with psycopg.connect(pg.url("cli_db")) as conn:
        assert conn.execute("SELECT revision FROM roster_revision").fetchone() == (1,)

    changed = dict(ROSTER)
    changed["patients"] = [dict(ROSTER["patients"][0], rules=[]), *ROSTER["patients"][1:]]
    roster.write_text(yaml.safe_dump(changed, allow_unicode=True), encoding="utf-8")
    third = hemmon("roster", "load", str(roster), "--actor", "dr-lind", "--reason", "ny plan",
                   env=env)
    assert "1 new rule versions" in third.stdout
    with psycopg.connect(pg.url("cli_db")) as conn:
        row = conn.execute("SELECT version, changed_by, reason FROM rule_versions"
                           " WHERE patient_id = 'p-0001' ORDER BY version DESC").fetchone()
    assert row == (2, "dr-lind", "ny plan")

    token = hemmon("token", "create", "--user", "nurse-anna", "--role", "nurse", env=env)
    assert token.returncode == 0, token.stderr
    claims = read_token(SECRET, token.stdout.strip())
    assert (claims.user, claims.role) == ("nurse-anna", "nurse")
    assert f"hemmon token revoke {claims.token_id}" in token.stderr
    revoked = hemmon("token", "revoke", claims.token_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    with psycopg.connect(pg.url("cli_db")) as conn:
        assert conn.execute("SELECT revoked_at IS NOT NULL, expires_at - created_at"
                            " FROM service_tokens").fetchall() == [(True, timedelta(hours=12))]
    assert hemmon("token", "revoke", claims.token_id, env=env).returncode == 2
    unknown = hemmon("token", "create", "--user", "nobody", "--role", "nurse", env=env)
    assert unknown.returncode == 2
    assert "no such clinician" in unknown.stderr
    code = hemmon("token", "code", "--user", "nurse-anna", env=env)
    assert re.search(r"engångskod för nurse-anna: [0-9A-F]{5}-[0-9A-F]{5}", code.stdout)
    assert hemmon("token", "code", "--user", "nobody", env=env).returncode == 2


def test_a_broken_roster_is_refused_naming_the_entry(pg: PostgresServer, tmp_path: Path) -> None:
    broken = dict(ROSTER)
    broken["patients"] = [dict(ROSTER["patients"][0], fast_vardkontakt="nurse-nobody")]
    roster = tmp_path / "roster.yaml"
    roster.write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    result = hemmon("roster", "load", str(roster),
                    env={"HEMMON_DATABASE_URL": pg.url(), "HEMMON_SECRET_KEY": SECRET})
    assert result.returncode == 2
    assert "p-0001" in result.stderr
    assert "nurse-nobody" in result.stderr


@pytest.mark.parametrize("role", ["worker", "alerts", "bridge"])
def test_the_distributed_roles_stop_at_start_naming_an_unreachable_kafka(
        role: str, database_url: str, broker: Mosquitto) -> None:
    result = hemmon(role, env={"HEMMON_DATABASE_URL": database_url, "HEMMON_SECRET_KEY": SECRET,
                               "HEMMON_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
                               "HEMMON_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 2
    assert "HEMMON_KAFKA_BOOTSTRAP" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("role", "env", "named"), [
    ("worker", {"HEMMON_KAFKA_PARTITIONS": "0"}, "HEMMON_KAFKA_PARTITIONS"),
    ("alerts", {"HEMMON_SECRET_KEY": ""}, "HEMMON_SECRET_KEY"),
    ("worker", {"HEMMON_DATABASE_URL": ""}, "HEMMON_DATABASE_URL"),
])
def test_the_distributed_roles_stop_at_start_naming_a_bad_setting(
        role: str, env: dict[str, str], named: str, kafka_broker: object) -> None:
    from ..services import Kafka

    assert isinstance(kafka_broker, Kafka)
    base = {"HEMMON_DATABASE_URL": "postgresql://x@127.0.0.1/db", "HEMMON_SECRET_KEY": SECRET,
            "HEMMON_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    result = hemmon(role, env={**base, **env})
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
