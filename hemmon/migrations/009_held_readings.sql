-- The sweep that confirms held readings (a rule's `confirm`) asks which patients measured
-- in the last minutes: by time alone. (A TimescaleDB hypertable has such an index already.)
CREATE INDEX IF NOT EXISTS readings_measured_at ON readings (measured_at DESC);
