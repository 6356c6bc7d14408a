"""`promtool test rules` over deploy/prometheus/alerts.yml: every alert rule fires on the
series that should fire it, when it should, and stays silent on a healthy series.

The promtool test file is generated here from a table of cases; the expected labels and
annotations come from the real rule file (its templates filled in), so nothing is copied.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_deploy import DEPLOY, promtool

RULES = DEPLOY / "prometheus" / "alerts.yml"


@dataclass(frozen=True)
class Case:
    alert: str
    series: dict[str, str]
    """series selector -> promtool's expanding notation, one sample a minute"""
    fires_at: str
    """when it must be firing (and, with `quiet_at`, not yet before)"""
    labels: list[dict[str, str]] = field(default_factory=lambda: [{}])
    quiet_at: str | None = None
    healthy: dict[str, str] = field(default_factory=dict)
    """series on which the rule stays silent (checked at `fires_at`)"""


CASES = [
    Case("HemmonDown", {'up{job="hemmon",instance="alerts:8080",role="alerts"}': "1 1 0x10"},
         "6m", [{"job": "hemmon", "instance": "alerts:8080", "role": "alerts"}], "3m",
         {'up{job="hemmon",instance="alerts:8080",role="alerts"}': "1x10"}),
    # only in the day: flat from 05:00 (5 h after the epoch), firing 15 + 20 min later
    Case("HemmonIngestStalled",
         {'hemmon_messages_received_total{format="native"}': "0+10x300 3000+0x120"},
         "5h40m", quiet_at="5h25m",
         healthy={'hemmon_messages_received_total{format="native"}': "0+10x420"}),
    Case("HemmonMqttDisconnected", {"hemmon_mqtt_connected": "1 1 0x10"}, "6m", quiet_at="3m",
         healthy={"hemmon_mqtt_connected": "1x10"}),
    Case("HemmonRejectionRateSpike",
         {'hemmon_messages_received_total{format="native"}': "0+10x60",
          'hemmon_rejections_total{reason="not_json"}': "0+2x60"}, "20m", quiet_at="10m",
         healthy={'hemmon_messages_received_total{format="native"}': "0+10x60",
                  'hemmon_rejections_total{reason="not_json"}': "0+0.5x60"}),
    Case("HemmonRedAlertUnacknowledged",
         {'hemmon_oldest_unacknowledged_alert_seconds{level="red",route="fast_vardkontakt"}':
          "0+60x60"}, "35m", quiet_at="29m",
         healthy={'hemmon_oldest_unacknowledged_alert_seconds{level="yellow",'
                  'route="fast_vardkontakt"}': "0+60x60",
                  'hemmon_oldest_unacknowledged_alert_seconds{level="red",'
                  'route="fast_vardkontakt"}': "0+60x20 0x40"}),
    Case("HemmonNotificationsFailing",
         {"hemmon_notification_failures_total": "0+1x30", "hemmon_notifications_pending": "3x30"},
         "15m", quiet_at="8m",
         healthy={"hemmon_notification_failures_total": "5x30",
                  "hemmon_notifications_pending": "3x30"}),
    Case("HemmonSilentDevicesRising", {"hemmon_silent_devices": "0+1x120"}, "60m",
         quiet_at="20m", healthy={"hemmon_silent_devices": "5x120"}),
    Case("HemmonSlowPipeline",
         {'hemmon_reading_stored_seconds_bucket{le="5.0"}': "0x30",
          'hemmon_reading_stored_seconds_bucket{le="10.0"}': "0+10x30",
          'hemmon_reading_stored_seconds_bucket{le="+Inf"}': "0+10x30"}, "20m", quiet_at="8m",
         healthy={'hemmon_reading_stored_seconds_bucket{le="1.0"}': "0+10x30",
                  'hemmon_reading_stored_seconds_bucket{le="5.0"}': "0+10x30",
                  'hemmon_reading_stored_seconds_bucket{le="+Inf"}': "0+10x30"}),
    Case("HemmonConsumerLagGrowing",
         {'hemmon_kafka_consumer_lag{role="worker",stage="ingest"}': "1000+100x30"}, "20m",
         [{"role": "worker", "stage": "ingest"}], quiet_at="8m",
         healthy={'hemmon_kafka_consumer_lag{role="worker",stage="ingest"}': "5000x30"}),
]


def rules() -> dict[str, dict[str, Any]]:
    found = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in found["groups"] for rule in group["rules"]}


def _fill(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)


def expected(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {"exp_labels": {**rule.get("labels", {}), **labels},
            "exp_annotations": {k: _fill(v, labels)
                                for k, v in rule.get("annotations", {}).items()}}


def _series(series: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": name, "values": values} for name, values in series.items()]


def promtool_file(case: Case) -> dict[str, Any]:
    rule = rules()[case.alert]
    tests = [{"interval": "1m", "input_series": _series(case.series), "alert_rule_test": [
        {"eval_time": case.fires_at, "alertname": case.alert,
         "exp_alerts": [expected(rule, labels) for labels in case.labels]},
        *([{"eval_time": case.quiet_at, "alertname": case.alert, "exp_alerts": []}]
          if case.quiet_at else []),
    ]}]
    if case.healthy:
        tests.append({"interval": "1m", "input_series": _series(case.healthy),
                      "alert_rule_test": [{"eval_time": case.fires_at,
                                           "alertname": case.alert, "exp_alerts": []}]})
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_rule_has_a_case() -> None:
    assert sorted(rules()) == sorted(case.alert for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.alert for case in CASES])
def test_the_rule_fires_on_time_and_stays_silent_when_healthy(case: Case,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(promtool_file(case), sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
