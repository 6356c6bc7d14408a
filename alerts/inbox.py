"""The inbox HTTP service (contract.md): JSON API, the Swedish web page, health and metrics.

Endpoints translate HTTP into calls on the stores; they hold no clinical logic. Errors are
JSON `{"error": code, "detail": text}` with the matching status.
"""


from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hemmon import metrics
from hemmon.ingest import storage as readings_store
from hemmon.ingest.model import MeasurementType
from hemmon.preview import preview
from hemmon.rules import storage as rules_store
from hemmon.rules.model import Rule
from hemmon.rules.templates import parse_rules

from . import actions, storage, worklist_service
from .access import Principal
from .audit import log_access, query_access
from .decide import Acknowledge, Action, Resolve, Snooze
from .fhir_api import fhir_router
from .fhir_export import FhirSystems
from .lifecycle import Outcome, TransitionError
from .routing import STOCKHOLM
from .signin import AuthConfig, Authenticator, AuthFailure, add_security_headers, add_sign_in_routes

Clock = Callable[[], datetime]
Replayer = Callable[[int], dict[str, Any]]


class ApiError(Exception):
    """An error with an HTTP status and a stable code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class AcknowledgeBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class ResolveBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000)
    outcome: Outcome


class RulesBody(BaseModel):
    rules: list[Rule]
    """The patient's personal rules; they replace template rules of the same key."""
    reason: str = Field(min_length=3, max_length=500)


class PreviewBody(BaseModel):
    rules: list[Rule]
    """Proposed personal rules (as PUT .../rules takes them)."""
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None


PREVIEW_PERIOD = timedelta(days=30)
class NoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class AssignBody(BaseModel):
    assignee: str = Field(min_length=1, max_length=128)
    """A clinician of the patient's unit, or "mobile_team"."""


class SnoozeBody(BaseModel):
    minutes: int = Field(ge=1, le=7 * 24 * 60)
    note: str | None = Field(default=None, max_length=2000)


