"""OpenID Connect against the region's identity provider (SITHS eID through the region's or
Inera's provider): the authorization code flow with PKCE (Authlib's OAuth 2 client), and
JWTs checked against the issuer's published keys (joserfc, Authlib's JOSE library).

Nothing here is hand-written JOSE. The provider's metadata and keys are fetched when first
needed, so that hemmon starts while the provider is down; keys are fetched again when a
token names a key we do not know (the provider rotated its keys), at most once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2 import OAuth2Error
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger(__name__)

_ALGORITHMS = ("RS256", "PS256", "ES256")
_LEEWAY_SECONDS = 30
_KEYS_REFETCH_SECONDS = 60.0


class OidcError(Exception):
    """The identity provider, or a token said to be from it, could not be trusted."""


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    claim: str = "hsa_id"
    """The claim that names the clinician: her HSA-id."""
    audience: str | None = None
    """The `aud` the API requires of the issuer's access tokens; None: the client id."""
    scope: str = "openid"


@dataclass(frozen=True, slots=True)
class LoginStart:
    url: str
    state: str
    nonce: str
    code_verifier: str


class OidcClient:
    """A relying party of one issuer; safe to share between request threads."""

    def __init__(self, config: OidcConfig, *, timeout: float = 10.0) -> None:
        self.config = config
        self._timeout = timeout
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = 0.0

    def _get(self, url: str) -> dict[str, Any]:
        try:
            answer = requests.get(url, timeout=self._timeout)
            answer.raise_for_status()
            body = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise OidcError(f"the identity provider did not answer {url}: {exc}") from exc
        if not isinstance(body, dict):
            raise OidcError(f"{url} did not give a JSON object")
        return body

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                found = self._get(self.config.issuer.rstrip("/")
                                  + "/.well-known/openid-configuration")
                if found.get("issuer") != self.config.issuer:
                    raise OidcError(f"the provider calls itself {found.get('issuer')!r},"
                                    f" not HEMMON_OIDC_ISSUER {self.config.issuer!r}")
                self._metadata = found
            return self._metadata

    def _key_set(self, *, refresh: bool) -> KeySet:
        uri = str(self.metadata()["jwks_uri"])
        with self._lock:
            stale = refresh and time.monotonic() - self._keys_fetched > _KEYS_REFETCH_SECONDS
            if self._keys is None or stale:
                try:
                    self._keys = KeySet.import_key_set(self._get(uri))  # type: ignore[arg-type]
                except (JoseError, ValueError) as exc:
                    raise OidcError(f"the provider's keys at {uri} are not usable: {exc}") from exc
                self._keys_fetched = time.monotonic()
            return self._keys

    def _session(self) -> OAuth2Session:
        return OAuth2Session(self.config.client_id, self.config.client_secret,
                             scope=self.config.scope, redirect_uri=self.config.redirect_uri,
                             code_challenge_method="S256", default_timeout=self._timeout)

    def begin(self) -> LoginStart:
        """Where to send the browser, and what to keep until it comes back."""
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
        with self._session() as session:
            url, _ = session.create_authorization_url(
                self.metadata()["authorization_endpoint"], state=state, code_verifier=verifier,
                nonce=nonce)
        return LoginStart(url=str(url), state=state, nonce=nonce, code_verifier=verifier)

    def finish(self, code: str, *, nonce: str, code_verifier: str, now: datetime) -> str:
        """The clinician's identity (the configured claim) from a verified ID token."""
        try:
            with self._session() as session:
                token = session.fetch_token(self.metadata()["token_endpoint"], code=code,
                                            code_verifier=code_verifier,
                                            grant_type="authorization_code")
        except (OAuth2Error, requests.RequestException) as exc:
            raise OidcError(f"the provider refused the code: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the provider gave no ID token")
        claims = self._verify(id_token, self.config.client_id, now, nonce=nonce)
        return self._identity(claims)

    def identity_of_access_token(self, token: str, now: datetime) -> str:
        """The clinician an access token from the issuer speaks for; OidcError if invalid."""
        claims = self._verify(token, self.config.audience or self.config.client_id, now)
        if "nonce" in claims:
            # an ID token names us as audience too, but it is no key to the API
            raise OidcError("an ID token is not an access token")
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> str:
        value = claims.get(self.config.claim)
        if not isinstance(value, str) or not value:
            raise OidcError(f"the token has no {self.config.claim!r} claim")
        return value

    def _verify(self, token: str, audience: str, now: datetime,
                nonce: str | None = None) -> dict[str, Any]:
        try:
            try:
                decoded = jwt.decode(token, self._key_set(refresh=False), _ALGORITHMS)
            except JoseError:
                decoded = jwt.decode(token, self._key_set(refresh=True), _ALGORITHMS)
            checks: dict[str, Any] = {
                "iss": {"essential": True, "value": self.config.issuer},
                "aud": {"essential": True, "value": audience},
                "exp": {"essential": True},
            }
            if nonce is not None:
                checks["nonce"] = {"essential": True, "value": nonce}
            jwt.JWTClaimsRegistry(now=int(now.timestamp()), leeway=_LEEWAY_SECONDS,
                                  **checks).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"token is not valid: {exc}") from exc
        return dict(decoded.claims)
