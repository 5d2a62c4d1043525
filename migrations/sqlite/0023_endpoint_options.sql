-- How an endpoint takes its messages (kind, format, header names, filter, ordering, TLS, proxy,
-- batching), as the log has it: a JSON object, {} for a plain Standard Webhooks endpoint.
ALTER TABLE rm_webhooks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';

-- Write-only values of endpoints (header values, tokens, API keys, client keys): like signing
-- secrets, kept out of the immutable, exported log.
CREATE TABLE webhook_credentials (
    webhook_id TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, name)
);

-- The log position of a delivery's event (none for test messages); whether its endpoint takes
-- messages in that order, the next ones only when none is in flight (FIFO); and how many of its
-- messages travel in one request (native destinations that batch; 0: one at a time).
ALTER TABLE deliveries ADD COLUMN position BIGINT;
ALTER TABLE deliveries ADD COLUMN fifo BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN batch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX deliveries_fifo ON deliveries (webhook_id, position, delivery_id)
    WHERE status = 'pending' AND fifo = 1;

-- Messages sent together (native destinations batch them): the request is recorded once, as
-- one attempt; a message it delivered names it (last_batch_id) instead of an attempt row of its
-- own, and a message it did not deliver gets its attempt row with the batch's id.
CREATE TABLE delivery_batches (
    batch_id    TEXT   PRIMARY KEY,
    webhook_id  TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    response    TEXT,
    size        BIGINT NOT NULL
);
ALTER TABLE deliveries ADD COLUMN last_batch_id TEXT;
CREATE INDEX deliveries_batch ON deliveries (last_batch_id) WHERE last_batch_id IS NOT NULL;
ALTER TABLE delivery_attempts ADD COLUMN batch_id TEXT;
ALTER TABLE delivery_attempts ADD COLUMN batch_size BIGINT;
CREATE INDEX delivery_attempts_batch ON delivery_attempts (batch_id) WHERE batch_id IS NOT NULL;
