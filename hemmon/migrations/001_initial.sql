-- hemmon schema, version 1. Applied once by `hemmon migrate`, inside one transaction.

CREATE TABLE units (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    office_hours text NOT NULL
);

CREATE TABLE teams (
    id   text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE clinicians (
    id      text PRIMARY KEY,
    name    text NOT NULL,
    unit_id text NOT NULL REFERENCES units
);

CREATE TABLE patients (
    id               text PRIMARY KEY,          -- a pseudonym: no personal identity number
    unit_id          text NOT NULL REFERENCES units,
    fast_vardkontakt text NOT NULL REFERENCES clinicians,
    mobile_team_id   text REFERENCES teams,
    groups           text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE devices (
    id         text PRIMARY KEY,
    patient_id text NOT NULL REFERENCES patients,
    format     text NOT NULL
);

-- Every change of a patient's rules is a new version: who, when, why, from when.
CREATE TABLE rule_versions (
    patient_id     text NOT NULL REFERENCES patients,
    version        integer NOT NULL,
    rules          jsonb NOT NULL,               -- effective rules (templates + personal)
    personal       jsonb NOT NULL,               -- the personal rules as written
    changed_by     text NOT NULL,
    changed_at     timestamptz NOT NULL,
    reason         text NOT NULL,
    effective_from timestamptz NOT NULL,
    PRIMARY KEY (patient_id, version)
);

-- Bumped whenever the roster changes, so running services know to reload it.
CREATE TABLE roster_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision  bigint NOT NULL,
    loaded_at timestamptz NOT NULL
);
INSERT INTO roster_revision VALUES (true, 0, now());

CREATE TABLE readings (
    patient_id    text NOT NULL,
    device_id     text NOT NULL,
    type          text NOT NULL,
    value         double precision NOT NULL,
    measured_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    source_format text NOT NULL,
    manual        boolean NOT NULL,
    message_key   text NOT NULL
);
-- The idempotency key: the same device and message give one reading per type, however
-- often it is delivered. measured_at is part of it so that a hypertable can keep it.
CREATE UNIQUE INDEX readings_identity ON readings (device_id, message_key, type, measured_at);
CREATE INDEX readings_patient_type_time ON readings (patient_id, type, measured_at DESC);

-- Messages that could not become readings: never dropped, listed and replayable.
CREATE TABLE rejections (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    topic         text NOT NULL,
    device_id     text,
    patient_id    text,
    reason        text NOT NULL,
    detail        text NOT NULL,
    raw           bytea NOT NULL,
    message_key   text,
    fingerprint   bytea NOT NULL UNIQUE,         -- a redelivery is the same rejection
    replayed_at   timestamptz,
    replay_result text
);
CREATE INDEX rejections_received ON rejections (received_at DESC);

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    patient_id       text NOT NULL REFERENCES patients,
    rule             text NOT NULL,
    rule_version     integer NOT NULL,
    measurement      text NOT NULL,
    level            text NOT NULL CHECK (level IN ('yellow', 'red')),
    route            text NOT NULL CHECK (route IN ('fast_vardkontakt', 'mobile_team')),
    status           text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    outcome          text,
    snoozed_until    timestamptz,
    occurrences      integer NOT NULL,
    last_value       double precision NOT NULL,
    last_measured_at timestamptz NOT NULL,
    explanation      text NOT NULL
);
-- One alert per patient and rule stays open, updated in place.
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient_id, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_status_level ON alerts (status, level, opened_at);

-- Who did what when: openings, occurrences, acknowledgements, resolutions, snoozes.
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    level       text,
    value       double precision,
    measured_at timestamptz,
    note        text
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);
