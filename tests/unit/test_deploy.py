"""deploy/ checked without an engine: promtool, the manifests' schemas, the compose file,
and every metric a dashboard or an alert rule names is one the code exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

import hemmon.metrics  # noqa: F401  (registers every metric)
from hemmon.cli import parser

from ..services import require

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_BUILTINS = {"up"}


def exposed() -> set[str]:
    """Every sample name the code exposes (counters' _total, histograms' _bucket, ...)."""
    names = set()
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else []:
            names.add(family.name)
            if family.type == "counter":
                names.add(f"{family.name}_total")
            if family.type == "histogram":
                names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(hemmon_[a-z0-9_]+|up)\b", expr))


def promtool() -> str:
    return require("promtool", "./scripts/setup installs Debian's prometheus")


def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")]):
        result = subprocess.run([promtool(), *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs


@pytest.mark.parametrize("source", ["alert rules", "dashboards"])
def test_every_metric_named_is_exposed_by_the_code(source: str) -> None:
    exprs = rule_exprs() if source == "alert rules" else dashboard_exprs()
    assert exprs
    named = set().union(*(metric_names(e) for e in exprs)) - PROMETHEUS_BUILTINS
    assert named
    assert named <= exposed(), named - exposed()


def test_the_rules_cover_what_operators_page_on() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"HemmonDown", "HemmonIngestStalled", "HemmonRejectionRateSpike",
            "HemmonRedAlertUnacknowledged", "HemmonSilentDevicesRising"} <= names


def test_the_kubernetes_manifests_match_their_schemas() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "hemmon.yaml").read_text()))
    assert {d["kind"] for d in docs} == {"Namespace", "Job", "Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_compose_file_runs_real_commands_and_mounts_real_files() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"mosquitto", "kafka", "timescaledb", "bridge", "worker-1", "worker-2", "alerts",
            "hemmon", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["worker-1"]["environment"] != services["worker-2"]["environment"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            parser().parse_args(service["command"])  # a command hemmon really has
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and "generated" not in source:
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    assert (DEPLOY / "Dockerfile").exists()


def test_the_exposed_set_is_not_vacuous() -> None:
    names = exposed()
    assert "hemmon_alerts_opened_total" in names
    assert "hemmon_reading_stored_seconds_bucket" in names
    assert "hemmon_no_such_metric_total" not in names


def test_the_distributed_manifests_run_each_role_with_probes() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "distributed.yaml").read_text()))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    workloads = {d["metadata"]["name"]: d for d in docs
                 if d["kind"] in ("Deployment", "StatefulSet")}
    assert set(workloads) == {"hemmon-bridge", "hemmon-worker", "hemmon-alerts"}
    assert workloads["hemmon-bridge"]["kind"] == "StatefulSet"  # a stable MQTT client id
    for workload in workloads.values():
        [container] = workload["spec"]["template"]["spec"]["containers"]
        parser().parse_args(container["args"])  # a command hemmon really has
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
