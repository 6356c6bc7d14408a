"""A real OpenID Connect provider for tests (deploy/oidc-test: oidc-provider on Node.js),
and a browserless sign-in at it that gives an access token, as an app on a phone would."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .services import free_port, require

PROVIDER = Path(__file__).resolve().parents[1] / "deploy" / "oidc-test"
CLIENT_ID = "hemmon-inbox"
CLIENT_SECRET = "test-client-secret-0123456789"
AUDIENCE = "https://hemmon.test/api"


@dataclass(frozen=True)
class Provider:
    issuer: str
    redirect_uri: str


@contextlib.contextmanager
def oidc_provider(redirect_uri: str, accounts: Mapping[str, Mapping[str, str]],
                  *, access_token_ttl: int = 600) -> Iterator[Provider]:
    """The provider on a private port, with one client (hemmon) and the given accounts."""
    node = require("node", "./scripts/setup needs Node.js for the test provider")
    if not (PROVIDER / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("run ./scripts/setup: deploy/oidc-test/node_modules is missing")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hemmon-oidc-") as scratch:
        config = Path(scratch) / "provider.json"
        config.write_text(json.dumps({
            "port": port, "audience": AUDIENCE, "access_token_ttl": access_token_ttl,
            "accounts": accounts,
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                         "redirect_uris": [redirect_uri]}],
        }))
        process = subprocess.Popen([node, str(PROVIDER / "provider.mjs"), str(config)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("ready "):
                raise RuntimeError(f"the test provider did not start: {line}"
                                   f" {process.stderr.read() if process.stderr else ''}")
            yield Provider(issuer=line.split()[1], redirect_uri=redirect_uri)
        finally:
            process.terminate()
            process.wait(10)


def access_token(provider: Provider, login: str) -> str:
    """Signs in as `login` (code flow with PKCE, no browser) and returns the access token."""
    return tokens(provider, login)["access_token"]


def tokens(provider: Provider, login: str) -> dict[str, str]:
    """The provider's token response for `login`: access token, ID token."""
    verifier = generate_token(48)
    with httpx.Client(base_url=provider.issuer, timeout=10) as http:
        answer = http.get("/auth", params={
            "client_id": CLIENT_ID, "response_type": "code", "scope": "openid",
            "redirect_uri": provider.redirect_uri, "state": generate_token(16),
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        })
        while answer.is_redirect:
            where = answer.headers["location"]
            if where.startswith(provider.redirect_uri):
                break
            if where.startswith("/interaction/"):
                http.get(where)
                answer = http.post(where, data={"login": login})
            else:
                answer = http.get(where)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        answer = http.post("/token", data={
            "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": provider.redirect_uri,
        }, auth=(CLIENT_ID, CLIENT_SECRET))
        answer.raise_for_status()
        return {k: str(v) for k, v in answer.json().items()}
