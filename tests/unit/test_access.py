"""Who may see what: the decisions from the roster as it is now, and service tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest

from hemmon.alerts.access import (
    Principal,
    Refusal,
    RosterClinician,
    ServiceClaims,
    SessionScope,
    TokenError,
    create_token,
    decide_issuer,
    decide_service,
    decide_session,
    decide_sign_in,
    is_service_token,
    read_token,
)
from hemmon.alerts.loginpage import login_page

SECRET = "unit-secret-key-0123456789-abcdefghij"
ANNA = RosterClinician("nurse-anna", "nurse", "hc-stugun", None)
MOVED = RosterClinician("nurse-anna", "nurse", "hc-hammarstrand", None)
AT_SIGN_IN = SessionScope("nurse-anna", "nurse", "hc-stugun", None)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ANNA, ANNA.principal()),
        (MOVED, Refusal("nurse-anna", "har flyttats i personallistan (nu hc-hammarstrand);"
                        " logga in igen", end_session=True)),
        (RosterClinician("nurse-anna", "mobile_team", "hc-stugun", "mint"), "refused"),
        (None, Refusal("nurse-anna", "finns inte längre i hemmons personallista",
                       end_session=True)),
    ],
    ids=["unchanged", "moved", "new-role", "removed"],
)
def test_a_session_lives_only_while_the_roster_keeps_her_where_she_was(
    now: RosterClinician | None, expected: Principal | Refusal | str
) -> None:
    decided = decide_session(AT_SIGN_IN, now)
    if expected == "refused":
        assert isinstance(decided, Refusal)
        assert decided.end_session
    else:
        assert decided == expected


def claims(role: str, user: str = "nurse-anna", team: str | None = None) -> ServiceClaims:
    return ServiceClaims("t1", user, role, team)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "clinician", "team_known", "expected"),
    [
        (claims("nurse"), ANNA, False, Principal("nurse-anna", "nurse", "hc-stugun")),
        # the roster now, not the unit she had when the token was made
        (claims("nurse"), MOVED, False, Principal("nurse-anna", "nurse", "hc-hammarstrand")),
        (claims("nurse"), None, False, Refusal("nurse-anna",
                                               "finns inte (längre) i hemmons personallista")),
        (claims("admin", "ops"), None, False, Principal("ops", "admin")),
        (claims("mobile_team", "mint-1", "mint"), None, True,
         Principal("mint-1", "mobile_team", team_id="mint")),
        (claims("mobile_team", "mint-1", "mint"), None, False,
         Refusal("mint-1", "finns inte (längre) i hemmons personallista")),
    ],
    ids=["nurse", "nurse-moved", "nurse-removed", "admin", "team", "team-gone"],
)
def test_a_service_token_gives_what_the_roster_gives_now(
    token: ServiceClaims, clinician: RosterClinician | None, team_known: bool,
    expected: Principal | Refusal,
) -> None:
    assert decide_service(token, clinician, team_known) == expected


def test_an_identity_the_roster_does_not_know_is_refused() -> None:
    assert decide_sign_in("SE2321000024-1234", ANNA) == AT_SIGN_IN
    refusal = decide_sign_in("SE2321000024-9999", None)
    assert refusal == Refusal("SE2321000024-9999",
                              "ditt HSA-id finns inte i hemmons personallista")
    assert decide_issuer("SE2321000024-1234", MOVED) == MOVED.principal()
    assert isinstance(decide_issuer("SE2321000024-9999", None), Refusal)


def test_a_service_token_round_trips_with_its_id() -> None:
    token = create_token(SECRET, Principal("mint-1", "mobile_team", team_id="mint"),
                         token_id="abc")
    assert is_service_token(token)
    assert read_token(SECRET, token) == ServiceClaims("abc", "mint-1", "mobile_team", "mint")


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


@pytest.mark.parametrize(
    "make",
    [
        lambda t: create_token("another-secret-0123456789-abcdefghijk",
                               Principal("nurse-anna", "nurse")),
        lambda t: pyjwt.encode(pyjwt.decode(t, options={"verify_signature": False}), key=None,
                               algorithm="none"),
        _tampered,
        lambda t: create_token(SECRET, Principal("nurse-anna", "nurse"),
                               now=datetime.now(UTC) - timedelta(days=2)),
        lambda t: pyjwt.encode({"sub": "nurse-anna", "role": "nurse", "aud": "hemmon-inbox",
                                "exp": 4102444800}, SECRET, algorithm="HS256"),  # no id
    ],
    ids=["forged", "unsigned", "tampered", "expired", "no-id"],
)
def test_forged_unsigned_tampered_and_expired_tokens_are_refused(make: object) -> None:
    good = create_token(SECRET, Principal("nurse-anna", "nurse"))
    with pytest.raises(TokenError):
        read_token(SECRET, make(good))  # type: ignore[operator]


def test_the_sign_in_page_shows_only_escaped_fixed_text() -> None:
    page = login_page(oidc=True, message="<script>x</script>")
    assert "<script>x" not in page
    assert "&lt;script&gt;" in page
    assert 'href="/login/start"' in page
    assert "/login/start" not in login_page(oidc=False, message=None)
