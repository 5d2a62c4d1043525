-- The scan jobs that detected each finding, one row each, so that a job's findings are an index
-- lookup instead of a LIKE over the JSON list kept in rm_findings.scan_job_ids (which keeps
-- their order for the API).
CREATE TABLE rm_finding_jobs (
    finding_id  TEXT NOT NULL,
    scan_job_id TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    PRIMARY KEY (finding_id, scan_job_id)
);
CREATE INDEX rm_finding_jobs_job ON rm_finding_jobs (scan_job_id);
INSERT OR IGNORE INTO rm_finding_jobs (finding_id, scan_job_id, org_id)
SELECT f.finding_id, j.value, f.org_id
FROM rm_findings f, json_each(f.scan_job_ids) AS j;
