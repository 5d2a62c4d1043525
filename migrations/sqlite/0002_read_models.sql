-- Read models: projections of the event log, dropped and rebuilt by `easm projections rebuild`.
CREATE TABLE projection_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO projection_checkpoints (name, position) VALUES ('read_models', 0);

CREATE TABLE rm_orgs (
    org_id     TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    plan       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE rm_api_keys (
    key_id     TEXT   PRIMARY KEY,
    org_id     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    key_hash   TEXT   NOT NULL UNIQUE,
    prefix     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX rm_api_keys_org ON rm_api_keys (org_id);

CREATE TABLE rm_groups (
    group_id   TEXT   PRIMARY KEY,
    org_id     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rm_groups_org ON rm_groups (org_id, created_at);

CREATE TABLE rm_assets (
    asset_id    TEXT   PRIMARY KEY,
    org_id      TEXT   NOT NULL,
    group_id    TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    asset_type  TEXT   NOT NULL,
    tags        TEXT   NOT NULL,
    criticality TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX rm_assets_org ON rm_assets (org_id, created_at);
CREATE INDEX rm_assets_group ON rm_assets (group_id);

CREATE TABLE rm_asset_tags (
    asset_id TEXT NOT NULL,
    org_id   TEXT NOT NULL,
    tag      TEXT NOT NULL,
    PRIMARY KEY (asset_id, tag)
);
CREATE INDEX rm_asset_tags_org ON rm_asset_tags (org_id, tag);

-- Not projections: operational state that a rebuild leaves alone.
CREATE TABLE api_key_usage (
    key_id       TEXT   PRIMARY KEY,
    last_used_at BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    org_id      TEXT   NOT NULL,
    idem_key    TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    status      BIGINT NOT NULL,
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, idem_key)
);
