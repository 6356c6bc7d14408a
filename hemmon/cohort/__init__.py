"""A simulated population with ground truth, backtested: the evidence for the rules
(`hemmon cohort`, issue 12)."""
