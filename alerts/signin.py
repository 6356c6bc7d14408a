"""Sign-in, sign-out and the per-request principal, over HTTP.

Three credentials reach the API: the session cookie a browser gets at sign-in (through the
region's identity provider, or a one-time code), the issuer's own access tokens, and
service tokens. Each request is decided afresh from the roster (alerts/access.py); a
refusal is logged, and a session whose clinician has moved or left is ended.

The session cookie is HttpOnly, SameSite=Strict and (outside tests and the demo on
127.0.0.1) Secure with the `__Host-` prefix; it holds a random value whose hash is stored.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from hemmon.settings import Settings

from . import credentials as store
from .access import (
    Principal,
    Refusal,
    SessionScope,
    TokenError,
    decide_issuer,
    decide_service,
    decide_session,
    decide_sign_in,
    is_service_token,
    read_token,
)
from .audit import log_event
from .loginpage import login_page
from .oidc import OidcClient, OidcConfig, OidcError

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
_LOGIN_COOKIE = "hemmon-login"
_LOGIN_WINDOW = timedelta(minutes=10)
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How callers prove who they are; tests pass one, the service builds it from settings."""

    secret_key: str
    oidc: OidcConfig | None = None
    session_lifetime: timedelta = timedelta(minutes=120)
    cookie_secure: bool = True

    @property
    def cookie_name(self) -> str:
        # the __Host- prefix makes the browser refuse the cookie unless Secure, Path=/, no Domain
        return "__Host-hemmon-session" if self.cookie_secure else "hemmon-session"


def auth_from_settings(settings: Settings) -> AuthConfig:
    """The sign-in setup from HEMMON_* settings; SettingsError names a wrong one."""
    secure = settings.check_cookie_secure()
    found = settings.oidc()
    oidc = None
    if found is not None:
        issuer, client_id, client_secret = found
        oidc = OidcConfig(issuer=issuer, client_id=client_id, client_secret=client_secret,
                          redirect_uri=settings.inbox_url() + "/login/callback",
                          claim=settings.oidc_claim, audience=settings.oidc_audience,
                          scope=settings.oidc_scope)
    return AuthConfig(secret_key=settings.require_secret_key(), oidc=oidc,
                      session_lifetime=timedelta(minutes=settings.session_minutes),
                      cookie_secure=secure)


class AuthFailure(Exception):
    """A request without a valid credential (401) or one the roster refuses (403)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class Authenticator:
    """Decides each request's principal from its credential and the roster as it is now."""

    def __init__(self, pool: ConnectionPool, config: AuthConfig, clock: Clock) -> None:
        self.pool, self.config, self.clock = pool, config, clock
        self.oidc = OidcClient(config.oidc) if config.oidc else None

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            if is_service_token(token):
                return self._service(token)
            return self._issuer(token)
        cookie = request.cookies.get(self.config.cookie_name)
        if cookie:
            if request.method in _UNSAFE and not _same_origin(request):
                raise AuthFailure(403, "forbidden", "the request comes from another site")
            return self._session(cookie)
        raise AuthFailure(401, "unauthorized", "sign in, or send a bearer token")

    def _service(self, token: str) -> Principal:
        now = self.clock()
        try:
            claims = read_token(self.config.secret_key, token)
        except TokenError as exc:
            raise AuthFailure(401, "unauthorized", str(exc)) from exc
        with self.pool.connection() as conn:
            if not store.token_active(conn, claims.token_id, now):
                raise AuthFailure(401, "unauthorized", "token is revoked or unknown")
            clinician = store.clinician_by_id(conn, claims.user)
            team = store.team_known(conn, claims.team_id)
        return self._decided(decide_service(claims, clinician, team), claims.role, "token")

    def _issuer(self, token: str) -> Principal:
        if self.oidc is None:
            raise AuthFailure(401, "unauthorized", "token is not valid")
        try:
            hsa_id = self.oidc.identity_of_access_token(token, self.clock())
        except OidcError as exc:
            raise AuthFailure(401, "unauthorized", str(exc)) from exc
        with self.pool.connection() as conn:
            clinician = store.clinician_by_hsa_id(conn, hsa_id)
        return self._decided(decide_issuer(hsa_id, clinician), "unknown", "issuer_token")

    def _session(self, cookie: str) -> Principal:
        now = self.clock()
        with self.pool.connection() as conn:
            scope = store.find_session(conn, cookie, now)
            if scope is None:
                raise AuthFailure(401, "unauthorized", "sessionen har gått ut; logga in igen")
            decision = decide_session(scope, store.clinician_by_id(conn, scope.clinician_id))
            if isinstance(decision, Refusal) and decision.end_session:
                ended = store.end_sessions_of(conn, scope.clinician_id, now, decision.reason)
                log.info("roster change ended %d session(s)", ended)
        return self._decided(decision, scope.role, "session")

    def _decided(self, decision: Principal | Refusal, role: str, via: str) -> Principal:
        if isinstance(decision, Principal):
            return decision
        log_event(self.pool, decision.user, role, "access_refused", None, allowed=False,
                  at=self.clock(), detail=f"{via}: {decision.reason}")
        raise AuthFailure(403, "forbidden", f"{decision.user} {decision.reason}")


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host")