def create_app(
    pool: ConnectionPool,
    *,
    secret_key: str,
    clock: Clock,
    ready: Callable[[], bool] = lambda: True,
    replay: Replayer | None = None,
    auth: AuthConfig | None = None,
    zone: ZoneInfo = STOCKHOLM,
    fhir_systems: FhirSystems | None = None,
) -> FastAPI:
    """The inbox service over a connection pool; `ready` adds the pipeline's own state."""
    app = FastAPI(title="hemmon inbox", version="1", docs_url="/api/docs", redoc_url=None)
    authenticator = Authenticator(pool, auth or AuthConfig(secret_key=secret_key), clock)
    add_security_headers(app, https=authenticator.config.cookie_secure)
    add_sign_in_routes(app, authenticator)

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": "invalid_request", "detail": f"{where}: {first.get('msg', 'invalid')}"},
            status_code=422,
        )

    def db() -> Iterator[psycopg.Connection[Any]]:
        with pool.connection() as conn:
            yield conn

    def principal(request: Request) -> Principal:
        # decided per request from the roster as it is now (alerts/access.py)
        try:
            return authenticator.principal(request)
        except AuthFailure as exc:
            raise ApiError(exc.status, exc.code, exc.detail) from exc

    Db = Annotated[psycopg.Connection[Any], Depends(db)]
    Caller = Annotated[Principal, Depends(principal)]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            with pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            database = True
        except Exception:
            database = False
        ok = database and ready()
        return JSONResponse({"status": "ready" if ok else "not_ready", "database": database},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        try:
            with pool.connection(timeout=2) as conn:
                metrics.set_alert_gauges(storage.open_alert_stats(conn, clock()))
                metrics.NOTIFICATIONS_PENDING.set(storage.pending_notifications(conn))
                metrics.PATIENTS.set(storage.patient_count(conn))
        except Exception:  # metrics must answer even when the database does not
            pass
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (resources.files("hemmon.alerts") / "web" / "inbox.html").read_text("utf-8")

    @app.get("/inbox.js")
    def script() -> Response:
        # the page's script is a file of its own, so that a CSP can forbid inline script
        text = (resources.files("hemmon.alerts") / "web" / "inbox.js").read_text("utf-8")
        return Response(text, media_type="text/javascript; charset=utf-8")

    @app.get("/api/v1/me")
    def me(caller: Caller) -> dict[str, Any]:
        return {"user": caller.user, "role": caller.role, "unit": caller.unit_id,
                "team": caller.team_id}

    @app.get("/api/v1/alerts")
    def alerts(
        caller: Caller, conn: Db,
        status: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved)$")] = None,
        route: Annotated[str | None, Query(pattern="^(fast_vardkontakt|mobile_team)$")] = None,
        patient: str | None = None,
        assignee: Annotated[str | None, Query(pattern="^me$")] = None,
    ) -> dict[str, Any]:
        shown = worklist_service.worklist(conn, caller, clock(), status=status, route=route,
                                          patient=patient, mine=assignee == "me")
        rows = shown.body["alerts"]
        patients = sorted({row["patient_id"] for row in rows})
        audit(caller, "list_alerts", patient if patient else None,
              detail=f"{len(rows)} alerts, patients: {', '.join(patients)[:2000]}")
        log_identities(caller, shown.identities, "list_alerts")
        return shown.body

    @app.get("/api/v1/alerts/{alert_id}")
    def alert(alert_id: int, caller: Caller, conn: Db) -> dict[str, Any]:
        try:
            shown = worklist_service.alert_detail(conn, caller, alert_id, clock())
        except storage.NotFound as exc:
            audit(caller, "read_alert", None, allowed=False, detail=f"alert {alert_id}")
            raise ApiError(404, "not_found", f"no alert {alert_id} for you") from exc
        audit(caller, "read_alert", shown.body["patient_id"], detail=f"alert {alert_id}")
        log_identities(caller, shown.identities, f"alert {alert_id}")
        return shown.body

    def act(alert_id: int, action: Action, caller: Principal,
            conn: psycopg.Connection[Any]) -> dict[str, Any]:
        try:
            updated = actions.act(conn, caller, alert_id, action, clock())
        except storage.NotFound as exc:
            raise ApiError(404, "not_found", f"no alert {alert_id} for you") from exc
        except TransitionError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        if isinstance(action, Acknowledge):
            metrics.ACKNOWLEDGE_SECONDS.labels(updated.level.value, updated.route.value).observe(
                (updated.updated_at - updated.opened_at).total_seconds()
            )
        return updated.model_dump(mode="json")

    @app.post("/api/v1/alerts/{alert_id}/acknowledge")
    def acknowledge(alert_id: int, caller: Caller, conn: Db,
                    body: AcknowledgeBody | None = None) -> dict[str, Any]:
        return act(alert_id, Acknowledge(note=body.note if body else None), caller, conn)

    @app.post("/api/v1/alerts/{alert_id}/resolve")
    def resolve(alert_id: int, body: ResolveBody, caller: Caller, conn: Db) -> dict[str, Any]:
        return act(alert_id, Resolve(outcome=body.outcome, note=body.note), caller, conn)

    @app.post("/api/v1/alerts/{alert_id}/snooze")
    def snooze(alert_id: int, body: SnoozeBody, caller: Caller, conn: Db) -> dict[str, Any]:
        until = clock() + timedelta(minutes=body.minutes)
        return act(alert_id, Snooze(until=until, note=body.note), caller, conn)

    @app.get("/api/v1/patients/{patient_id}/readings")
    def readings(
        patient_id: str, caller: Caller, conn: Db, type: str | None = None,
        since: datetime | None = None, until: datetime | None = None,
    ) -> dict[str, Any]:
        check_patient(conn, caller, patient_id, "read_readings")
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise ApiError(422, "invalid_request", f"{name}: give a time with an offset")
        return {"patient_id": patient_id,
                "readings": readings_store.list_readings(conn, patient_id, type, since, until)}

    def audit(caller: Principal, action: str, patient_id: str | None, *, allowed: bool = True,
              detail: str | None = None) -> None:
        log_access(pool, caller, action, patient_id, allowed=allowed, at=clock(),
                   detail=detail)

    def check_patient(conn: psycopg.Connection[Any], caller: Principal, patient_id: str,
                      action: str) -> None:
        """404 for no such patient; 403, logged, for a patient outside the caller's scope;
        otherwise the read is logged."""
        allowed = storage.may_see_patient(conn, caller, patient_id)
        if allowed is None:
            raise ApiError(404, "not_found", f"no patient {patient_id}")
        audit(caller, action, patient_id, allowed=allowed)
        if not allowed:
            raise ApiError(403, "forbidden", "this patient is not in your unit or team")

    def check_rules_editor(conn: psycopg.Connection[Any], caller: Principal, patient_id: str,
                           action: str) -> None:
        """`check_patient`, and only the health centre (or an admin) changes rules."""
        check_patient(conn, caller, patient_id, action)
        if caller.role not in ("nurse", "admin"):
            raise ApiError(403, "forbidden", "only the health centre changes a patient's rules")

    @app.get("/api/v1/patients/{patient_id}/rules")
    def patient_rules(patient_id: str, caller: Caller, conn: Db) -> dict[str, Any]:
        check_patient(conn, caller, patient_id, "read_rules")
        versions = rules_store.rule_history(conn, patient_id)
        return {"patient_id": patient_id, "groups": rules_store.patient_groups(conn, patient_id),
                "current": versions[0] if versions else None, "versions": versions}

    @app.put("/api/v1/patients/{patient_id}/rules")
    def change_rules(patient_id: str, body: RulesBody, caller: Caller,
                     conn: Db) -> dict[str, Any]:
        check_rules_editor(conn, caller, patient_id, "change_rules")
        return actions.change_rules(conn, caller, patient_id, body.rules, body.reason, clock())

    @app.post("/api/v1/patients/{patient_id}/rules/preview")
    def preview_rules(patient_id: str, body: PreviewBody, caller: Caller,
                      conn: Db) -> dict[str, Any]:
        check_rules_editor(conn, caller, patient_id, "preview_rules")
        end = body.to or clock()
        start = body.from_ or end - PREVIEW_PERIOD
        if start.tzinfo is None or end.tzinfo is None:
            raise ApiError(422, "invalid_request", "from/to: give a time with an offset")
        if not timedelta(0) < end - start <= timedelta(days=366):
            raise ApiError(422, "invalid_request", "from/to: a period of at most a year")
        versions = rules_store.rule_history(conn, patient_id)
        current = parse_rules(versions[0]["personal"]) if versions else []
        return preview(conn, patient_id, body.rules, current, start, end, zone)

    @app.get("/api/v1/patients/{patient_id}/trend")
    def patient_trend(
        patient_id: str, caller: Caller, conn: Db,
        type: MeasurementType,
        bucket: Annotated[str, Query(pattern="^(hour|day)$")] = "day",
        since: datetime | None = None, until: datetime | None = None,
    ) -> dict[str, Any]:
        check_patient(conn, caller, patient_id, "read_trend")
        end = until or clock()
        start = since or end - timedelta(days=90)
        if start.tzinfo is None or end.tzinfo is None:
            raise ApiError(422, "invalid_request", "since/until: give a time with an offset")
        return {"patient_id": patient_id, "type": type, "bucket": bucket,
                "points": readings_store.trend(conn, patient_id, type.value, bucket, start,
                                               end)}

    def admin_only(caller: Principal) -> None:
        if caller.role != "admin":
            raise ApiError(403, "forbidden", "this is for administrators")

    @app.get("/api/v1/access-log")
    def access_log(caller: Caller, conn: Db, patient: str | None = None,
                   user: str | None = None) -> dict[str, Any]:
        if caller.role != "admin":
            raise ApiError(403, "forbidden", "the access log is for administrators")
        return {"entries": query_access(conn, patient=patient, user=user)}

    @app.get("/api/v1/notifications")
    def notifications(caller: Caller, conn: Db) -> dict[str, Any]:
        admin_only(caller)
        return {"notifications": storage.list_notifications(conn)}

    @app.get("/api/v1/rejections")
    def rejections(caller: Caller, conn: Db) -> dict[str, Any]:
        admin_only(caller)
        return {"rejections": readings_store.list_rejections(conn)}

    @app.post("/api/v1/rejections/{rejection_id}/replay")
    def replay_rejection(rejection_id: int, caller: Caller) -> dict[str, Any]:
        admin_only(caller)
        if replay is None:
            raise ApiError(409, "conflict", "this service does not replay messages")
        try:
            return replay(rejection_id)
        except LookupError as exc:
            raise ApiError(404, "not_found", f"no rejection {rejection_id}") from exc

    def log_identities(caller: Principal, patients: list[str], where: str) -> None:
        """Every answer that shows a name or personnummer, one entry per patient."""
        for patient_id in patients:
            audit(caller, "view_identity", patient_id, detail=where)

    @app.get("/api/v1/patients/{patient_id}")
    def patient_card(patient_id: str, caller: Caller, conn: Db) -> dict[str, Any]:
        check_patient(conn, caller, patient_id, "read_patient")
        shown = worklist_service.patient_card(conn, caller, patient_id)
        log_identities(caller, shown.identities, "patient card")
        return shown.body

    @app.get("/api/v1/patients/{patient_id}/feedback")
    def patient_feedback(patient_id: str, caller: Caller, conn: Db,
                         days: Annotated[int, Query(ge=1, le=365)] = 14) -> dict[str, Any]:
        check_patient(conn, caller, patient_id, "read_feedback")
        return worklist_service.feedback_history(conn, patient_id,
                                                 clock() - timedelta(days=days))

    @app.post("/api/v1/alerts/{alert_id}/notes")
    def note(alert_id: int, body: NoteBody, caller: Caller, conn: Db) -> dict[str, Any]:
        try:
            worklist_service.add_note(conn, caller, alert_id, body.text, clock())
        except storage.NotFound as exc:
            raise ApiError(404, "not_found", f"no alert {alert_id} for you") from exc
        return alert(alert_id, caller, conn)

    @app.post("/api/v1/alerts/{alert_id}/assign")
    def assign(alert_id: int, body: AssignBody, caller: Caller, conn: Db) -> dict[str, Any]:
        try:
            worklist_service.assign(conn, caller, alert_id, body.assignee, clock())
        except storage.NotFound as exc:
            raise ApiError(404, "not_found", f"no alert {alert_id} for you") from exc
        except worklist_service.Refused as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        return alert(alert_id, caller, conn)


    app.include_router(fhir_router(principal, db, check_patient, fhir_systems or FhirSystems()))
    return app
