-- new_subdomain alerts come from a monitor's discovery job, not a scan.
ALTER TABLE rm_alerts ALTER COLUMN scan_job_id DROP NOT NULL;
ALTER TABLE rm_alerts ADD COLUMN discovery_job_id TEXT;
