-- Read models of monitors and their alerts (rebuilt from the log like the others).
CREATE TABLE rm_monitors (
    monitor_id        TEXT   PRIMARY KEY,
    org_id            TEXT   NOT NULL,
    asset_id          TEXT,
    group_id          TEXT,
    frequency_hours   BIGINT NOT NULL,
    profile           TEXT   NOT NULL,
    -- JSON array of explicit ports, or NULL for the profile's list.
    ports             TEXT,
    enabled           BIGINT NOT NULL,
    last_run_at       BIGINT,
    -- When the schedule runs it next; NULL while disabled.
    next_run_at       BIGINT,
    run_count         BIGINT NOT NULL,
    -- JSON array of the scan jobs of the last run.
    last_scan_job_ids TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX rm_monitors_org ON rm_monitors (org_id, created_at);
CREATE INDEX rm_monitors_due ON rm_monitors (next_run_at);

CREATE TABLE rm_alerts (
    alert_id        TEXT   PRIMARY KEY,
    org_id          TEXT   NOT NULL,
    monitor_id      TEXT   NOT NULL,
    asset_id        TEXT   NOT NULL,
    scan_job_id     TEXT   NOT NULL,
    alert_type      TEXT   NOT NULL,
    severity        TEXT   NOT NULL,
    title           TEXT   NOT NULL,
    -- JSON object.
    details         TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    notes           TEXT,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    resolved_at     BIGINT,
    resolved_by     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX rm_alerts_org ON rm_alerts (org_id, created_at);
