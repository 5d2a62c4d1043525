-- Read model of scan jobs (rebuilt from the log like the others).
CREATE TABLE rm_scan_jobs (
    scan_job_id TEXT   PRIMARY KEY,
    org_id      TEXT   NOT NULL,
    asset_id    TEXT   NOT NULL,
    profile     TEXT   NOT NULL,
    -- JSON array of explicit ports, or NULL for the profile's list.
    ports       TEXT,
    status      TEXT   NOT NULL,
    progress    BIGINT NOT NULL,
    stage       TEXT,
    attempts    BIGINT NOT NULL,
    error       TEXT,
    -- JSON object of findings per severity, once completed.
    counts      TEXT,
    rerun_of    TEXT,
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX rm_scan_jobs_org ON rm_scan_jobs (org_id, created_at);
