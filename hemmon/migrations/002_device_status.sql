-- Device health (issue 6): what each device last said about itself, and device notices.

ALTER TABLE devices ADD COLUMN expect_every interval NOT NULL DEFAULT interval '1 day';

CREATE TABLE device_status (
    device_id    text PRIMARY KEY REFERENCES devices,
    online       boolean,
    battery      double precision,
    status_at    timestamptz,           -- when the device last reported its status
    last_seen_at timestamptz NOT NULL   -- anything at all from the device
);

-- Alerts are clinical; device and adherence notices share the lifecycle but are never red
-- and never go to the mobile team.
ALTER TABLE alerts ADD COLUMN category text NOT NULL DEFAULT 'clinical'
    CHECK (category IN ('clinical', 'adherence', 'device'));
ALTER TABLE alerts ALTER COLUMN measurement DROP NOT NULL;
