"""Device notices: silence past the expected interval, low battery with hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hemmon.alerts.routing import CareTeam, OfficeHours, Route, route_for
from hemmon.ingest.status import StatusError, parse_status, status_device
from hemmon.rules.devices import DeviceState, battery_key, device_findings, silent_key
from hemmon.rules.model import Level

NOW = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def state(*, seen_ago: timedelta = timedelta(hours=1), battery: float | None = 80,
          online: bool | None = True) -> DeviceState:
    return DeviceState("dev-1", "p-1", timedelta(days=1), NOW - seen_ago, battery, online)


def test_a_device_heard_from_in_time_is_fine() -> None:
    assert device_findings(state(seen_ago=timedelta(hours=23)), NOW) == []


def test_a_silent_device_is_a_yellow_device_notice() -> None:
    [notice] = device_findings(state(seen_ago=timedelta(hours=30), online=False), NOW)
    assert notice.rule_key == silent_key("dev-1")
    assert (notice.category, notice.level, notice.measurement) == ("device", Level.YELLOW, None)
    assert "inte hörts av på 30 timmar" in notice.explanation
    assert "frånkopplad" in notice.explanation


@pytest.mark.parametrize(
    ("battery", "already_open", "notice"),
    [(19, False, True), (20, False, False), (25, True, True), (30, True, False),
     (None, False, False)],
)
def test_low_battery_opens_below_20_and_clears_at_30(
    battery: float | None, already_open: bool, notice: bool
) -> None:
    found = device_findings(state(battery=battery), NOW, battery_notice_open=already_open)
    assert [f.rule_key for f in found] == ([battery_key("dev-1")] if notice else [])


def test_notices_never_go_to_the_mobile_team() -> None:
    team = CareTeam(OfficeHours.parse("mon-fri 08:00-17:00"), has_mobile_team=True)
    assert route_for(Level.RED, team, NOW, "device") is Route.FAST_VARDKONTAKT
    assert route_for(Level.RED, team, NOW, "clinical") is Route.MOBILE_TEAM


def test_status_messages() -> None:
    assert status_device("hemmon/v1/devices/dev-1/status") == "dev-1"
    assert status_device("hemmon/v1/devices/dev-1/readings") is None
    report = parse_status("dev-1", b'{"online": false}')
    assert (report.online, report.battery) == (False, None)
    assert parse_status("dev-1", b'{"online": true, "battery": 15}').battery == 15.0
    for bad in (b"nope", b"[]", b'{"online": "yes"}', b'{"battery": 140}'):
        with pytest.raises(StatusError):
            parse_status("dev-1", bad)
