-- Read model of findings (rebuilt from the log like the others).
CREATE TABLE rm_findings (
    finding_id      TEXT   PRIMARY KEY,
    org_id          TEXT   NOT NULL,
    asset_id        TEXT   NOT NULL,
    template_id     TEXT   NOT NULL,
    title           TEXT   NOT NULL,
    severity        TEXT   NOT NULL,
    category        TEXT   NOT NULL,
    description     TEXT   NOT NULL,
    evidence        TEXT   NOT NULL,
    remediation     TEXT   NOT NULL,
    refs            TEXT   NOT NULL,
    cve             TEXT,
    cwe             TEXT,
    cvss_score      DOUBLE PRECISION,
    matched_at      TEXT   NOT NULL,
    matcher_name    TEXT   NOT NULL,
    source          TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    assignee        TEXT,
    notes           TEXT,
    scan_job_ids    TEXT   NOT NULL,
    detection_count BIGINT NOT NULL,
    first_detected  BIGINT NOT NULL,
    last_detected   BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX rm_findings_org ON rm_findings (org_id, last_detected);
CREATE INDEX rm_findings_asset ON rm_findings (asset_id);
