-- The rules engine (issue 3): findings, oxygen therapy, cleared excursions.

-- Whether the patient was on supplemental oxygen (NEWS2 scale 2), as the message said.
ALTER TABLE readings ADD COLUMN on_oxygen boolean;

-- Every rule a reading broke, once: re-evaluation (a late reading, a redelivery) finds
-- the same findings and adds nothing. An alert's occurrences are its findings.
CREATE TABLE findings (
    patient_id   text NOT NULL,
    rule         text NOT NULL,
    reading_key  text NOT NULL,       -- device/message/type, or missed:<deadline>
    measured_at  timestamptz NOT NULL,
    rule_version integer NOT NULL,
    category     text NOT NULL,
    level        text NOT NULL,
    value        double precision NOT NULL,
    explanation  text NOT NULL,
    found_at     timestamptz NOT NULL,
    alert_id     bigint REFERENCES alerts,   -- NULL: too old to alert on (history)
    PRIMARY KEY (patient_id, rule, reading_key, measured_at)
);

-- When the condition behind an open alert ended (back inside the limits, with hysteresis).
-- The alert stays for a nurse to close; a new excursion clears this again.
ALTER TABLE alerts ADD COLUMN cleared_at timestamptz;
