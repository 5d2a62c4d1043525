-- Read model of webhook endpoints (rebuilt from the log like the others).
CREATE TABLE rm_webhooks (
    webhook_id  TEXT   PRIMARY KEY,
    org_id      TEXT   NOT NULL,
    url         TEXT   NOT NULL,
    events      TEXT   NOT NULL,
    description TEXT   NOT NULL,
    enabled     BIGINT NOT NULL,
    rotated_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX rm_webhooks_org ON rm_webhooks (org_id, created_at);

-- Signing secrets: never in the event log (it is immutable and exported). Several may sign at
-- once during a rotation; `expires_at` NULL means current.
CREATE TABLE webhook_secrets (
    webhook_id TEXT   NOT NULL,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (webhook_id, secret)
);
