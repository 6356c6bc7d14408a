"""Debian's Prometheus scrapes the distributed roles (bridge, worker, alert service as
processes on real Mosquitto, Kafka and PostgreSQL): every role is up with its role label,
the Kafka series exist per role and stage, and the dashboards' Kafka panels return data
(the embedded runner cannot give those)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from hemmon.settings import MqttAddress

from ..integration.cluster import Cluster
from ..integration.harness import Device, wait_until
from ..integration.test_embedded_pipeline import native
from ..services import Kafka
from .test_prometheus_live import DISTRIBUTED_ONLY, Prometheus


def test_prometheus_scrapes_every_distributed_role(
    roster_db: str, mqtt: MqttAddress, kafka_broker: Kafka, tmp_path: Path
) -> None:
    cluster = Cluster(roster_db, mqtt, kafka_broker.bootstrap, tmp_path / "logs")
    try:
        cluster.start_all()
        roles = {f"127.0.0.1:{role.port}": name.split("-")[0]
                 for name, role in cluster.roles.items()}
        prometheus = Prometheus(tmp_path / "prometheus", roles)
        try:
            scraped(prometheus, mqtt)
        finally:
            prometheus.stop()
    finally:
        cluster.stop_all()


def scraped(prometheus: Prometheus, mqtt: MqttAddress) -> None:
    device = Device(mqtt, "dev-0001")
    try:
        device.publish(native(("spo2", 85, "%")))
        assert device.next_feedback(timeout=60)["status"] == "red"
    finally:
        device.close()
    up = 'up{job="hemmon"} == 1'
    wait_until(lambda: len(prometheus.query(up)) == 3, timeout=60,
               what="Prometheus to scrape the three roles")
    assert {s["metric"]["role"] for s in prometheus.query(up)} == {"bridge", "worker", "alerts"}
    wait_until(lambda: prometheus.query(
        'hemmon_kafka_records_total{role="alerts",stage="findings"} > 0'),
        timeout=60, what="the alert service's records in Prometheus")
    for selector in ('hemmon_bridge_messages_total{role="bridge"}',
                     'hemmon_kafka_records_total{role="worker",stage="raw"}',
                     'hemmon_kafka_consumer_lag{role="worker",stage="raw"}',
                     'hemmon_kafka_consumer_lag{role="alerts",stage="findings"}',
                     'hemmon_alerts_opened_total{role="alerts",level="red"}'):
        assert prometheus.query(selector), f"no series {selector}"
    for expr in sorted(DISTRIBUTED_ONLY):  # a rate needs two scrapes of the new series
        wait_until(partial(prometheus.query, expr), timeout=20,
                   what=f"data for the dashboard's {expr}")
