"""The access log the Swedish patient data act (patientdatalagen) asks for.

Every read of a patient's data through the API or the inbox page, and every refused
attempt, is written with who, what and when; so are sign-ins, sign-outs, refused sign-ins
and sessions ended because the roster changed. It is written on its own connection so that
a refused request, whose own transaction rolls back, is still logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .access import Principal


def log_access(pool: ConnectionPool, principal: Principal, action: str,
               patient_id: str | None, *, allowed: bool, at: datetime,
               detail: str | None = None) -> None:
    log_event(pool, principal.user, principal.role, action, patient_id, allowed=allowed,
              at=at, detail=detail)


def log_event(pool: ConnectionPool, user: str, role: str, action: str,
              patient_id: str | None, *, allowed: bool, at: datetime,
              detail: str | None = None) -> None:
    """An entry for a caller who may not have a principal (yet): sign-in, refusal."""
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO access_log (at, user_id, role, action, patient_id, allowed, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (at, user, role, action, patient_id, allowed, detail),
        )


def query_access(conn: psycopg.Connection[Any], *, patient: str | None, user: str | None,
                 limit: int = 500) -> list[dict[str, Any]]:
    """The newest entries, for one patient or one user if asked."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT at, user_id, role, action, patient_id, allowed, detail FROM access_log"
            " WHERE (%s::text IS NULL OR patient_id = %s) AND (%s::text IS NULL OR user_id = %s)"
            " ORDER BY at DESC, id DESC LIMIT %s",
            (patient, patient, user, user, limit),
        )
        return cur.fetchall()
