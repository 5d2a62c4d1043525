-- Webhook deliveries: the persisted queue and schedule shared by every delivery process, with the
-- embedded and the NATS fan-out alike. Operational data, not events: a delivery can be retried,
-- and its attempts are a log of what the receiver answered.
CREATE TABLE deliveries (
    delivery_id     TEXT   PRIMARY KEY,
    org_id          TEXT   NOT NULL,
    webhook_id      TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    -- pending (waiting for its next attempt), succeeded or failed (dead letter).
    status          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    -- Retries already used from the schedule; a hand-made retry sets it to the end (one attempt).
    schedule_step   BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,
    claimed_until   BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, created_at);

CREATE TABLE delivery_attempts (
    delivery_id  TEXT   NOT NULL,
    attempt      BIGINT NOT NULL,
    webhook_id   TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status_code  BIGINT,
    error        TEXT,
    response     TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Since when every attempt to an endpoint has failed (NULL after a success): it is disabled once
-- this lasts too long.
CREATE TABLE endpoint_health (
    webhook_id    TEXT   PRIMARY KEY,
    failing_since BIGINT
);
