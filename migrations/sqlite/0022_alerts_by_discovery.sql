-- new_subdomain alerts come from a monitor's discovery job, not a scan: scan_job_id becomes
-- nullable (SQLite rebuilds the table for that) and discovery_job_id is added.
CREATE TABLE rm_alerts_v2 (
    alert_id         TEXT   PRIMARY KEY,
    org_id           TEXT   NOT NULL,
    monitor_id       TEXT   NOT NULL,
    asset_id         TEXT   NOT NULL,
    scan_job_id      TEXT,
    alert_type       TEXT   NOT NULL,
    severity         TEXT   NOT NULL,
    title            TEXT   NOT NULL,
    -- JSON object.
    details          TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    notes            TEXT,
    acknowledged_at  BIGINT,
    acknowledged_by  TEXT,
    resolved_at      BIGINT,
    resolved_by      TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    discovery_job_id TEXT
);
INSERT INTO rm_alerts_v2 (alert_id, org_id, monitor_id, asset_id, scan_job_id, alert_type,
    severity, title, details, status, notes, acknowledged_at, acknowledged_by, resolved_at,
    resolved_by, created_at, updated_at)
SELECT alert_id, org_id, monitor_id, asset_id, scan_job_id, alert_type, severity, title, details,
    status, notes, acknowledged_at, acknowledged_by, resolved_at, resolved_by, created_at,
    updated_at FROM rm_alerts;
DROP TABLE rm_alerts;
ALTER TABLE rm_alerts_v2 RENAME TO rm_alerts;
CREATE INDEX rm_alerts_org ON rm_alerts (org_id, created_at);
CREATE INDEX rm_alerts_asset ON rm_alerts (asset_id);
