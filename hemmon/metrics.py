"""Every Prometheus metric hemmon exposes, in one documented list.

Names carry the `hemmon_` prefix and base units; counters end in `_total`, durations in
`_seconds`. Labels take values from fixed lists only (format, type, reason, level,
route): never a patient, a device or a topic.

| metric | kind | labels | meaning |
|---|---|---|---|
| hemmon_messages_received_total | counter | format | device messages taken from MQTT |
| hemmon_readings_accepted_total | counter | type | new readings stored (duplicates excluded) |
| hemmon_readings_duplicate_total | counter | | readings already stored (a redelivery) |
| hemmon_readings_evaluated_total | counter | | readings the rules looked at (redeliveries too) |
| hemmon_records_skipped_total | counter | format | well-formed records that are not readings |
| hemmon_rejections_total | counter | reason | new rejections kept |
| hemmon_internal_errors_total | counter | stage | messages a bug in hemmon met (kept) |
| hemmon_series_loads_total | counter | | patients' series read from the database |
| hemmon_series_points | gauge | | readings held in memory for the rules |
| hemmon_alerts_opened_total | counter | level, route, category | alerts and notices opened |
| hemmon_findings_historical_total | counter | | findings too old to alert on (a backlog) |
| hemmon_alert_updates_total | counter | level | occurrences added to an open alert |
| hemmon_escalations_total | counter | route | unacknowledged red alerts moved on |
| hemmon_notifications_sent_total | counter | | pages delivered to the webhook |
| hemmon_notification_failures_total | counter | | failed webhook attempts (retried) |
| hemmon_notifications_pending | gauge | | pages not delivered yet (read at scrape) |
| hemmon_reading_stored_seconds | histogram | | receipt -> reading committed |
| hemmon_alert_opened_seconds | histogram | | receipt -> alert committed |
| hemmon_acknowledge_seconds | histogram | level, route | alert opened -> acknowledged |
| hemmon_batch_seconds | histogram | | one pipeline batch, normalise to commit |
| hemmon_open_alerts | gauge | level, route | alerts open or acknowledged (read at scrape) |
| hemmon_oldest_unacknowledged_alert_seconds | gauge | level, route | age of the oldest open alert |
| hemmon_silent_devices | gauge | | devices not heard from within their expected interval |
| hemmon_patients | gauge | | patients in the roster (read at scrape) |
| hemmon_mqtt_connected | gauge | | 1 while the pipeline's (or bridge's) MQTT client is connected |
| hemmon_bridge_messages_total | counter | | messages handed to Kafka, then acknowledged |
| hemmon_bridge_failures_total | counter | | batches Kafka did not take (retried) |
| hemmon_bridge_queue | gauge | | messages taken from MQTT, not yet in Kafka (read at scrape) |
| hemmon_kafka_records_total | counter | role, stage | records a role consumed and finished |
| hemmon_kafka_consumer_lag | gauge | role, stage | records on its partitions not committed |
| hemmon_kafka_send_failures_total | counter | | records Kafka did not take (retried) |
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Gauges are set by one process (the receiver of `hemmon run`, or a role), except the
# series held by each pipeline process, which add up.
ACK_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)

MESSAGES_RECEIVED = Counter(
    "hemmon_messages_received", "Device messages taken from MQTT", ["format"]
)
READINGS_ACCEPTED = Counter("hemmon_readings_accepted", "New readings stored", ["type"])
READINGS_EVALUATED = Counter("hemmon_readings_evaluated",
                              "Readings the rules have looked at (redeliveries too)")
READINGS_DUPLICATE = Counter("hemmon_readings_duplicate", "Readings that were already stored")
RECORDS_SKIPPED = Counter(
    "hemmon_records_skipped", "Well-formed records that are not readings here", ["format"]
)
REJECTIONS = Counter("hemmon_rejections", "New rejections kept, by reason", ["reason"])
INTERNAL_ERRORS = Counter("hemmon_internal_errors",
                          "Messages a bug in hemmon met, kept for replay", ["stage"])
SERIES_LOADS = Counter("hemmon_series_loads", "Patients' series loaded from the database")
SERIES_POINTS = Gauge("hemmon_series_points", "Readings held in memory for the rules",
                      multiprocess_mode="livesum")
FINDINGS_HISTORICAL = Counter(
    "hemmon_findings_historical", "Findings about readings too old to alert on"
)
ALERTS_OPENED = Counter("hemmon_alerts_opened", "Alerts and notices opened",
                        ["level", "route", "category"])
ALERT_UPDATES = Counter("hemmon_alert_updates", "Occurrences added to open alerts", ["level"])
ESCALATIONS = Counter("hemmon_escalations", "Unacknowledged red alerts moved on", ["route"])
NOTIFICATIONS_SENT = Counter("hemmon_notifications_sent", "Pages delivered to the webhook")
NOTIFICATION_FAILURES = Counter("hemmon_notification_failures",
                                "Failed webhook attempts (retried)")
NOTIFICATIONS_PENDING = Gauge("hemmon_notifications_pending", "Pages not delivered yet",
    multiprocess_mode="mostrecent")
READING_STORED_SECONDS = Histogram(
    "hemmon_reading_stored_seconds", "Receipt to reading committed", buckets=LATENCY_BUCKETS
)
ALERT_OPENED_SECONDS = Histogram(
    "hemmon_alert_opened_seconds", "Receipt to alert committed", buckets=LATENCY_BUCKETS
)
ACKNOWLEDGE_SECONDS = Histogram(
    "hemmon_acknowledge_seconds", "Alert opened to acknowledged", ["level", "route"],
    buckets=ACK_BUCKETS,
)
BATCH_SECONDS = Histogram(
    "hemmon_batch_seconds", "One pipeline batch, normalise to commit", buckets=LATENCY_BUCKETS
)
OPEN_ALERTS = Gauge("hemmon_open_alerts", "Alerts not resolved", ["level", "route"],
    multiprocess_mode="mostrecent")
OLDEST_UNACKNOWLEDGED = Gauge(
    "hemmon_oldest_unacknowledged_alert_seconds", "Age of the oldest open alert",
    ["level", "route"], multiprocess_mode="mostrecent")
PATIENTS = Gauge("hemmon_patients", "Patients in the roster", multiprocess_mode="mostrecent")
SILENT_DEVICES = Gauge("hemmon_silent_devices", "Devices past their expected interval",
    multiprocess_mode="mostrecent")
MQTT_CONNECTED = Gauge("hemmon_mqtt_connected", "1 while the pipeline's MQTT client is connected",
    multiprocess_mode="mostrecent")

BRIDGED = Counter("hemmon_bridge_messages", "MQTT messages handed to Kafka and acknowledged")
BRIDGE_QUEUE = Gauge("hemmon_bridge_queue", "Messages taken from MQTT, not yet in Kafka",
    multiprocess_mode="mostrecent")
BRIDGE_FAILURES = Counter("hemmon_bridge_failures", "Batches Kafka did not take (retried)")

KAFKA_RECORDS = Counter("hemmon_kafka_records",
                        "Records a distributed role consumed and finished", ["role", "stage"])
KAFKA_LAG = Gauge("hemmon_kafka_consumer_lag",
                  "Records on this member's partitions not yet committed", ["role", "stage"],
    multiprocess_mode="mostrecent")
KAFKA_SEND_FAILURES = Counter("hemmon_kafka_send_failures",
                              "Records Kafka did not take from a worker (retried)")

LEVELS = ("yellow", "red")
ROUTES = ("fast_vardkontakt", "mobile_team", "unit_fallback")


def set_alert_gauges(stats: list[tuple[str, str, int, float]]) -> None:
    """Set the open-alert gauges from (level, route, count, oldest age) rows; zero the rest."""
    seen = {(level, route): (count, age) for level, route, count, age in stats}
    for level in LEVELS:
        for route in ROUTES:
            count, age = seen.get((level, route), (0, 0.0))
            OPEN_ALERTS.labels(level, route).set(count)
            OLDEST_UNACKNOWLEDGED.labels(level, route).set(age)


def exposition() -> bytes:
    """The /metrics page: this process's metrics, or with pipeline processes (`hemmon run`
    sets PROMETHEUS_MULTIPROC_DIR) the sum over all of them."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
