-- Read models of discovery jobs and of the names they found (rebuilt from the log like the others).
CREATE TABLE rm_discovery_jobs (
    discovery_job_id TEXT   PRIMARY KEY,
    org_id           TEXT   NOT NULL,
    -- JSON array of the root domains.
    domains          TEXT   NOT NULL,
    deep             BIGINT NOT NULL,
    monitor_id       TEXT,
    status           TEXT   NOT NULL,
    progress         BIGINT NOT NULL,
    stage            TEXT,
    attempts         BIGINT NOT NULL,
    error            TEXT,
    -- JSON arrays from discovery.completed: modules run, addresses, TLS services, wildcards,
    -- names no earlier job found.
    modules          TEXT,
    ips              TEXT,
    services         TEXT,
    wildcard         TEXT,
    new_names        TEXT,
    subdomain_count  BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX rm_discovery_jobs_org ON rm_discovery_jobs (org_id, created_at);
CREATE INDEX rm_discovery_jobs_active ON rm_discovery_jobs (created_at) WHERE status IN ('queued', 'running');

-- One row per (job, name): the key is `<job>/<name>`.
CREATE TABLE rm_discovery_names (
    name_key         TEXT   PRIMARY KEY,
    discovery_job_id TEXT   NOT NULL,
    org_id           TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    -- JSON arrays.
    addresses        TEXT   NOT NULL,
    cname            TEXT,
    sources          TEXT   NOT NULL,
    expired          BIGINT NOT NULL,
    found_at         BIGINT NOT NULL
);
CREATE INDEX rm_discovery_names_job ON rm_discovery_names (discovery_job_id, name);
-- When the organization first found a name, and whether an earlier job did.
CREATE INDEX rm_discovery_names_org ON rm_discovery_names (org_id, name, found_at);
