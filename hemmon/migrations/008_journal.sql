-- The journal push (issue 14): each alert's opening, acknowledgement, resolution and notes
-- go to the region's FHIR journal through the notification outbox.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('page', 'escalation', 'journal'));

-- How far the journal feeder has read alert_events. It starts at the events there are
-- now: connecting a journal sends what happens from then on, not the whole history.
CREATE TABLE journal_cursor (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_event_id bigint NOT NULL
);
INSERT INTO journal_cursor SELECT true, coalesce(max(id), 0) FROM alert_events;
