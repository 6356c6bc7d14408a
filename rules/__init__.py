"""Rules: each patient's own limits, from group templates and personal overrides."""
