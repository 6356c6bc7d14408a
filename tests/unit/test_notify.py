"""Webhook signing and retry delays; the webhook settings go together."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest

from hemmon.alerts.notify import backoff, sign
from hemmon.settings import SettingsError, load_settings


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", b"{}") == f"sha256={expected}"


def test_retries_wait_longer_and_longer_up_to_ten_minutes() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (5, 10, 20)]
    assert backoff(30) == timedelta(minutes=10)


def test_the_webhook_needs_both_url_and_secret() -> None:
    assert load_settings({}).webhook() is None
    with pytest.raises(SettingsError, match="HEMMON_WEBHOOK_SECRET"):
        load_settings({"HEMMON_WEBHOOK_URL": "https://sms.region.se/hook"}).webhook()
    with pytest.raises(SettingsError, match="HEMMON_WEBHOOK_URL"):
        load_settings({"HEMMON_WEBHOOK_URL": "ftp://x"})
    both = load_settings({"HEMMON_WEBHOOK_URL": "https://sms.region.se/hook",
                          "HEMMON_WEBHOOK_SECRET": "s" * 32})
    assert both.webhook() == ("https://sms.region.se/hook", "s" * 32)
