-- Claims read only pending deliveries, oldest due first: index just those.
CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE status = 'pending';
DROP INDEX deliveries_due;
