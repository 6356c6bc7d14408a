"""Settings from `HEMMON_*` environment variables, read once at start.

A wrong or missing setting raises `SettingsError` naming the variable and its value (with
any password hidden); the CLI prints it and exits 2. Tests pass a dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import SettingsError as SettingsError


def _database_url(value: str) -> str:
    if urlsplit(value).scheme not in ("postgresql", "postgres"):
        raise ValueError("not a postgresql://user@host:port/db URL")
    return value


def _mqtt_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("not an mqtt://host:port URL")
    _ = parts.port  # raises ValueError for a port that is not a number
    return value


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s):// URL")
    return value


def _issuer_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.hostname or parts.query or parts.fragment or not (
            parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname))):
        raise ValueError("not an https:// issuer URL (http:// only on 127.0.0.1, for tests)")
    return value


def _loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("not an IANA time zone such as Europe/Stockholm") from exc
    return value


class Settings(BaseSettings):
    """Every setting hemmon reads; each command requires the ones it uses."""

    model_config = SettingsConfigDict(env_prefix="HEMMON_", frozen=True, extra="ignore")

    database_url: Annotated[str, AfterValidator(_database_url)] | None = None
    mqtt_url: Annotated[str, AfterValidator(_mqtt_url)] = "mqtt://127.0.0.1:1883"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")] = "hemmon.raw"
    mqtt_client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = (
        "hemmon-embedded")
    """`hemmon run`'s MQTT client id: its persistent session (what is not acknowledged
    waits there for the next start)."""
    bridge_client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = (
        "hemmon-bridge")
    bridge_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = "hemmon-bridge"
    kafka_partitions: Annotated[int, Field(ge=1, le=1000)] = 12
    worker_client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = (
        "hemmon-worker")
    sweep_seconds: Annotated[float, Field(ge=1, le=3600)] = 60.0
    stall_seconds: Annotated[float, Field(ge=5, le=3600)] = 60.0
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    secret_key: Annotated[SecretStr, Field(min_length=32)] | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] = "Europe/Stockholm"
    webhook_url: Annotated[str, AfterValidator(_webhook_url)] | None = None
    webhook_secret: Annotated[SecretStr, Field(min_length=32)] | None = None
    escalate_after_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    pipelines: Annotated[int, Field(ge=0, le=64)] | None = None
    """`hemmon run`'s pipeline processes (0: in the receiving process); default: one
    fewer than the machine's cores, at least one."""
    batch_max: Annotated[int, Field(ge=1, le=10_000)] = 500
    batch_wait_ms: Annotated[int, Field(ge=0, le=10_000)] = 20
    log_level: str = "INFO"
    oidc_issuer: Annotated[str, AfterValidator(_issuer_url)] | None = None
    oidc_client_id: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    oidc_client_secret: Annotated[SecretStr, Field(min_length=1)] | None = None
    oidc_claim: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")] = "hsa_id"
    oidc_audience: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    oidc_scope: Annotated[str, Field(pattern=r"^openid( [!-~]+)*$")] = "openid"
    public_url: Annotated[str, AfterValidator(_webhook_url)] | None = None
    """The inbox's address as browsers reach it; the sign-in callback is under it."""
    session_minutes: Annotated[int, Field(ge=5, le=12 * 60)] = 120
    cookie_secure: bool = True

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError("HEMMON_DATABASE_URL is not set (postgresql://user@host:port/db)")
        return self.database_url

    def require_secret_key(self) -> str:
        if self.secret_key is None:
            raise SettingsError(
                "HEMMON_SECRET_KEY is not set (at least 32 characters, used to sign tokens)"
            )
        return self.secret_key.get_secret_value()

    def webhook(self) -> tuple[str, str] | None:
        """(url, secret) of the notification webhook; both or neither must be set."""
        if self.webhook_url is None and self.webhook_secret is None:
            return None
        if self.webhook_url is None or self.webhook_secret is None:
            missing = "HEMMON_WEBHOOK_SECRET" if self.webhook_url else "HEMMON_WEBHOOK_URL"
            raise SettingsError(f"{missing} is not set: the webhook needs a URL and a secret")
        return self.webhook_url, self.webhook_secret.get_secret_value()

    def inbox_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    def check_cookie_secure(self) -> bool:
        """Whether session cookies are Secure; off only for an inbox on 127.0.0.1."""
        if not self.cookie_secure and not _loopback(urlsplit(self.inbox_url()).hostname):
            raise SettingsError(
                f"setting HEMMON_COOKIE_SECURE is false but the inbox is at {self.inbox_url()}:"
                " only an inbox on http://127.0.0.1 (tests, demo) may use plain cookies")
        return self.cookie_secure

    def oidc(self) -> tuple[str, str, str] | None:
        """(issuer, client id, client secret); all three or none must be set."""
        if self.oidc_issuer is None:
            return None
        if self.oidc_client_id is None or self.oidc_client_secret is None:
            missing = "HEMMON_OIDC_CLIENT_ID" if self.oidc_client_id is None else (
                "HEMMON_OIDC_CLIENT_SECRET")
            raise SettingsError(f"{missing} is not set: sign-in through HEMMON_OIDC_ISSUER"
                                " needs the client id and secret registered with the provider")
        return (self.oidc_issuer, self.oidc_client_id,
                self.oidc_client_secret.get_secret_value())

    @property
    def pipeline_processes(self) -> int:
        if self.pipelines is not None:
            return self.pipelines
        return max(1, (os.cpu_count() or 2) - 1)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (or a dict); raises SettingsError naming the variable."""
    try:
        if environ is None:
            return Settings()
        values = {
            key.removeprefix("HEMMON_").lower(): value
            for key, value in environ.items()
            if key.startswith("HEMMON_")
        }
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = f"HEMMON_{str(error['loc'][0]).upper()}" if error["loc"] else "HEMMON_*"
        shown = redact(str(error.get("input", "")))
        if name in ("HEMMON_SECRET_KEY", "HEMMON_WEBHOOK_SECRET", "HEMMON_OIDC_CLIENT_SECRET"):
            shown = "***"
        raise SettingsError(f"setting {name} has value {shown!r}: {error['msg']}") from exc


@dataclass(frozen=True, slots=True)
class MqttAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def mqtt_address(url: str) -> MqttAddress:
    """Host, port and credentials from an mqtt:// or mqtts:// URL."""
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return MqttAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def redact(url: str) -> str:
    """A URL with its password replaced by ***, fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
