"""Sign-in settings: the issuer and its client, the HSA-id claim, cookies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hemmon.alerts.signin import auth_from_settings
from hemmon.settings import SettingsError, load_settings

KEY = "k" * 32
REGION = {"HEMMON_SECRET_KEY": KEY, "HEMMON_OIDC_ISSUER": "https://idp.regionjh.se/realms/vard",
          "HEMMON_OIDC_CLIENT_ID": "hemmon", "HEMMON_OIDC_CLIENT_SECRET": "s3cret",
          "HEMMON_PUBLIC_URL": "https://hemmon.regionjh.se/"}


def test_a_region_connects_its_identity_provider() -> None:
    auth = auth_from_settings(load_settings({**REGION, "HEMMON_SESSION_MINUTES": "60"}))
    assert auth.oidc is not None
    assert auth.oidc.redirect_uri == "https://hemmon.regionjh.se/login/callback"
    assert auth.oidc.claim == "hsa_id"
    assert auth.cookie_secure
    assert auth.cookie_name == "__Host-hemmon-session"
    assert auth.session_lifetime == timedelta(minutes=60)


def test_without_an_issuer_only_codes_and_service_tokens_sign_in() -> None:
    assert auth_from_settings(load_settings({"HEMMON_SECRET_KEY": KEY})).oidc is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HEMMON_OIDC_ISSUER": "http://idp.regionjh.se"}, "HEMMON_OIDC_ISSUER"),
        ({"HEMMON_OIDC_CLIENT_SECRET": None}, "HEMMON_OIDC_CLIENT_SECRET is not set"),
        ({"HEMMON_COOKIE_SECURE": "false"}, "HEMMON_COOKIE_SECURE is false"),
        ({"HEMMON_OIDC_CLAIM": "hsa id"}, "HEMMON_OIDC_CLAIM"),
        ({"HEMMON_SESSION_MINUTES": "100000"}, "HEMMON_SESSION_MINUTES"),
    ],
)
def test_a_wrong_sign_in_setting_names_itself(env: dict[str, str | None], message: str) -> None:
    values = {k: v for k, v in {**REGION, **env}.items() if v is not None}
    with pytest.raises(SettingsError, match=message):
        auth_from_settings(load_settings(values))


def test_plain_cookies_only_on_127_0_0_1() -> None:
    auth = auth_from_settings(load_settings({"HEMMON_SECRET_KEY": KEY,
                                             "HEMMON_COOKIE_SECURE": "false"}))
    assert not auth.cookie_secure
    assert auth.cookie_name == "hemmon-session"


def test_the_client_secret_is_never_shown() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"HEMMON_OIDC_CLIENT_SECRET": ""})
    assert "***" in str(caught.value)