def add_sign_in_routes(app: FastAPI, auth: Authenticator) -> None:
    """/login (page, code form, the identity provider's callback) and /logout."""
    config, pool, clock = auth.config, auth.pool, auth.clock
    name = config.cookie_name

    def page(message: str | None = None, *, status: int = 200) -> HTMLResponse:
        return HTMLResponse(login_page(oidc=auth.oidc is not None, message=message),
                            status_code=status)

    def signed_in(scope_or_refusal: SessionScope | Refusal, via: str) -> Response:
        now = clock()
        if isinstance(scope_or_refusal, Refusal):
            log_event(pool, scope_or_refusal.user, "unknown", "sign_in", None, allowed=False,
                      at=now, detail=f"{via}: {scope_or_refusal.reason}")
            return page(f"Inloggningen nekades: {scope_or_refusal.reason}. Kontakta din"
                        " enhetschef eller hemmons systemförvaltare om du ska ha tillgång.",
                        status=403)
        with pool.connection() as conn:
            value = store.start_session(conn, scope_or_refusal, via=via, now=now,
                                        lifetime=config.session_lifetime)
        log_event(pool, scope_or_refusal.clinician_id, scope_or_refusal.role, "sign_in", None,
                  allowed=True, at=now, detail=f"via {via}")
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(name, value, max_age=int(config.session_lifetime.total_seconds()),
                          path="/", secure=config.cookie_secure, httponly=True,
                          samesite="strict")
        answer.delete_cookie(_LOGIN_COOKIE, path="/login")
        return answer

    @app.get("/login.css")
    def style() -> Response:
        text = (resources.files("hemmon.alerts") / "web" / "login.css").read_text("utf-8")
        return Response(text, media_type="text/css; charset=utf-8")

    @app.get("/login", response_class=HTMLResponse)
    def login(ut: str | None = None, slut: str | None = None) -> HTMLResponse:
        if ut is not None:
            return page("Du är utloggad.")
        return page("Din inloggning har gått ut eller avslutats. Logga in igen."
                    if slut is not None else None)

    @app.get("/login/start")
    def start() -> Response:
        if auth.oidc is None:
            return page("Inloggning via regionen är inte inställd här.", status=404)
        try:
            begun = auth.oidc.begin()
        except OidcError as exc:
            log.warning("identity provider unavailable: %s", exc)
            return page("Regionens inloggning svarar inte just nu. Försök igen om en stund.",
                        status=503)
        with pool.connection() as conn:
            store.save_login_request(conn, begun.state, begun.nonce, begun.code_verifier,
                                     clock())
        answer = RedirectResponse(begun.url, status_code=303)
        # ties the callback to this browser: a code sent by someone else is refused
        answer.set_cookie(_LOGIN_COOKIE, begun.state, max_age=int(_LOGIN_WINDOW.total_seconds()),
                          path="/login", secure=config.cookie_secure, httponly=True,
                          samesite="lax")
        return answer

    @app.get("/login/callback")
    def callback(request: Request, code: str | None = None, state: str | None = None,
                 error: str | None = None) -> Response:
        if auth.oidc is None:
            return page("Inloggning via regionen är inte inställd här.", status=404)
        if error or not code or not state or request.cookies.get(_LOGIN_COOKIE) != state:
            return page("Inloggningen avbröts eller kom från en annan webbläsare."
                        " Försök igen.", status=400)
        with pool.connection() as conn:
            kept = store.take_login_request(conn, state, clock() - _LOGIN_WINDOW)
        if kept is None:
            return page("Inloggningen tog för lång tid. Försök igen.", status=400)
        try:
            hsa_id = auth.oidc.finish(code, nonce=kept[0], code_verifier=kept[1], now=clock())
        except OidcError as exc:
            log.warning("sign-in through the identity provider failed: %s", exc)
            return page("Inloggningen kunde inte bekräftas. Försök igen.", status=400)
        with pool.connection() as conn:
            clinician = store.clinician_by_hsa_id(conn, hsa_id)
        return signed_in(decide_sign_in(hsa_id, clinician), "oidc")

    @app.post("/login/code")
    async def with_code(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        code = (form.get("code") or [""])[0][:40]

        def sign_in() -> Response:
            with pool.connection() as conn:
                clinician_id = store.use_login_code(conn, code, clock())
                clinician = store.clinician_by_id(conn, clinician_id) if clinician_id else None
            if clinician_id is None:
                log_event(pool, "okänd", "unknown", "sign_in", None, allowed=False,
                          at=clock(), detail="code: koden gäller inte")
                return page("Koden gäller inte (fel, redan använd eller för gammal).",
                            status=401)
            return signed_in(decide_sign_in(clinician_id, clinician), "code")

        return await run_in_threadpool(sign_in)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        value = request.cookies.get(name)
        if value and _same_origin(request):
            now = clock()
            with pool.connection() as conn:
                scope = store.find_session(conn, value, now)
                store.end_session(conn, value, now, "utloggad")
            if scope is not None:
                log_event(pool, scope.clinician_id, scope.role, "sign_out", None,
                          allowed=True, at=now)
        answer = RedirectResponse("/login?ut=1", status_code=303)
        answer.delete_cookie(name, path="/", secure=config.cookie_secure, httponly=True,
                             samesite="strict")
        return answer


def _csp(page: str) -> str:
    """No inline script at all; the page's inline <style> blocks only by their hashes."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in re.findall(r"<style>(.*?)</style>", page, flags=re.DOTALL))
    return ("default-src 'self'; script-src 'self'; style-src 'self' " + hashes + ";"
            " img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none';"
            " form-action 'self'; frame-ancestors 'none'")


def add_security_headers(app: FastAPI, *, https: bool) -> None:
    """The headers a security review expects; API answers with patient data are not cached."""
    policy = _csp((resources.files("hemmon.alerts") / "web" / "inbox.html").read_text("utf-8"))

    @app.middleware("http")
    async def headers(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        path = request.url.path
        if path.startswith(("/api/", "/fhir/", "/login", "/logout")):
            response.headers["Cache-Control"] = "no-store"
        if https:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response
