"""Who is asking: API tokens (HMAC-signed JWT) and the roles that scope what they see.

- nurse: a roster clinician; sees the patients of her unit.
- mobile_team: a team (`--team`); sees the patients enrolled with that team.
- admin: sees everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import jwt

Role = Literal["nurse", "mobile_team", "admin"]
ROLES: tuple[Role, ...] = ("nurse", "mobile_team", "admin")
_ALGORITHM = "HS256"
_AUDIENCE = "hemmon-inbox"


class TokenError(Exception):
    """A token that is missing, forged, expired or not for hemmon (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and the scope that follows from the role."""

    user: str
    role: Role
    unit_id: str | None = None
    team_id: str | None = None


def create_token(
    secret: str, principal: Principal, *, lifetime: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> str:
    """A signed token for a principal."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": principal.user,
        "role": principal.role,
        "unit": principal.unit_id,
        "team": principal.team_id,
        "aud": _AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(secret: str, token: str) -> Principal:
    """The principal a token speaks for; raises TokenError."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], audience=_AUDIENCE)
    except jwt.PyJWTError as exc:
        raise TokenError(f"token is not valid: {exc}") from exc
    role = claims.get("role")
    if role not in ROLES or not isinstance(claims.get("sub"), str):
        raise TokenError("token names no known role")
    principal = Principal(
        user=claims["sub"], role=cast(Role, role), unit_id=claims.get("unit"),
        team_id=claims.get("team"),
    )
    if principal.role == "nurse" and not principal.unit_id:
        raise TokenError("nurse token without a unit")
    if principal.role == "mobile_team" and not principal.team_id:
        raise TokenError("mobile_team token without a team")
    return principal
