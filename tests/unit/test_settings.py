"""Settings: read once, a bad value names the variable, passwords never shown."""

from __future__ import annotations

import pytest

from hemmon.settings import SettingsError, load_settings, mqtt_address, redact

KEY = "k" * 32


def test_defaults_and_values() -> None:
    settings = load_settings({"HEMMON_DATABASE_URL": "postgresql://u@h:5/db",
                              "HEMMON_HTTP_PORT": "9000", "HEMMON_SECRET_KEY": KEY,
                              "OTHER": "ignored"})
    assert settings.http_port == 9000
    assert settings.timezone == "Europe/Stockholm"
    assert settings.require_secret_key() == KEY
    assert settings.require_database_url() == "postgresql://u@h:5/db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HEMMON_HTTP_PORT": "0"}, "HEMMON_HTTP_PORT has value '0'"),
        ({"HEMMON_DATABASE_URL": "sqlite:///x"}, "HEMMON_DATABASE_URL"),
        ({"HEMMON_MQTT_URL": "mqtt://host:notaport"}, "HEMMON_MQTT_URL"),
        ({"HEMMON_TIMEZONE": "Europe/Ragunda"}, "HEMMON_TIMEZONE"),
        ({"HEMMON_BATCH_MAX": "-1"}, "HEMMON_BATCH_MAX"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_a_missing_required_setting_names_it() -> None:
    settings = load_settings({})
    with pytest.raises(SettingsError, match="HEMMON_DATABASE_URL is not set"):
        settings.require_database_url()
    with pytest.raises(SettingsError, match="HEMMON_SECRET_KEY is not set"):
        settings.require_secret_key()


def test_passwords_are_hidden() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"HEMMON_DATABASE_URL": "mysql://admin:hunter2@db/x"})
    assert "hunter2" not in str(caught.value)
    assert redact("postgresql://a:secret@h/db") == "postgresql://a:***@h/db"
    with pytest.raises(SettingsError) as short:
        load_settings({"HEMMON_SECRET_KEY": "tooshort"})
    assert "tooshort" not in str(short.value)


def test_mqtt_address() -> None:
    address = mqtt_address("mqtts://svc:p%40ss@broker.region.se")
    assert (address.host, address.port, address.tls) == ("broker.region.se", 8883, True)
    assert (address.username, address.password) == ("svc", "p@ss")
    assert mqtt_address("mqtt://127.0.0.1").port == 1883
