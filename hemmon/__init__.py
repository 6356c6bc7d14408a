"""hemmon: home-monitoring ingestion and alerting for Swedish primary care."""

__version__ = "0.1.0"
