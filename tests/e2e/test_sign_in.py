"""Sign-in through a real OpenID Connect provider, and access that follows the roster.

The provider is oidc-provider on Node.js (deploy/oidc-test), started here; the browser is
headless Chromium; roster changes go through `hemmon roster load`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from joserfc import jwt
from joserfc.jwk import RSAKey
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from hemmon.alerts import credentials
from hemmon.alerts.access import Principal
from hemmon.alerts.oidc import OidcConfig
from hemmon.alerts.signin import AuthConfig
from hemmon.db import connect
from hemmon.settings import MqttAddress

from ..conftest import ROSTER
from ..integration.harness import SECRET, Clock, Device, Running, running_service
from ..integration.test_embedded_pipeline import native
from ..oidc import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    Provider,
    access_token,
    oidc_provider,
    tokens,
)
from ..services import free_port
from .signin import chrome, sign_in_at_provider

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ANNA = "SE2321000024-1234"
ACCOUNTS = {
    "anna": {"hsa_id": ANNA, "name": "Anna Berg"},
    "karin": {"hsa_id": "SE2321000024-2345", "name": "Karin Holm"},
    "olle": {"hsa_id": "SE2321000024-9999", "name": "Olle Okänd"},  # not in the roster
}


def roster(anna_unit: str | None = "hc-stugun") -> dict[str, Any]:
    """The test roster with HSA-ids; Anna at `anna_unit`, or gone (her patient to Eva)."""
    clinicians = [
        {"id": "nurse-karin", "name": "Karin Holm", "unit": "hc-hammarstrand",
         "hsa_id": "SE2321000024-2345"},
        {"id": "nurse-eva", "name": "Eva Lund", "unit": "hc-stugun"},
    ]
    if anna_unit:
        clinicians.append({"id": "nurse-anna", "name": "Anna Berg", "unit": anna_unit,
                           "hsa_id": ANNA})
    patients = [dict(p, fast_vardkontakt="nurse-eva") if p["unit"] == "hc-stugun" else p
                for p in ROSTER["patients"]]
    return {**ROSTER, "clinicians": clinicians, "patients": patients}


def roster_load(database_url: str, data: dict[str, Any], folder: Path) -> None:
    path = folder / "roster.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")},
           "HEMMON_DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "hemmon.cli", "roster", "load", str(path)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@dataclass
class Setup:
    running: Running
    provider: Provider
    clock: Clock
    database_url: str

    @property
    def base(self) -> str:
        return str(self.running.http.base_url).rstrip("/")

    def refused(self, user: str) -> list[tuple[str, str]]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT action, detail FROM access_log"
                                " WHERE user_id = %s AND NOT allowed ORDER BY id", (user,))
            return [(str(a), str(d)) for a, d in rows]


@pytest.fixture
def setup(database_url: str, mqtt: MqttAddress, tmp_path: Path) -> Iterator[Setup]:
    """The inbox signing in through the test provider, with a red alert in each unit."""
    roster_load(database_url, roster(), tmp_path)
    port = free_port()
    with oidc_provider(f"http://127.0.0.1:{port}/login/callback", ACCOUNTS) as provider:
        auth = AuthConfig(SECRET, cookie_secure=False, oidc=OidcConfig(
            issuer=provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            redirect_uri=provider.redirect_uri, audience=AUDIENCE))
        clock = Clock()
        with running_service(database_url, mqtt, auth=auth, port=port, clock=clock) as running:
            for device_id in ("dev-0001", "dev-0002"):
                device = Device(mqtt, device_id)
                try:
                    # measured 13 minutes ago: a template's wait for a re-measurement is over
                    device.publish(native(("spo2", 80, "%"),
                                          measured_at=clock() - timedelta(minutes=13)))
                    assert device.next_feedback()["status"] == "red"
                finally:
                    device.close()
            yield Setup(running, provider, clock, database_url)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chrome(tmp_path / "profile") as driver:
        yield driver


def test_a_nurse_signs_in_at_the_region_sees_her_units_alerts_and_signs_out(
    setup: Setup, browser: WebDriver
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    wait = WebDriverWait(browser, 20)
    sign_in_at_provider(browser, setup.base, "anna")
    wait.until(ready.url_to_be(f"{setup.base}/"))
    row = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#alerts tr")))
    assert "p-0001" in row.text
    assert "p-0002" not in browser.find_element(By.ID, "alerts").text  # Karin's unit
    assert "nurse-anna" in browser.find_element(By.ID, "who").text
    # the page's own style block is allowed by its hash in the CSP
    header = browser.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(29, 79, 122, 1)"
    cookie = browser.get_cookie("hemmon-session")
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    browser.save_screenshot(str(ARTIFACTS / "sign-in-1-inbox.png"))

    browser.find_element(By.ID, "logout").click()
    message = wait.until(ready.presence_of_element_located((By.ID, "message")))
    assert message.text == "Du är utloggad."
    browser.save_screenshot(str(ARTIFACTS / "sign-in-2-signed-out.png"))
    answer = httpx.get(f"{setup.base}/api/v1/alerts", cookies={"hemmon-session": cookie["value"]})
    assert answer.status_code == 401
    browser.get(f"{setup.base}/")
    wait.until(ready.url_to_be(f"{setup.base}/login"))
    with psycopg.connect(setup.database_url) as conn:
        actions = conn.execute("SELECT action, allowed FROM access_log"
                               " WHERE user_id = 'nurse-anna' AND action LIKE 'sign%%'"
                               " ORDER BY id").fetchall()
    assert actions == [("sign_in", True), ("sign_out", True)]


def test_a_clinician_the_roster_does_not_know_is_refused_in_swedish(
    setup: Setup, browser: WebDriver
) -> None:
    sign_in_at_provider(browser, setup.base, "olle")
    message = WebDriverWait(browser, 20).until(
        ready.presence_of_element_located((By.ID, "message")))
    assert "Inloggningen nekades: ditt HSA-id finns inte i hemmons personallista" in message.text
    browser.save_screenshot(str(ARTIFACTS / "sign-in-3-refused.png"))
    assert browser.get_cookie("hemmon-session") is None
    assert setup.refused("SE2321000024-9999") == [
        ("sign_in", "oidc: ditt HSA-id finns inte i hemmons personallista")]


def test_the_api_takes_the_issuers_access_tokens_but_not_expired_forged_or_foreign_ones(
    setup: Setup,
) -> None:
    issued = tokens(setup.provider, "anna")
    token = issued["access_token"]
    mine = setup.running.get("/api/v1/alerts", token)
    assert mine.status_code == 200, mine.text
    assert {a["patient_id"] for a in mine.json()["alerts"]} == {"p-0001"}
    assert setup.running.get("/api/v1/me", token).json()["unit"] == "hc-stugun"

    # the ID token names hemmon as its audience, but it is no key to the API
    assert setup.running.get("/api/v1/alerts", issued["id_token"]).status_code == 401
    stranger = access_token(setup.provider, "olle")
    assert setup.running.get("/api/v1/alerts", stranger).status_code == 403

    with oidc_provider(setup.provider.redirect_uri, ACCOUNTS) as foreign:
        other = access_token(foreign, "anna")
    assert setup.running.get("/api/v1/alerts", other).status_code == 401

    forged_claims = {"iss": setup.provider.issuer, "aud": AUDIENCE, "hsa_id": ANNA,
                     "exp": 4102444800}
    forged = jwt.encode({"alg": "RS256", "kid": "test"}, forged_claims,
                        RSAKey.generate_key(2048))
    assert setup.running.get("/api/v1/alerts", forged).status_code == 401

    setup.clock.offset = timedelta(hours=1)  # past the provider's ten minutes
    expired = setup.running.get("/api/v1/alerts", token)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]


def session(setup: Setup, clinician: str) -> httpx.Client:
    """An HTTP client signed in with a one-time code, as the demo signs in."""
    client = httpx.Client(base_url=setup.base, timeout=10)
    answer = client.post("/login/code", data={"code": setup.running.login_code(clinician)})
    assert answer.status_code == 303, answer.text
    return client


@pytest.mark.parametrize("change", ["moved", "removed"])
def test_a_roster_change_ends_her_access_to_former_patients_and_her_session(
    setup: Setup, change: str, tmp_path: Path
) -> None:
    browser_session = session(setup, "nurse-anna")
    service = setup.running.token(Principal(user="nurse-anna", role="nurse"))
    issued = access_token(setup.provider, "anna")
    path = "/api/v1/patients/p-0001/readings"
    assert browser_session.get(path).status_code == 200
    assert setup.running.get(path, service).status_code == 200
    assert setup.running.get(path, issued).status_code == 200

    roster_load(setup.database_url, roster("hc-hammarstrand" if change == "moved" else None),
                tmp_path)

    assert browser_session.get(path).status_code == 403
    assert browser_session.get("/api/v1/me").status_code == 401  # the session has ended
    assert setup.running.get(path, service).status_code == 403
    assert setup.running.get(path, issued).status_code == 403
    refused = setup.refused("nurse-anna")
    assert refused[0][0] == "access_refused"
    assert refused[0][1].startswith("session: ")
    if change == "moved":
        # her credentials still work, but p-0001 is no longer hers: each refusal logged
        assert [a for a, _ in refused[1:]] == ["read_readings", "read_readings"]
        # the roster as it is now: her new unit's patients
        assert setup.running.get("/api/v1/patients/p-0002/readings", service).status_code == 200
        assert setup.running.get("/api/v1/me", issued).json()["unit"] == "hc-hammarstrand"
    else:
        assert refused[1] == ("access_refused",
                              "token: finns inte (längre) i hemmons personallista")
        assert setup.refused(ANNA)[-1] == ("access_refused",
                                          "issuer_token: finns inte i hemmons personallista")
    browser_session.close()


def test_a_revoked_service_token_is_refused_and_a_token_for_no_clinician_is_not_made(
    setup: Setup,
) -> None:
    with connect(setup.database_url) as conn:
        token_id, token = credentials.issue_token(
            conn, SECRET, Principal(user="nurse-karin", role="nurse"),
            now=setup.clock(), lifetime=timedelta(hours=1))
    assert setup.running.get("/api/v1/alerts", token).status_code == 200
    with connect(setup.database_url) as conn:
        assert credentials.revoke_token(conn, token_id, setup.clock())
    answer = setup.running.get("/api/v1/alerts", token)
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]


def test_the_inbox_sends_the_headers_a_security_review_expects(setup: Setup) -> None:
    page = setup.running.http.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "<script>" not in page.text  # the script is /inbox.js
    alerts = setup.running.get("/api/v1/alerts")
    assert alerts.headers["cache-control"] == "no-store"
    # a cookie-authenticated write from another site is refused
    client = session(setup, "nurse-anna")
    alert_id = client.get("/api/v1/alerts").json()["alerts"][0]["id"]
    foreign = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={}).status_code == 200
    client.close()
