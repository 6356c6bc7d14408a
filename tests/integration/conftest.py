"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hemmon.settings import MqttAddress

from .harness import Device


@pytest.fixture
def device(mqtt: MqttAddress) -> Iterator[Device]:
    """Patient p-0001's device, dev-0001, connected and listening for its feedback."""
    d = Device(mqtt, "dev-0001")
    yield d
    d.close()
