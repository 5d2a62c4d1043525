-- Read models are now updated inside the append transaction. What each organization's read
-- models include is tracked on its chain head (`projected_seq`), replacing the global checkpoint.
ALTER TABLE chain_heads ADD COLUMN projected_seq BIGINT NOT NULL DEFAULT 0;
UPDATE chain_heads SET projected_seq = COALESCE((
    SELECT MAX(e.chain_seq) FROM events e
    WHERE e.org_id = chain_heads.org_id
      AND e.position <= (SELECT position FROM projection_checkpoints WHERE name = 'read_models')
), 0);
DROP TABLE projection_checkpoints;

-- Every event is queued for publishing by the insert itself: one statement less per append.
CREATE TRIGGER events_to_outbox AFTER INSERT ON events
BEGIN
    INSERT INTO outbox (position, event_id, org_id, event_type, created_at)
    VALUES (NEW.position, NEW.event_id, NEW.org_id, NEW.event_type, NEW.occurred_at);
END;
