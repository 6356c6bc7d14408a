-- Hourly and daily summaries per patient and measurement, for charts over long periods.
-- Plain PostgreSQL: views. Where timescaledb exists, `hemmon migrate` replaces them by
-- continuous aggregates of the same names and columns, so every query works on both.
CREATE VIEW readings_hourly AS
    SELECT patient_id, type, date_trunc('hour', measured_at) AS bucket,
           avg(value) AS mean, min(value) AS low, max(value) AS high, count(*) AS readings
    FROM readings GROUP BY patient_id, type, date_trunc('hour', measured_at);

CREATE VIEW readings_daily AS
    SELECT patient_id, type, date_trunc('day', measured_at) AS bucket,
           avg(value) AS mean, min(value) AS low, max(value) AS high, count(*) AS readings
    FROM readings GROUP BY patient_id, type, date_trunc('day', measured_at);
