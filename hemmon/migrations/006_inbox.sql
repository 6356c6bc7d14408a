-- The nurse's inbox (issue 13): who a patient is, and who has an alert in hand.

-- The one table that holds names and personal identity numbers (patientdatalagen). Every
-- other table, stream, log and metric keeps the pseudonym; the inbox joins this in only for
-- clinicians allowed to see the patient, and writes every such view in the access log.
CREATE TABLE patient_identity (
    patient_id   text PRIMARY KEY REFERENCES patients,
    name         text,
    personnummer text CHECK (personnummer ~ '^[0-9]{8}-[0-9]{4}$')
);

-- Handed to a colleague of the unit or to the mobile team ("Karin tar den"). Notes and
-- assignments are alert_events (actions 'note' and 'assigned'), so the history shows them.
ALTER TABLE alerts ADD COLUMN assignee text;
ALTER TABLE alerts ADD COLUMN assigned_at timestamptz;
CREATE INDEX alerts_assignee ON alerts (assignee) WHERE status <> 'resolved';
