-- Alert lifecycle (issue 4): escalation, notifications, the access log.

-- Who takes a red alert out of hours when a patient has no mobile team (e.g. the
-- region's on-call primary care); free text, shown and sent with the alert.
ALTER TABLE units ADD COLUMN fallback_contact text;
-- A patient enrolled with a mobile team can have every red alert go there at once.
ALTER TABLE patients ADD COLUMN red_to_mobile_team boolean NOT NULL DEFAULT false;

ALTER TABLE alerts DROP CONSTRAINT alerts_route_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_route_check
    CHECK (route IN ('fast_vardkontakt', 'mobile_team', 'unit_fallback'));
-- Escalation counts from when the alert reached its level, not from its first finding.
ALTER TABLE alerts ADD COLUMN level_since timestamptz;
UPDATE alerts SET level_since = opened_at;
ALTER TABLE alerts ALTER COLUMN level_since SET NOT NULL;
ALTER TABLE alerts ADD COLUMN escalated_at timestamptz;

-- Outbox: written in the same transaction as the alert, delivered (and retried) by the
-- notifier, so a page is never lost and never sent for an alert that was not stored.
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts,
    kind            text NOT NULL CHECK (kind IN ('page', 'escalation')),
    route           text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE delivered_at IS NULL;

-- Every read of a patient's data, and every refused attempt (patientdatalagen).
CREATE TABLE access_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    user_id    text NOT NULL,
    role       text NOT NULL,
    action     text NOT NULL,
    patient_id text,
    allowed    boolean NOT NULL,
    detail     text
);
CREATE INDEX access_log_patient ON access_log (patient_id, at);
CREATE INDEX access_log_user ON access_log (user_id, at);
