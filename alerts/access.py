"""Who is asking, and what the roster lets her see now.

A request carries a credential: a browser session (cookie), an access token from the
region's identity provider, or a service token from `hemmon token create`. None of them
decides what the caller sees: `decide` takes the roster as it is at the request and gives
the principal, or a refusal. A clinician moved to another unit or removed from the roster
loses her former patients at once, whatever her token said when it was issued.

- nurse: a roster clinician; sees the patients of her unit.
- mobile_team: sees the patients enrolled with her team (or the token's `--team`).
- admin: sees everything.

Service tokens are HMAC-signed JWTs (PyJWT) with an id (`jti`); the id is stored, so a
token can be revoked, and a token whose id is not stored is refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import jwt

Role = Literal["nurse", "mobile_team", "admin"]
ROLES: tuple[Role, ...] = ("nurse", "mobile_team", "admin")
DEFAULT_TOKEN_LIFETIME = timedelta(hours=12)
_ALGORITHM = "HS256"
_AUDIENCE = "hemmon-inbox"


class TokenError(Exception):
    """A credential that is missing, forged, expired, revoked or not for hemmon (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and the scope that follows from the role."""

    user: str
    role: Role
    unit_id: str | None = None
    team_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceClaims:
    """What a valid service token says; checked against the stored token and the roster."""

    token_id: str
    user: str
    role: Role
    team_id: str | None


@dataclass(frozen=True, slots=True)
class RosterClinician:
    """A clinician as the roster lists her now."""

    id: str
    role: Role
    unit_id: str
    team_id: str | None

    def principal(self) -> Principal:
        return Principal(user=self.id, role=self.role, unit_id=self.unit_id,
                         team_id=self.team_id)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A caller who proved who she is but whom the roster no longer lets in (HTTP 403)."""

    user: str
    reason: str
    """Swedish, for the clinician and the access log."""
    end_session: bool = False


def new_token_id() -> str:
    return secrets.token_urlsafe(12)


def create_token(
    secret: str, principal: Principal, *, token_id: str | None = None,
    lifetime: timedelta = DEFAULT_TOKEN_LIFETIME, now: datetime | None = None,
) -> str:
    """A signed service token; only valid once its id is stored (`credentials.issue_token`)."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": principal.user,
        "role": principal.role,
        "team": principal.team_id,
        "jti": token_id or new_token_id(),
        "aud": _AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def is_service_token(token: str) -> bool:
    """True for a token that claims to be ours (HS256); says nothing about its validity."""
    try:
        return jwt.get_unverified_header(token).get("alg") == _ALGORITHM
    except jwt.PyJWTError:
        return False


def read_token(secret: str, token: str) -> ServiceClaims:
    """What a service token says, if its signature, audience and expiry hold; TokenError."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], audience=_AUDIENCE,
                            options={"require": ["exp", "jti", "sub"]})
    except jwt.PyJWTError as exc:
        raise TokenError(f"token is not valid: {exc}") from exc
    role = claims.get("role")
    if role not in ROLES or not isinstance(claims["sub"], str):
        raise TokenError("token names no known role")
    team = claims.get("team")
    if role == "mobile_team" and not isinstance(team, str):
        raise TokenError("mobile_team token without a team")
    return ServiceClaims(token_id=str(claims["jti"]), user=claims["sub"],
                         role=cast(Role, role), team_id=team if isinstance(team, str) else None)


def decide_service(claims: ServiceClaims, clinician: RosterClinician | None,
                   team_known: bool) -> Principal | Refusal:
    """The principal a stored, unrevoked service token gives under the roster as it is now.

    A nurse token stands for a roster clinician: her unit, role and team are the roster's.
    A mobile_team token without a clinician behind it (automation) needs its team to exist.
    """
    if claims.role == "admin":
        return Principal(user=claims.user, role="admin")
    if clinician is not None:
        return clinician.principal()
    if claims.role == "mobile_team" and team_known:
        return Principal(user=claims.user, role="mobile_team", team_id=claims.team_id)
    return Refusal(claims.user, "finns inte (längre) i hemmons personallista")


@dataclass(frozen=True, slots=True)
class SessionScope:
    """What a session was signed in with: the clinician and her scope at that moment."""

    clinician_id: str
    role: Role
    unit_id: str
    team_id: str | None


def decide_session(scope: SessionScope, clinician: RosterClinician | None) -> Principal | Refusal:
    """A session lives only as long as the roster keeps her where she was at sign-in."""
    if clinician is None:
        return Refusal(scope.clinician_id, "finns inte längre i hemmons personallista",
                       end_session=True)
    if (clinician.role, clinician.unit_id, clinician.team_id) != (
            scope.role, scope.unit_id, scope.team_id):
        return Refusal(scope.clinician_id,
                       f"har flyttats i personallistan (nu {clinician.unit_id}); logga in igen",
                       end_session=True)
    return clinician.principal()


def decide_sign_in(identity: str, clinician: RosterClinician | None) -> SessionScope | Refusal:
    """Who a verified identity (an HSA-id) signs in as, or why she may not."""
    if clinician is None:
        return Refusal(identity, "ditt HSA-id finns inte i hemmons personallista")
    return SessionScope(clinician.id, clinician.role, clinician.unit_id, clinician.team_id)


def decide_issuer(identity: str, clinician: RosterClinician | None) -> Principal | Refusal:
    """The principal an access token from the issuer gives: the roster's, now."""
    if clinician is None:
        return Refusal(identity, "finns inte i hemmons personallista")
    return clinician.principal()
