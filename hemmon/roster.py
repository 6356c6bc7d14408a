"""The roster: units, teams, clinicians, patients, devices and their rules (contract.md).

`load_roster` upserts a roster file; loading the same file twice changes nothing (no new
rule version, no new revision). `RosterSnapshot` is the read-only view a pipeline uses:
device -> patient, each patient's effective rules and care team.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
import yaml
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hemmon.alerts.routing import STOCKHOLM, CareTeam, OfficeHours
from hemmon.errors import SettingsError
from hemmon.ingest.model import Device, SourceFormat
from hemmon.ingest.topics import valid_device_id
from hemmon.rules.model import Duration, Rule
from hemmon.rules.storage import save_rules
from hemmon.rules.templates import GROUPS, parse_rules

Connection = psycopg.Connection[Any]
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


class RosterError(SettingsError):
    """A roster file that cannot be loaded; the message names the entry."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UnitEntry(_Entry):
    id: Id
    name: str
    office_hours: str = "mon-fri 08:00-17:00"
    fallback_contact: str | None = None
    """Who takes red alerts out of hours for patients without a mobile team."""

    @field_validator("office_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        OfficeHours.parse(value)
        return value


class TeamEntry(_Entry):
    id: Id
    name: str


HsaId = Annotated[str, Field(pattern=r"^SE[0-9]{10}-[0-9A-Za-z]{1,31}$")]
"""An HSA-id: SE, the organisation number, a dash and a serial (SE2321000024-1234)."""


class ClinicianEntry(_Entry):
    id: Id
    name: str
    unit: Id
    hsa_id: HsaId | None = None
    """The identity she signs in with at the region's identity provider."""
    role: Literal["nurse", "mobile_team", "admin"] = "nurse"
    team: Id | None = None
    """Her mobile team; a clinician with role mobile_team sees that team's patients."""


class DeviceEntry(_Entry):
    id: Id
    format: SourceFormat = SourceFormat.NATIVE
    expect_every: Duration = timedelta(days=1)
    """How often the device is expected to be heard from; silent longer is a notice."""


class PatientEntry(_Entry):
    id: Id
    unit: Id
    fast_vardkontakt: Id
    mobile_team: Id | None = None
    red_to_mobile_team: bool = False
    """Every red alert to the mobile team, also in office hours (needs a mobile team)."""
    groups: tuple[str, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()
    rules: tuple[Rule, ...] = ()

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [g for g in value if g not in GROUPS]
        if unknown:
            raise ValueError(f"unknown group {unknown[0]!r} (known: {', '.join(GROUPS)})")
        return value


class RosterFile(_Entry):
    units: tuple[UnitEntry, ...] = ()
    teams: tuple[TeamEntry, ...] = ()
    clinicians: tuple[ClinicianEntry, ...] = ()
    patients: tuple[PatientEntry, ...] = ()


def read_roster(path: Path) -> RosterFile:
    """A roster file parsed and checked; raises RosterError naming the problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RosterError(f"{path}: {exc}") from exc
    try:
        roster = RosterFile.model_validate(data or {})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"])
        raise RosterError(f"{path}: {where}: {error['msg']}") from exc
    check_references(roster)
    return roster


def check_references(roster: RosterFile) -> None:
    units = {u.id for u in roster.units}
    teams = {t.id for t in roster.teams}
    clinicians = {c.id for c in roster.clinicians}
    hsa_ids: set[str] = set()
    for c in roster.clinicians:
        if c.unit not in units:
            raise RosterError(f"clinician {c.id}: unit {c.unit!r} is not in units")
        if c.team is not None and c.team not in teams:
            raise RosterError(f"clinician {c.id}: team {c.team!r} is not in teams")
        if c.role == "mobile_team" and c.team is None:
            raise RosterError(f"clinician {c.id}: role mobile_team needs a team")
        if c.hsa_id is not None and c.hsa_id in hsa_ids:
            raise RosterError(f"clinician {c.id}: hsa_id {c.hsa_id!r} is listed twice")
        if c.hsa_id is not None:
            hsa_ids.add(c.hsa_id)
    seen_devices: set[str] = set()
    for p in roster.patients:
        if p.unit not in units:
            raise RosterError(f"patient {p.id}: unit {p.unit!r} is not in units")
        if p.fast_vardkontakt not in clinicians:
            raise RosterError(
                f"patient {p.id}: fast_vardkontakt {p.fast_vardkontakt!r} is not a clinician"
            )
        if p.mobile_team and p.mobile_team not in teams:
            raise RosterError(f"patient {p.id}: mobile_team {p.mobile_team!r} is not in teams")
        if p.red_to_mobile_team and not p.mobile_team:
            raise RosterError(f"patient {p.id}: red_to_mobile_team needs a mobile_team")
        for d in p.devices:
            if d.id in seen_devices or not valid_device_id(d.id):
                raise RosterError(f"patient {p.id}: device {d.id!r} is listed twice or invalid")
            seen_devices.add(d.id)


@dataclass(frozen=True, slots=True)
class LoadResult:
    changed_rows: int
    new_rule_versions: int


def load_roster(
    conn: Connection, roster: RosterFile, *, actor: str, reason: str, now: datetime
) -> LoadResult:
    """Upsert the roster in one transaction; unchanged rows and rules stay untouched."""
    changed = 0
    versions = 0
    with conn.transaction():

        def upsert(table: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
            nonlocal changed
            name = sql.Identifier(table)
            rest = [sql.Identifier(c) for c in columns[1:]]
            query = sql.SQL(
                "INSERT INTO {t} ({cols}) VALUES ({marks}) ON CONFLICT (id)"
                " DO UPDATE SET {updates} WHERE {differs}"
            ).format(
                t=name,
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                marks=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                updates=sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in rest
                ),
                differs=sql.SQL(" OR ").join(
                    sql.SQL("{t}.{c} IS DISTINCT FROM EXCLUDED.{c}").format(t=name, c=c)
                    for c in rest
                ),
            )
            changed += conn.execute(query, values).rowcount

        for u in roster.units:
            upsert("units", ("id", "name", "office_hours", "fallback_contact"),
                   (u.id, u.name, u.office_hours, u.fallback_contact))
        for t in roster.teams:
            upsert("teams", ("id", "name"), (t.id, t.name))
        if roster.clinicians:
            # the file lists the staff as it is now: whoever it leaves out has left (first,
            # so that her HSA-id is free for whoever the file gives it to)
            changed += conn.execute(
                "UPDATE clinicians SET removed_at = %s, hsa_id = NULL"
                " WHERE removed_at IS NULL AND NOT id = ANY(%s)",
                (now, [c.id for c in roster.clinicians]),
            ).rowcount
        for c in roster.clinicians:
            upsert("clinicians",
                   ("id", "name", "unit_id", "hsa_id", "role", "team_id", "removed_at"),
                   (c.id, c.name, c.unit, c.hsa_id, c.role, c.team, None))
        for p in roster.patients:
            upsert(
                "patients",
                ("id", "unit_id", "fast_vardkontakt", "mobile_team_id", "groups",
                 "red_to_mobile_team"),
                (p.id, p.unit, p.fast_vardkontakt, p.mobile_team, list(p.groups),
                 p.red_to_mobile_team),
            )
            for d in p.devices:
                upsert("devices", ("id", "patient_id", "format", "expect_every"),
                       (d.id, p.id, d.format.value, d.expect_every))
                # registration counts as hearing from it: silence is measured from here
                conn.execute("INSERT INTO device_status (device_id, last_seen_at)"
                             " VALUES (%s, %s) ON CONFLICT DO NOTHING", (d.id, now))
            saved = save_rules(conn, p.id, p.groups, p.rules, actor=actor, reason=reason,
                               now=now)
            versions += saved is not None
        if changed or versions:
            conn.execute("UPDATE roster_revision SET revision = revision + 1, loaded_at = %s",
                         (now,))
    return LoadResult(changed_rows=changed, new_rule_versions=versions)


@dataclass(frozen=True, slots=True)
class PatientRules:
    version: int
    rules: tuple[Rule, ...]
    effective_from: datetime


@dataclass(frozen=True)
class RosterSnapshot:
    """What a pipeline needs from the roster, read at one revision."""

    revision: int
    devices: dict[str, Device] = field(default_factory=dict)
    rules: dict[str, PatientRules] = field(default_factory=dict)
    teams: dict[str, CareTeam] = field(default_factory=dict)


def roster_revision(conn: Connection) -> int:
    row = conn.execute("SELECT revision FROM roster_revision").fetchone()
    return int(row[0]) if row else 0


def read_snapshot(conn: Connection, zone: ZoneInfo = STOCKHOLM) -> RosterSnapshot:
    """The roster as it is stored now; office hours in the time zone `zone`."""
    revision = roster_revision(conn)
    devices = {
        str(r[0]): Device(id=str(r[0]), patient_id=str(r[1]), format=SourceFormat(r[2]))
        for r in conn.execute("SELECT id, patient_id, format FROM devices")
    }
    rules = {
        str(r[0]): PatientRules(version=int(r[1]), rules=tuple(parse_rules(r[2])),
                                effective_from=r[3])
        for r in conn.execute(
            "SELECT DISTINCT ON (patient_id) patient_id, version, rules, effective_from"
            " FROM rule_versions ORDER BY patient_id, version DESC"
        )
    }
    teams = {
        str(r[0]): CareTeam(office_hours=OfficeHours.parse(str(r[1]), zone), has_mobile_team=r[2],
                            red_to_mobile_team=r[3])
        for r in conn.execute(
            "SELECT p.id, u.office_hours, p.mobile_team_id IS NOT NULL, p.red_to_mobile_team"
            " FROM patients p JOIN units u ON u.id = p.unit_id"
        )
    }
    return RosterSnapshot(revision=revision, devices=devices, rules=rules, teams=teams)

