-- Members of an organization (managed from the command line); a key may belong to one, and then
-- acts with at most the member's current role.
CREATE TABLE rm_users (
    user_id    TEXT   PRIMARY KEY,
    org_id     TEXT   NOT NULL,
    email      TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rm_users_org ON rm_users (org_id, created_at);
ALTER TABLE rm_api_keys ADD COLUMN user_id TEXT;
