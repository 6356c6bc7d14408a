"""Shared fixtures: real services for integration and end-to-end tests, roster helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from hemmon.db import migrate
from hemmon.roster import RosterFile, load_roster
from hemmon.settings import MqttAddress

from .services import Kafka, Mosquitto, PostgresServer, kafka, mosquitto, postgres_server

TEMPLATE = "hemmon_template"
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole run, with a migrated template database."""
    with postgres_server() as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        migrate(server.url(TEMPLATE))
        yield server


@pytest.fixture
def database_url(pg: PostgresServer) -> str:
    """A fresh, migrated database of its own for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return pg.url(name)


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    """A Mosquitto broker for the whole run."""
    with mosquitto() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Kafka]:
    """An Apache Kafka broker (KRaft, one node) for the whole run."""
    with kafka() as server:
        yield server


@pytest.fixture
def mqtt(broker: Mosquitto) -> MqttAddress:
    return MqttAddress("127.0.0.1", broker.port, False, None, None)


ROSTER = {
    "units": [
        {"id": "hc-stugun", "name": "Stugun hälsocentral", "office_hours": "mon-fri 08:00-17:00"},
        {"id": "hc-hammarstrand", "name": "Hammarstrands hälsocentral",
         "fallback_contact": "Jourcentralen Östersund, 063-15 30 00"},
    ],
    "teams": [{"id": "mint", "name": "MiNT Östersund"}],
    "clinicians": [
        {"id": "nurse-anna", "name": "Anna Berg", "unit": "hc-stugun"},
        {"id": "nurse-karin", "name": "Karin Holm", "unit": "hc-hammarstrand"},
    ],
    "patients": [
        {
            "id": "p-0001", "unit": "hc-stugun", "fast_vardkontakt": "nurse-anna",
            "mobile_team": "mint", "groups": ["heart_failure"],
            "devices": [{"id": "dev-0001", "format": "native"}],
            "rules": [
                {"kind": "threshold", "measurement": "spo2", "yellow_below": 92,
                 "red_below": 88},
                {"kind": "threshold", "measurement": "blood_pressure_systolic",
                 "yellow_above": 160, "red_above": 180, "red_below": 90},
            ],
        },
        {
            "id": "p-0002", "unit": "hc-hammarstrand", "fast_vardkontakt": "nurse-karin",
            "groups": ["copd"], "devices": [{"id": "dev-0002"}],
        },
    ],
}


@pytest.fixture
def roster_db(database_url: str) -> str:
    """A fresh database with the test roster loaded."""
    with psycopg.connect(database_url) as conn:
        load_roster(conn, RosterFile.model_validate(ROSTER), actor="test", reason="test",
                    now=datetime.now(UTC))
    return database_url
