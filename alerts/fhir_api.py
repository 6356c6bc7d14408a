"""FHIR R4 search over HTTP: `GET /fhir/r4/Observation` and `GET /fhir/r4/Flag`.

The routes take the inbox's own dependencies (who is calling, a database connection, the
patient check that answers 403 and writes the access log), so the rules of who may see
whom are the inbox's, in one place. Parameters follow FHIR search: `patient` as `p-0001`
or `Patient/p-0001`; `date` with the prefixes eq, ge, gt, le, lt (repeatable; a date
without a time is that UTC day); `code` as `[system|]code`, comma-separated.
"""

# no `from __future__ import annotations`: FastAPI must see the local dependency types
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from . import fhir_export as fhir
from . import fhir_store
from .access import Principal

Connection = psycopg.Connection[Any]
PatientCheck = Callable[[Connection, Principal, str, str], None]
FHIR_JSON = "application/fhir+json"
_STATUSES = {"active": ["open", "acknowledged"], "inactive": ["resolved"]}


def _invalid(name: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", name), "msg": message}])


def _patient(value: str) -> str:
    return value.removeprefix("Patient/")


def _bounds(value: str) -> tuple[datetime, datetime]:
    """The instants a date parameter's value covers, [start, end)."""
    if len(value) == 10:
        day = date.fromisoformat(value)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        raise ValueError("a time needs an offset")
    return instant, instant + timedelta(seconds=1)


def date_range(values: list[str]) -> tuple[datetime | None, datetime | None]:
    """`date` parameters as one range [since, until); raises ValueError."""
    since: datetime | None = None
    until: datetime | None = None
    for value in values:
        prefix = value[:2] if value[:2] in ("eq", "ge", "gt", "le", "lt") else "eq"
        start, end = _bounds(value.removeprefix(prefix))
        low = {"eq": start, "ge": start, "gt": end}.get(prefix)
        high = {"eq": end, "le": end, "lt": start}.get(prefix)
        if low is not None:
            since = low if since is None else max(since, low)
        if high is not None:
            until = high if until is None else min(until, high)
    return since, until


def fhir_router(principal: Callable[..., Principal], db: Callable[..., Iterator[Connection]],
                check_patient: PatientCheck, systems: fhir.FhirSystems) -> APIRouter:
    """The FHIR search routes, on the inbox's caller, connection and patient check."""
    router = APIRouter(prefix="/fhir/r4")
    Caller = Annotated[Principal, Depends(principal)]
    Db = Annotated[Connection, Depends(db)]

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/fhir/r4"

    @router.get("/Observation")
    def observations(
        request: Request, caller: Caller, conn: Db, patient: str,
        date: Annotated[list[str] | None, Query()] = None,
        code: Annotated[list[str] | None, Query()] = None,
    ) -> JSONResponse:
        patient_id = _patient(patient)
        try:
            since, until = date_range(date or [])
        except ValueError as exc:
            raise _invalid("date", f"not a FHIR date: {exc}") from exc
        types = (fhir.types_for_codes(t for v in code for t in v.split(","))
                 if code else None)
        check_patient(conn, caller, patient_id, "fhir_observations")
        found = ([] if types is not None and not types else
                 fhir_store.readings(conn, patient_id, types, since, until))
        numbers = fhir_store.personnummer(conn, {patient_id})
        bundle = fhir.searchset(base(request), str(request.url),
                                fhir.observations(found, systems, numbers))
        return JSONResponse(bundle, media_type=FHIR_JSON)

    @router.get("/Flag")
    def flags(
        request: Request, caller: Caller, conn: Db, patient: str,
        status: Annotated[str | None, Query(pattern="^(active|inactive)$")] = None,
    ) -> JSONResponse:
        patient_id = _patient(patient)
        check_patient(conn, caller, patient_id, "fhir_flags")
        statuses = _STATUSES[status] if status else [s for v in _STATUSES.values() for s in v]
        found = fhir_store.alerts(conn, patient_id, statuses)
        history = fhir_store.events(conn, [a.id for a in found], fhir.JOURNAL_ACTIONS)
        number = fhir_store.personnummer(conn, {patient_id}).get(patient_id)
        told = [fhir.communication(event, alert, systems, number)
                for alert in found for event in history[alert.id]]
        bundle = fhir.searchset(base(request), str(request.url),
                                [fhir.flag(alert, systems, number) for alert in found], told)
        return JSONResponse(bundle, media_type=FHIR_JSON)

    return router
