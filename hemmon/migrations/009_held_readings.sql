-- Readings a rule holds back for a re-measurement (its `confirm` wait): written with the
-- batch that held them, judged again by the sweep when their wait is over, then removed.
-- In the database, not in a process's memory, so a restart or a rebalance loses none.
CREATE TABLE held_readings (
    patient_id  text NOT NULL,
    rule        text NOT NULL,
    reading_key text NOT NULL,
    measured_at timestamptz NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (patient_id, rule, reading_key, measured_at)
);
CREATE INDEX held_readings_due ON held_readings (due_at);
