"""Stored credentials: service tokens, sessions, one-time sign-in codes, sign-ins under way,
and the roster lookups that decide a request. Loads and writes; decides nothing.

Secrets are never stored: a session and a code are kept as the SHA-256 of their value.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg

from .access import (
    DEFAULT_TOKEN_LIFETIME,
    Principal,
    Role,
    RosterClinician,
    SessionScope,
    create_token,
    new_token_id,
)

Connection = psycopg.Connection[Any]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _clinician(row: tuple[Any, ...] | None) -> RosterClinician | None:
    if row is None:
        return None
    return RosterClinician(id=str(row[0]), role=cast(Role, row[1]), unit_id=str(row[2]),
                           team_id=row[3])


_CLINICIAN = "SELECT id, role, unit_id, team_id FROM clinicians WHERE removed_at IS NULL"


def clinician_by_id(conn: Connection, clinician_id: str) -> RosterClinician | None:
    return _clinician(conn.execute(_CLINICIAN + " AND id = %s", (clinician_id,)).fetchone())


def clinician_by_hsa_id(conn: Connection, hsa_id: str) -> RosterClinician | None:
    return _clinician(conn.execute(_CLINICIAN + " AND hsa_id = %s", (hsa_id,)).fetchone())


def team_known(conn: Connection, team_id: str | None) -> bool:
    return team_id is not None and conn.execute(
        "SELECT 1 FROM teams WHERE id = %s", (team_id,)).fetchone() is not None


def issue_token(conn: Connection, secret: str, principal: Principal, *, now: datetime,
                lifetime: timedelta = DEFAULT_TOKEN_LIFETIME) -> tuple[str, str]:
    """(token id, token): the id is stored so the token can be checked and revoked."""
    token_id = new_token_id()
    conn.execute(
        "INSERT INTO service_tokens (id, user_id, role, team_id, created_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (token_id, principal.user, principal.role, principal.team_id, now, now + lifetime),
    )
    return token_id, create_token(secret, principal, token_id=token_id, lifetime=lifetime,
                                  now=now)


def token_active(conn: Connection, token_id: str, now: datetime) -> bool:
    return conn.execute(
        "SELECT 1 FROM service_tokens WHERE id = %s AND revoked_at IS NULL AND expires_at > %s",
        (token_id, now),
    ).fetchone() is not None


def revoke_token(conn: Connection, token_id: str, now: datetime) -> bool:
    """False when there is no such token (or it was revoked already)."""
    return conn.execute(
        "UPDATE service_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
        (now, token_id),
    ).rowcount == 1


def start_session(conn: Connection, scope: SessionScope, *, via: str, now: datetime,
                  lifetime: timedelta) -> str:
    """A new session; returns the cookie value."""
    value = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (id_hash, clinician_id, role, unit_id, team_id, via,"
        " signed_in_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (_digest(value), scope.clinician_id, scope.role, scope.unit_id, scope.team_id, via,
         now, now + lifetime),
    )
    return value


def find_session(conn: Connection, value: str, now: datetime) -> SessionScope | None:
    """The scope of a live session; None for an unknown, ended or expired one."""
    row = conn.execute(
        "SELECT clinician_id, role, unit_id, team_id FROM sessions"
        " WHERE id_hash = %s AND ended_at IS NULL AND expires_at > %s",
        (_digest(value), now),
    ).fetchone()
    if row is None:
        return None
    return SessionScope(str(row[0]), cast(Role, row[1]), str(row[2]), row[3])


def end_session(conn: Connection, value: str, now: datetime, reason: str) -> None:
    conn.execute("UPDATE sessions SET ended_at = %s, end_reason = %s"
                 " WHERE id_hash = %s AND ended_at IS NULL", (now, reason, _digest(value)))


def end_sessions_of(conn: Connection, clinician_id: str, now: datetime, reason: str) -> int:
    return conn.execute(
        "UPDATE sessions SET ended_at = %s, end_reason = %s"
        " WHERE clinician_id = %s AND ended_at IS NULL", (now, reason, clinician_id),
    ).rowcount


def create_login_code(conn: Connection, clinician_id: str, *, now: datetime,
                      lifetime: timedelta = timedelta(minutes=10)) -> str:
    """A one-time code to type on the sign-in page (no token in a URL)."""
    raw = secrets.token_hex(5).upper()
    code = f"{raw[:5]}-{raw[5:]}"
    conn.execute(
        "INSERT INTO login_codes (code_hash, clinician_id, created_at, expires_at)"
        " VALUES (%s, %s, %s, %s)", (_digest(code), clinician_id, now, now + lifetime),
    )
    return code


def use_login_code(conn: Connection, code: str, now: datetime) -> str | None:
    """The clinician a valid, unused code is for; the code is spent either way."""
    normalised = code.strip().upper()
    row = conn.execute(
        "UPDATE login_codes SET used_at = %s WHERE code_hash = %s AND used_at IS NULL"
        " AND expires_at > %s RETURNING clinician_id", (now, _digest(normalised), now),
    ).fetchone()
    return str(row[0]) if row else None


def save_login_request(conn: Connection, state: str, nonce: str, code_verifier: str,
                       now: datetime) -> None:
    conn.execute(
        "INSERT INTO login_requests (state, nonce, code_verifier, created_at)"
        " VALUES (%s, %s, %s, %s)", (state, nonce, code_verifier, now),
    )
    # sign-ins abandoned at the identity provider are not kept for long
    conn.execute("DELETE FROM login_requests WHERE created_at < %s",
                 (now - timedelta(hours=1),))


def take_login_request(conn: Connection, state: str,
                       not_before: datetime) -> tuple[str, str] | None:
    """(nonce, code_verifier) of a sign-in started after `not_before`; usable once."""
    row = conn.execute(
        "DELETE FROM login_requests WHERE state = %s RETURNING nonce, code_verifier,"
        " created_at >= %s", (state, not_before),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row and row[2] else None
