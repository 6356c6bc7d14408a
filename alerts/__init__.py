"""Alerts: one open alert per patient and rule, routed to the right people, and the inbox."""
